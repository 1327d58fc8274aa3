"""Expansion: a campaign for 1,000,000 subscribers into outbox rows, against a bare insert.

For each database (SQLite, then PostgreSQL where reachable), in one scratch database:

- the population (bulk SQL, see `fixtures`): a realistic mix, so the gate decides;
- baseline: a bare bulk insert of as many rows into a table made like `deliveries`
  (same columns, constraints and indexes: the outbox must keep them too),
  with sqlite3 `executemany` in one transaction on SQLite and `COPY` on PostgreSQL;
  the same insert into a table with no index or constraint is shown beside it;
- the expansion, by the service's own code (`Worker.fire_due` + `expand_all`: keyset
  batches of INSERT ... SELECT with the gate as a SQL CASE, checkpoint and lease per
  batch) in a process of its own, which reports its peak RSS (VmHWM) as it ends.

The outbox is then checked: one row per subscriber, queued exactly where the gate allows.
"""

from __future__ import annotations

import argparse
import functools
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench import fixtures
from bench.common import Figure
from mailprefs.delivery.expand import OUTBOX_COLUMNS
from mailprefs.extensions import get_db

FULL = 1_000_000
QUICK = 50_000
COLUMNS = OUTBOX_COLUMNS


def main(args: argparse.Namespace) -> list[Figure]:
    count = QUICK if args.quick else FULL
    print(f"   {count:,} subscribers", flush=True)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="mailprefs-bench-expand-") as tmp:
        for kind in ("sqlite", "postgresql"):
            if kind == "postgresql" and not fixtures.postgres_available():
                print("   PostgreSQL unreachable: its figures are skipped", flush=True)
                continue
            figures += _measure(kind, Path(tmp), count)
    return figures


def _measure(kind: str, workdir: Path, count: int) -> list[Figure]:
    name = "SQLite" if kind == "sqlite" else "PostgreSQL"
    with fixtures.scratch_database(kind, workdir) as url:
        app = fixtures.make_app(url, workdir)
        fixtures.populate(url, count, mix=True)
        campaign_id = fixtures.schedule_campaign(app)
        get_db(app).dispose()
        if kind == "sqlite":
            insert = functools.partial(_bare_sqlite, make_url(url).database, campaign_id, count)
            bare_name = "sqlite3 executemany"
        else:
            insert = functools.partial(_bare_postgres, url, campaign_id, count)
            bare_name = "COPY"
        bare, plain = insert(indexed=True), insert(indexed=False)
        print(
            f"   {name}: bare insert of {count:,} rows in {bare:.1f} s "
            f"(into a table with no index or constraint: {plain:.1f} s)",
            flush=True,
        )
        seconds, peak_mb = _expand(url, workdir)
        print(f"   {name}: expansion in {seconds:.1f} s, peak RSS {peak_mb:.0f} MB", flush=True)
        _check(url, campaign_id, count)
    return [
        Figure(
            f"{name}: expand a campaign for {count:,} subscribers",
            seconds,
            "s",
            baseline=bare,
            baseline_name=f"bare insert ({bare_name})",
            max_ratio=3.0,
        ),
        Figure(
            f"{name}: the same expansion",
            seconds,
            "s",
            baseline=plain,
            baseline_name=f"{bare_name} into a table with no index",
        ),
        Figure(f"{name}: peak RSS of the expanding process", peak_mb, "MB", limit=150),
    ]


def _rows(campaign_id: int, count: int, stamp: object) -> Iterator[tuple]:
    for n in range(1, count + 1):
        yield (campaign_id, n, "queued", None, 10, 0, stamp, stamp)


def _bare_sqlite(path: str, campaign_id: int, count: int, *, indexed: bool) -> float:
    table = "bench_bulk" if indexed else "bench_plain"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        # The pragmas the service's own connections use (mailprefs.db).
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            connection.execute(f"PRAGMA {pragma}")
        if indexed:
            ddl = connection.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'deliveries' AND sql IS NOT NULL"
            ).fetchall()
            for (statement,) in ddl:
                connection.execute(statement.replace("deliveries", table))
        else:
            connection.execute(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, {', '.join(COLUMNS)})"
            )
        insert = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 8)})"
        # How SQLAlchemy stores a UTC datetime in SQLite.
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        rows = _rows(campaign_id, count, stamp)
        started = time.perf_counter()
        connection.execute("BEGIN")
        connection.executemany(insert, rows)
        connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()


def _bare_postgres(url: str, campaign_id: int, count: int, *, indexed: bool) -> float:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        if indexed:
            table = "bench_bulk"
            # Every constraint and index of the outbox (it has no foreign keys: 0002).
            connection.execute(f"CREATE TABLE {table} (LIKE deliveries INCLUDING ALL)")
        else:
            table = "bench_plain"
            connection.execute(f"CREATE TABLE {table} (LIKE deliveries INCLUDING DEFAULTS)")
        connection.commit()
        started = time.perf_counter()
        command = f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN"
        with connection.cursor() as cursor, cursor.copy(command) as copy:
            for row in _rows(campaign_id, count, datetime.now(UTC)):
                copy.write_row(row)
        connection.commit()
        return time.perf_counter() - started


def _expand(url: str, workdir: Path) -> tuple[float, float]:
    """Expand in a child process; returns (seconds, peak RSS in MB) of that process."""
    result = fixtures.child_process("bench.expand_process", url, workdir, what="expansion")
    if result["fired"] != 1:
        raise RuntimeError(f"the expansion process fired {result['fired']} campaigns, not 1")
    return result["seconds"], result["peak_kb"] / 1024


def _check(url: str, campaign_id: int, count: int) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = dict(
                connection.execute(
                    sa.text(
                        "SELECT status, count(*) FROM deliveries WHERE campaign_id = :c"
                        " GROUP BY status"
                    ),
                    {"c": campaign_id},
                ).all()
            )
            done = connection.execute(
                sa.text("SELECT expansion_done FROM campaigns WHERE id = :c"), {"c": campaign_id}
            ).scalar()
    finally:
        engine.dispose()
    allowed = fixtures.expected_audience(count)
    if sum(rows.values()) != count or rows.get("queued") != allowed or not done:
        raise RuntimeError(
            f"the outbox is wrong: {rows} (expected {count} rows, {allowed} queued), "
            f"expansion done: {done}"
        )
    print(f"   outbox checked: {count:,} rows, {allowed:,} queued by the gate", flush=True)
