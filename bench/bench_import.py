"""Import: 1,000,000 generated rows (85% with evidence, 10% without, 2% invalid, 1%
duplicates, 1% suppressed, 1% erased) against a bare bulk insert of the same rows, and
a streamed export of everyone.

For each database (SQLite, then PostgreSQL where reachable), in a scratch database:

- baseline: the rows the import writes (people, consent events, topic states) inserted
  bare into tables made like `subscribers`, `consent_events` and `topic_subscriptions`
  (same columns, constraints and indexes), with sqlite3 `executemany` in one transaction
  on SQLite and `COPY` on PostgreSQL;
- the import by the service's own code (whole-file check, then batches with checkpoints)
  in a process of its own, which reports its peak RSS; in a full run a 50,000-row import
  too, to show the memory stays flat;
- a streamed CSV export of every person, in a process of its own, with its peak RSS.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from bench import fixtures
from bench.common import Figure
from mailprefs.domain.addresses import address_hash
from mailprefs.extensions import get_db

FULL = 1_000_000
QUICK = 50_000
RSS_LIMIT_MB = 200
TABLES = ("subscribers", "consent_events", "topic_subscriptions")


def kind_of(i: int) -> str:
    """The row mix, by row number."""
    m = i % 100
    if m < 85:
        return "evidence"
    if m < 95:
        return "no_evidence"
    if m < 97:
        return "invalid"
    return ("duplicate", "suppressed", "erased")[m - 97]


def write_file(path: Path, count: int) -> dict[str, int]:
    """The CSV, and how many people and events it should make."""
    expected = {"people": 0, "events": 0}
    with open(path, "w") as out:
        out.write("email,topic,consent_at,source,source_detail,attr.n\n")
        for i in range(count):
            kind = kind_of(i)
            if kind == "invalid":
                out.write(f"broken{i},offers,2025-01-01T00:00:00Z,web_form,,{i}\n")
            elif kind == "duplicate":  # the person of row i - 3 (no evidence), another topic
                out.write(f"p{i - 3}@example.com,newsletter,2025-01-02T00:00:00Z,api,,\n")
                expected["events"] += 1
            elif kind == "no_evidence":
                out.write(f"p{i}@example.com,offers,,,,{i}\n")
                expected["people"] += 1
            else:
                out.write(f"p{i}@example.com,offers,2025-01-01T00:00:00Z,web_form,form {i},{i}\n")
                if kind != "erased":
                    expected["people"] += 1
                    expected["events"] += 1
    return expected


def main(args: argparse.Namespace) -> list[Figure]:
    count = QUICK if args.quick else FULL
    print(f"   {count:,} rows", flush=True)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="mailprefs-bench-import-") as tmp:
        workdir = Path(tmp)
        for kind in ("sqlite", "postgresql"):
            if kind == "postgresql" and not fixtures.postgres_available():
                print("   PostgreSQL unreachable: its figures are skipped", flush=True)
                continue
            figures += _measure(kind, workdir, count, small=None if args.quick else QUICK)
    return figures


def _measure(kind: str, workdir: Path, count: int, small: int | None) -> list[Figure]:
    name = "SQLite" if kind == "sqlite" else "PostgreSQL"
    path = workdir / f"import-{count}.csv"
    expected = write_file(path, count)
    with fixtures.scratch_database(kind, workdir) as url:
        _topics(url, workdir)
        _suppress(url, count)
        bare_name = "sqlite3 executemany" if kind == "sqlite" else "COPY"
        bare = _bare(kind, workdir, expected)
        print(f"   {name}: bare insert of the same rows in {bare:.1f} s", flush=True)
        result = _child(url, workdir, "import", str(path))
        counts = result["counts"]
        people = counts["created"]
        events = counts["consents"]
        if result["status"] != "done" or (counts["rows"], people, events) != (
            count,
            expected["people"],
            expected["events"],
        ):
            raise RuntimeError(f"the import went wrong: {result}, expected {expected}")
        print(f"   {name}: import in {result['seconds']:.1f} s; counts {counts}", flush=True)
        export = _child(url, workdir, "export")
        print(f"   {name}: export of {export['rows']:,} people in {export['seconds']:.1f} s")
    figures = [
        Figure(
            f"{name}: import {count:,} rows",
            result["seconds"],
            "s",
            baseline=bare,
            baseline_name=f"bare insert ({bare_name})",
            max_ratio=3.0,
        ),
        Figure(
            f"{name}: peak RSS importing {count:,} rows",
            result["peak_kb"] / 1024,
            "MB",
            limit=RSS_LIMIT_MB,
        ),
        Figure(
            f"{name}: peak RSS exporting {export['rows']:,} people",
            export["peak_kb"] / 1024,
            "MB",
            limit=RSS_LIMIT_MB,
        ),
    ]
    if small:
        small_path = workdir / f"import-{small}.csv"
        write_file(small_path, small)
        with fixtures.scratch_database(kind, workdir) as url:
            _topics(url, workdir)
            few = _child(url, workdir, "import", str(small_path))
        figures.append(
            Figure(
                f"{name}: peak RSS importing {count:,} rows, against {small:,}",
                result["peak_kb"] / 1024,
                "MB",
                baseline=few["peak_kb"] / 1024,
                baseline_name=f"{small:,} rows",
                max_ratio=1.5,
            )
        )
    return figures


def _suppress(url: str, count: int) -> None:
    """The suppressed (bounce) and erased addresses of the mix, on the suppression list."""
    now = datetime.now(UTC)
    rows = []
    for i in range(count):
        kind = kind_of(i)
        if kind in ("suppressed", "erased"):
            reason = "bounce" if kind == "suppressed" else "erased"
            rows.append((address_hash(f"p{i}@example.com", fixtures.HASH_KEY), reason, now))
    sql = (
        "INSERT INTO suppressions (email_hash, reason, source, created_at) "
        "VALUES ({0}, {0}, 'bench', {0})"
    )
    if url.startswith("sqlite"):
        connection = sqlite3.connect(make_url(url).database)
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        connection.executemany(sql.format("?"), [(h, r, stamp) for h, r, _ in rows])
        connection.commit()
        connection.close()
        return
    with psycopg.connect(_conninfo(url)) as connection:
        connection.cursor().executemany(sql.format("%s"), rows)


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _bare_rows(expected: dict[str, int], topic: int) -> Iterator[tuple[str, tuple]]:
    """The rows the import writes, as plain tuples (same columns, similar values)."""
    stamp = datetime.now(UTC)
    for n in range(1, expected["people"] + 1):
        yield (
            "subscribers",
            (n, f"pub{n:019d}", f"p{n}@example.com", f"{n:064x}", '{"n": "1"}', "active")
            + (stamp, stamp),
        )
    context = '{"import": "x", "sha256": "' + "0" * 64 + '", "line": 1}'
    for n in range(1, expected["events"] + 1):
        yield (
            "consent_events",
            (n, n, topic, "opt_in", "web_form", f"form {n}", "2011-07-06", "import:x", context)
            + (stamp, stamp),
        )
        yield ("topic_subscriptions", (n, topic, "opted_in", stamp, n))


COLUMNS = {
    "subscribers": "id, public_id, email, email_hash, attributes, status, created_at, updated_at",
    "consent_events": "id, subscriber_id, topic_id, action, source, source_detail, "
    "policy_version, actor, context, occurred_at, recorded_at",
    "topic_subscriptions": "subscriber_id, topic_id, state, changed_at, event_id",
}


def _topics(url: str, workdir: Path) -> None:
    get_db(fixtures.make_app(url, workdir)).dispose()  # syncs the topic catalogue


def _bare(kind: str, workdir: Path, expected: dict[str, int]) -> float:
    """The baseline: the same rows into the very same (empty) tables of a second database."""
    with fixtures.scratch_database(kind, workdir) as url:
        _topics(url, workdir)
        if kind == "sqlite":
            return _bare_sqlite(url, expected)
        return _bare_postgres(url, expected)


def _topic(cursor) -> int:
    cursor.execute("SELECT id FROM topics WHERE slug = 'offers'")
    return cursor.fetchone()[0]


def _bare_sqlite(url: str, expected: dict[str, int]) -> float:
    connection = sqlite3.connect(make_url(url).database, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            connection.execute(f"PRAGMA {pragma}")
        rows = _bare_rows(expected, _topic(connection.cursor()))
        pending: dict[str, list] = {t: [] for t in TABLES}
        started = time.perf_counter()
        connection.execute("BEGIN")
        for table, row in rows:
            pending[table].append(row)
            if len(pending[table]) >= 10_000:
                _flush_sqlite(connection, table, pending[table])
        for table in TABLES:
            _flush_sqlite(connection, table, pending[table])
        connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()


def _flush_sqlite(connection: sqlite3.Connection, table: str, rows: list) -> None:
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        statement = f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})"
        connection.executemany(statement, [_sqlite_values(r) for r in rows])
        rows.clear()


def _sqlite_values(row: tuple) -> tuple:
    # How SQLAlchemy stores a UTC datetime in SQLite.
    return tuple(v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in row)


def _bare_postgres(url: str, expected: dict[str, int]) -> float:
    with psycopg.connect(_conninfo(url)) as connection:
        topic = _topic(connection.cursor())
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for table in TABLES:
                rows = (row for t, row in _bare_rows(expected, topic) if t == table)
                with cursor.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        connection.commit()
        return time.perf_counter() - started


def _child(url: str, workdir: Path, mode: str, *args: str) -> dict:
    return fixtures.child_process("bench.import_process", url, workdir, mode, *args, what=mode)
