"""What the benchmarks set up: scratch databases, a population, a campaign, processes.

Populations are written with bulk SQL (a recursive CTE on SQLite, `generate_series` on
PostgreSQL), not through the ORM: a million people take seconds, and setting up is not
what is measured. The mix is deterministic (by subscriber id), so every run sees the
same audience:

  ~1%  erased (no address, no hash)          ~2%  deactivated
  ~85% opted in to `offers`, ~7% opted out, the rest never asked (no topic row)
  ~1% of addresses on the suppression list (bounces and complaints)
  half of everyone opted in to `newsletter` too (more rows in the topic-state index)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask
from sqlalchemy.engine import make_url

from mailprefs import clock, create_app
from mailprefs.domain import campaigns
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import get_db
from mailprefs.migrate import sync_reference_data, upgrade
from tests.support import databases

ROOT = Path(__file__).resolve().parents[1]
FLASK = str(Path(sys.executable).with_name("flask"))
POSTGRES_URL = os.environ.get(
    "MAILPREFS_BENCH_POSTGRES_URL",
    os.environ.get(
        "MAILPREFS_TEST_POSTGRES_URL",
        "postgresql://mailprefs:mailprefs@127.0.0.1:5432/mailprefs_test",
    ),
)
# Production mode (TESTING off: Flask-Mail would otherwise suppress sending), with keys of
# our own that are only ever used for a scratch database.
SECRET_KEY = "bench-" + secrets.token_hex(16)
HASH_KEY = "bench-hash-" + secrets.token_hex(8)

SUBJECT = "{{ first_name }}, this week's offers"
TEXT = (
    "Hello {{ first_name }},\n\n"
    + "\n".join(
        f"* Offer {i}: a short description of something worth reading about, "
        f"with a price and a link https://shop.example.com/offers/{i}"
        for i in range(1, 13)
    )
    + "\n\nSee you next week,\nThe ICVT team\n"
)
HTML = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Offers</title></head>"
    "<body><h1>Hello {{ first_name }},</h1><table>"
    + "".join(
        f"<tr><td><a href='https://shop.example.com/offers/{i}'>Offer {i}</a></td>"
        f"<td>a short description of something worth reading about, with a price</td></tr>\n"
        for i in range(1, 13)
    )
    + "</table><p>See you next week,<br>The ICVT team</p></body></html>\n"
)


def postgres_available() -> bool:
    return databases.reachable(POSTGRES_URL)


@contextlib.contextmanager
def scratch_database(kind: str, workdir: Path) -> Iterator[str]:
    """A new, migrated database; PostgreSQL ones are dropped afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'bench-{secrets.token_hex(3)}.db'}"
        _migrate(url)
        yield url
        return
    name = f"mailprefs_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        url = databases.create_database(POSTGRES_URL, name, drop=False)
        _migrate(url)
        yield url
    finally:
        databases.drop_database(POSTGRES_URL, name)


def _migrate(url: str) -> None:
    from mailprefs.db import Database

    database = Database(url)
    try:
        upgrade(database)
    finally:
        database.dispose()


def environment(url: str, workdir: Path, *, smtp_port: int | None = None, **extra: str):
    """The environment of a `flask --app wsgi mailprefs ...` process on `url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILPREFS_", "MAIL_"))}
    env.update(
        MAILPREFS_ENV="production",
        DATABASE_URL=url,
        SECRET_KEY=SECRET_KEY,
        MAILPREFS_HASH_KEY=HASH_KEY,
        MAILPREFS_BASE_URL="https://mail.example.com",
        MAILPREFS_INSTANCE_PATH=str(workdir / "instance"),
        MAILPREFS_MAIL_CAPTURE_DIR=str(workdir / "captured"),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    if smtp_port is not None:
        env.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=str(smtp_port))
    env.update(extra)
    return env


def child_process(module: str, url: str, workdir: Path, *args: str, what: str) -> dict:
    """Run `python -m MODULE ARGS` on `url` (a process of its own, so that its time and
    memory are its own); returns its last output line, parsed as JSON. `what` names it
    in the error when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=environment(url, workdir),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {what} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_app(
    url: str, workdir: Path, *, smtp_port: int | None = None, migrated: bool = True
) -> Flask:
    """An app on `url` configured like the processes (`environment`); on a migrated
    database the topics are synced."""
    config: dict[str, Any] = {
        "MAILPREFS_ENV": "production",
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET_KEY,
        "MAILPREFS_HASH_KEY": HASH_KEY,
        "MAILPREFS_BASE_URL": "https://mail.example.com",
        "MAIL_SERVER": "127.0.0.1" if smtp_port else None,
        "MAIL_PORT": smtp_port or 25,
        "MAILPREFS_MAIL_CAPTURE_DIR": str(workdir / "captured"),
    }
    os.environ.setdefault("MAILPREFS_INSTANCE_PATH", str(workdir / "instance"))
    app = create_app(config)
    if migrated:
        with get_db(app).transaction() as session:
            sync_reference_data(session, app.config)
    return app


