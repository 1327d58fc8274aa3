"""Alembic environment: targets Base.metadata; runs on the app's own engine."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import mailprefs.domain.account_models  # noqa: F401
import mailprefs.domain.import_models  # noqa: F401
import mailprefs.domain.models  # noqa: F401  (registers the tables)
import mailprefs.domain.outbox_models  # noqa: F401
import mailprefs.domain.webhook_models  # noqa: F401
from mailprefs.db import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or create_engine(
        config.get_main_option("sqlalchemy.url")
    )
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table by copying it, and dropping the old copy would
            # count every row that points at it as a violation. Its documented procedure:
            # checks off (outside any transaction), change, then foreign_key_check.
            _sqlite_foreign_keys(connection, "OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration left rows without parents: {broken}")
            connection.commit()
        finally:
            if sqlite:
                connection.rollback()
                _sqlite_foreign_keys(connection, "ON")


def _sqlite_foreign_keys(connection, state: str) -> None:
    connection.connection.driver_connection.execute(f"PRAGMA foreign_keys={state}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
