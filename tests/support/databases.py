"""Test databases: a migrated SQLite template copied per test; PostgreSQL truncated per test.

PostgreSQL is found through MAILPREFS_TEST_POSTGRES_URL (default: the role and database
that `make pg` / `.ci/postgres` create). Each xdist worker gets its own database, made
from the base one. With MAILPREFS_REQUIRE_POSTGRES=1 an unreachable server fails the run.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from mailprefs.db import Base, Database
from mailprefs.migrate import upgrade

DEFAULT_PG = "postgresql://mailprefs:mailprefs@127.0.0.1:5432/mailprefs_test"


def postgres_base_url() -> str | None:
    url = os.environ.get("MAILPREFS_TEST_POSTGRES_URL", DEFAULT_PG)
    return None if url in ("", "off", "none") else url


def postgres_required() -> bool:
    return os.environ.get("MAILPREFS_REQUIRE_POSTGRES") == "1"


def reachable(url: str) -> bool:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def create_database(base_url: str, name: str, *, drop: bool = True) -> str:
    """A fresh, empty database next to the base one; returns its URL."""
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            if drop:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(base_url: str, name: str, *, patience: float = 60) -> None:
    """Drop a database. An autovacuum worker busy on it (after a million rows, say)
    makes a plain DROP wait and refuses FORCE to a non-superuser, so try for a while."""
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + patience
    try:
        while True:
            try:
                with admin.connect() as connection:
                    connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                return
            except sa.exc.DBAPIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    finally:
        admin.dispose()


def migrated_sqlite_template(directory: Path) -> Path:
    path = directory / "template.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


def sqlite_copy(template: Path, directory: Path) -> str:
    target = directory / "mailprefs.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def truncate_all(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
