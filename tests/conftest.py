"""Fixtures: `app`, `client`, `runner`, API keys, on SQLite and PostgreSQL.

Every test that uses `app` runs once per database ([sqlite] and [postgresql] in its id).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mailprefs import clock, create_app
from mailprefs.domain import apikeys
from mailprefs.extensions import get_db, limiter
from mailprefs.migrate import sync_reference_data, upgrade
from tests.support import databases

SECRET_KEYS = "test-signing-key-new,test-signing-key-old"

# `sink` and `sink_process`: a real SMTP relay for any test that asks for one.
pytest_plugins = ("tests.support.relay",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked postgres_only (sqlite_only) has no variant on the other database:
    the variant is deselected, not skipped, since it is not a test at all."""
    keep, drop = [], []
    for item in items:
        if (item.get_closest_marker("postgres_only") and "[sqlite" in item.nodeid) or (
            item.get_closest_marker("sqlite_only") and "[postgresql" in item.nodeid
        ):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory):
    return databases.migrated_sqlite_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def postgres_url(worker_id: str) -> Iterator[str | None]:
    """A migrated PostgreSQL database for this xdist worker, or None if unreachable."""
    base = databases.postgres_base_url()
    if base is None or not databases.reachable(base):
        if databases.postgres_required():
            pytest.exit(f"PostgreSQL is required but unreachable at {base}", returncode=3)
        yield None
        return
    name = f"mailprefs_test_{run_id()}_{worker_id}"
    url = databases.create_database(base, name)
    from mailprefs.db import Database

    database = Database(url)
    upgrade(database)
    database.dispose()
    yield url
    databases.drop_database(base, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, sqlite_template) -> str:
    if request.param == "sqlite":
        return databases.sqlite_copy(sqlite_template, tmp_path)
    url = request.getfixturevalue("postgres_url")
    if url is None:
        pytest.skip("PostgreSQL unreachable (set MAILPREFS_TEST_POSTGRES_URL or run `make pg`)")
    databases.truncate_all(url)
    return url


def make_test_app(database_url: str, tmp_path, **overrides) -> Flask:
    config = {
        "MAILPREFS_ENV": "testing",
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEYS,
        "MAILPREFS_HASH_KEY": "test-hash-key",
        "MAIL_SERVER": None,
        "MAILPREFS_MAIL_CAPTURE_DIR": str(tmp_path / "mail"),
        "MAILPREFS_BASE_URL": "https://mail.example.test",
        "MAILPREFS_API_RATE_LIMIT": "100000 per minute",
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    config.update(overrides)
    # The limiter is one per process, and default limits that a test's config set
    # (RATELIMIT_DEFAULT) stay on it for every app made after that test: start without.
    limiter.limit_manager.set_default_limits([])
    app = create_app(config)
    with get_db(app).transaction() as session:
        sync_reference_data(session, app.config)
    return app


@pytest.fixture
def app_config() -> dict:
    """Override to change the test app's configuration."""
    return {}


@pytest.fixture
def app(database_url: str, tmp_path, app_config) -> Iterator[Flask]:
    app = make_test_app(database_url, tmp_path, **app_config)
    with app.app_context():
        yield app
    get_db(app).dispose()
    clock.unfreeze()


@pytest.fixture
def db(app: Flask):
    return get_db(app)


@pytest.fixture
def session(db):
    """A session for the test's own domain calls (deferred: it never blocks the app)."""
    s = db.session(read_only=True)
    yield s
    s.close()


def count(db, column) -> int:
    """Rows in a table, read in a fresh transaction (sees every commit so far)."""
    from sqlalchemy import func, select

    with db.session(read_only=True) as s:
        return s.scalar(select(func.count(column)))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


def _key(db, role: str) -> str:
    with db.transaction() as s:
        _, secret = apikeys.create(s, role, f"test {role}")
    return secret


@pytest.fixture
def ops_key(db) -> str:
    return _key(db, "ops")


@pytest.fixture
def marketing_key(db) -> str:
    return _key(db, "marketing")


@pytest.fixture
def transactional_key(db) -> str:
    return _key(db, "transactional")


@pytest.fixture
def admin_key(db) -> str:
    return _key(db, "admin")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(autouse=True)
def _no_frozen_clock_leaks() -> Iterator[None]:
    yield
    clock.unfreeze()


def run_id() -> str:
    """Distinguishes concurrent test runs on one server (xdist shares it among workers)."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))[:12]


@pytest.fixture(scope="session")
def worker_id(request) -> str:
    # pytest-xdist provides this; without it, one process is "master".
    return os.environ.get("PYTEST_XDIST_WORKER", "master")
