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


def test_dropping_the_outbox_foreign_keys_keeps_every_row_and_the_queue_index(fresh_url):
    """0002 copies the outbox on SQLite: the rows, a bounce that points at one of them,
    and the partial queue index all come through; the keys are gone on both databases."""
    from alembic import command

    database = Database(fresh_url)
    command.upgrade(alembic_config(database), "0001")
    now = "2026-11-26 12:00:00+00:00"
    with database.engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO topics (id, slug, name, kind, double_opt_in, description, active)"
                " VALUES (1, 'news', 'News', 'marketing', false, '', true)"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO subscribers (id, public_id, attributes, status, created_at,"
                " updated_at) VALUES (1, 'p1', '{}', 'active', :now, :now)"
            ),
            {"now": now},
        )
        c.execute(
            sa.text(
                "INSERT INTO campaigns (id, public_id, kind, topic_id, subject, text_body,"
                " status, priority, created_at, expanded_through, expansion_done)"
                " VALUES (1, 'c1', 'campaign', 1, 's', 't', 'sending', 10, :now, 1, true)"
            ),
            {"now": now},
        )
        c.execute(
            sa.text(
                "INSERT INTO deliveries (id, campaign_id, subscriber_id, status, priority,"
                " attempts) VALUES (1, 1, 1, 'queued', 10, 0), (2, 1, NULL, 'blocked', 10, 0)"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO bounce_events (id, email_hash, kind, source, delivery_id,"
                " occurred_at, recorded_at) VALUES (1, 'h', 'hard', 'smtp', 1, :now, :now)"
            ),
            {"now": now},
        )
    upgrade(database)
    inspector = sa.inspect(database.engine)
    assert inspector.get_foreign_keys("deliveries") == []
    referred = sorted(k["referred_table"] for k in inspector.get_foreign_keys("bounce_events"))
    assert referred == ["deliveries", "subscribers"]
    with database.engine.connect() as c:
        if database.is_sqlite:  # the checks the migration turned off are on again
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.execute(sa.text("SELECT id, status FROM deliveries ORDER BY id")).all() == [
            (1, "queued"),
            (2, "blocked"),
        ]
        assert c.execute(sa.text("SELECT delivery_id FROM bounce_events")).scalar() == 1
        if database.is_sqlite:
            ddl = c.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE name = 'ix_deliveries_queue'")
            ).scalar()
        else:
            ddl = c.execute(
                sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_deliveries_queue'")
            ).scalar()
    assert "queued" in ddl  # still partial: only queued rows are indexed
    database.dispose()
    assert _schema_difference(fresh_url) == []