def flask_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115  (the child holds it; closed when we exit)
    return subprocess.Popen(
        [FLASK, "--app", "wsgi", *args], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
    )


# --- the population ------------------------------------------------------------------

# Per-id mix, as SQL over an integer `n` (the subscriber id); `%` on integers is the same
# on both databases.
_ERASED = "(n % 100 = 0)"
_DEACTIVATED = "(n % 100 IN (1, 2))"
_OFFERS = "((n * 7) % 100)"  # < 85 opted in, 85..91 opted out, else no row
_SUPPRESSED = "((n * 13) % 200)"  # 0 bounce, 1 complaint


def populate(url: str, count: int, *, mix: bool = True, quiet: bool = False) -> None:
    """`count` subscribers with their topic states (and suppressions when `mix`).
    Without `mix` everyone is active and opted in to `offers`."""
    started = time.monotonic()
    if url.startswith("sqlite"):
        _populate_sqlite(make_url(url).database, count, mix)
    else:
        _populate_postgres(url, count, mix)
    if not quiet:
        print(
            f"   populated {count:,} subscribers in {time.monotonic() - started:.1f} s", flush=True
        )


def _sql(count: int, mix: bool, *, sqlite: bool) -> list[str]:
    if sqlite:
        seq = (
            f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count})"
        )
        source = "seq"
        pad = "printf('%064d', n)"
        public = "printf('pub%012d', n)"
        email = "printf('p%07d@example.com', n)"
        now = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
    else:
        seq = ""
        source = f"generate_series(1, {count}) AS n"
        pad = "lpad(n::text, 64, '0')"
        public = "'pub' || lpad(n::text, 12, '0')"
        email = "'p' || lpad(n::text, 7, '0') || '@example.com'"
        now = "now()"
    erased = _ERASED if mix else "FALSE"
    deactivated = _DEACTIVATED if mix else "FALSE"
    offers = _OFFERS if mix else "0"
    topic = "(SELECT id FROM topics WHERE slug = '{}')"
    statements = [
        f"""{seq} INSERT INTO subscribers
            (id, public_id, email, email_hash, attributes, status, status_reason,
             created_at, updated_at)
        SELECT n, {public},
               CASE WHEN {erased} THEN NULL ELSE {email} END,
               CASE WHEN {erased} THEN NULL ELSE {pad} END,
               '{{"first_name": "Ann", "city": "Haifa"}}',
               CASE WHEN {erased} THEN 'erased' WHEN {deactivated} THEN 'deactivated'
                    ELSE 'active' END,
               CASE WHEN {erased} THEN 'by_request' WHEN {deactivated} THEN 'by_user'
                    ELSE NULL END,
               {now}, {now}
        FROM {source}""",
        f"""{seq} INSERT INTO topic_subscriptions (subscriber_id, topic_id, state, changed_at,
                                                    event_id)
        SELECT n, {topic.format("offers")},
               CASE WHEN {offers} < 85 THEN 'opted_in' ELSE 'opted_out' END, {now}, n
        FROM {source} WHERE {offers} < 92""",
    ]
    if mix:
        statements += [
            f"""{seq} INSERT INTO topic_subscriptions (subscriber_id, topic_id, state,
                                                        changed_at, event_id)
            SELECT n, {topic.format("newsletter")}, 'opted_in', {now}, n
            FROM {source} WHERE n % 2 = 0""",
            f"""{seq} INSERT INTO suppressions (email_hash, reason, source, created_at)
            SELECT {pad}, CASE WHEN {_SUPPRESSED} = 0 THEN 'bounce' ELSE 'complaint' END,
                   'import', {now}
            FROM {source} WHERE {_SUPPRESSED} IN (0, 1) AND NOT {_ERASED}""",
        ]
    return statements


def _populate_sqlite(path: str, count: int, mix: bool) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")  # setting up, not measured
        connection.execute("BEGIN")
        for statement in _sql(count, mix, sqlite=True):
            connection.execute(statement)
        connection.execute("COMMIT")
        # No ANALYZE: nothing runs one on a deployment's SQLite file either.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _populate_postgres(url: str, count: int, mix: bool) -> None:
    # psycopg itself: given no parameters it leaves `%` (modulo) alone.
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        for statement in _sql(count, mix, sqlite=False):
            connection.execute(statement)
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")


def expected_audience(count: int, *, mix: bool = True) -> int:
    """How many of `populate(count, mix)` the gate allows for `offers` (a cross-check)."""
    if not mix:
        return count
    allowed = 0
    for n in range(1, count + 1):
        if n % 100 in (0, 1, 2) or (n * 7) % 100 >= 85 or (n * 13) % 200 in (0, 1):
            continue
        allowed += 1
    return allowed


def schedule_campaign(app: Flask) -> int:
    """A marketing campaign to everyone on `offers`, due now; returns its id."""
    with get_db(app).transaction() as session:
        campaign = campaigns.create_scheduled(
            session,
            get_topic(session, "offers"),
            campaigns.Content(SUBJECT, TEXT, HTML),
            at=clock.now() - timedelta(seconds=1),
            actor="bench",
        )
        return campaign.id
