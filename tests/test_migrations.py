"""The Alembic history produces exactly the models' schema, on both databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailprefs.db import Base, Database
from mailprefs.migrate import alembic_config, upgrade
from tests.support import databases


def _schema_difference(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path, worker_id):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/fresh.db"
        return
    base = databases.postgres_base_url()
    if base is None or not databases.reachable(base):
        if databases.postgres_required():
            pytest.fail("PostgreSQL is required")
        pytest.skip("PostgreSQL unreachable")
    from tests.conftest import run_id

    name = f"mailprefs_migrations_{run_id()}_{worker_id}"
    yield databases.create_database(base, name)
    databases.drop_database(base, name)


def test_migrations_produce_exactly_the_models_schema(fresh_url):
    """Upgrading an empty database leaves no difference from Base.metadata."""
    database = Database(fresh_url)
    upgrade(database)
    database.dispose()
    assert _schema_difference(fresh_url) == []


def test_migrations_downgrade_to_empty_and_up_again(fresh_url):
    from alembic import command

    database = Database(fresh_url)
    upgrade(database)
    command.downgrade(alembic_config(database), "base")
    inspector = sa.inspect(database.engine)
    assert set(inspector.get_table_names()) <= {"alembic_version"}
    upgrade(database)
    database.dispose()
    assert _schema_difference(fresh_url) == []


def test_an_empty_database_differs_so_the_comparison_can_fail(fresh_url):
    """Guard for the test above: the comparison does see a missing schema."""
    engine = sa.create_engine(fresh_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE unrelated (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    assert _schema_difference(fresh_url) != []
