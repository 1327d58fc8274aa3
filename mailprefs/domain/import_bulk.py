"""Plain driver calls for an import's biggest reads and writes, below SQLAlchemy's
per-row parameter processing (which cost more than the database itself, on a million
rows): sqlite3 `executemany` on SQLite, psycopg `COPY` on PostgreSQL.

Ids are reserved first, so no RETURNING is needed: on SQLite the batch's transaction
holds the write lock (BEGIN IMMEDIATE), so max(id) + n cannot be taken by anyone else;
on PostgreSQL the ids come from the table's own sequence.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Text, any_, bindparam, cast, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

# The only tables written this way: names are never input.
TABLES = frozenset({"subscribers", "consent_events", "topic_subscriptions"})
LOOKUP_CHUNK = 500  # SQLite: values per IN (...) (PostgreSQL takes one array)
# Compact, and built once: json.dumps with arguments builds a new encoder every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
to_json = _ENCODER.encode


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def reserve_ids(session: Session, table: str, n: int) -> list[int]:
    if table not in TABLES:
        raise ValueError(table)
    if n == 0:
        return []
    if is_postgres(session):
        cursor = session.connection().connection.driver_connection.cursor()
        cursor.execute(
            f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "  # noqa: S608
            "FROM generate_series(1, %s)",
            (n,),
        )
        return [r[0] for r in cursor.fetchall()]
    top = session.scalar(text(f"SELECT coalesce(max(id), 0) FROM {table}")) or 0  # noqa: S608
    return list(range(top + 1, top + n + 1))


def lookup(session: Session, query: Any, column: Any, keys: Iterable[Any]) -> Iterator[Any]:
    """The rows of `query` whose `column` is one of `keys` (hashes or ids: no commas). On
    PostgreSQL one statement and one text parameter split by the server (an IN of 500
    values, or an array, costs more to build than to run); IN chunks on SQLite."""
    keys = list(keys)
    if not keys:
        return
    if is_postgres(session):
        joined = ",".join(map(str, keys))
        if joined.count(",") != len(keys) - 1:
            raise ValueError("a lookup key holds a comma")
        split = func.string_to_array(bindparam("keys", joined, type_=Text), ",")
        yield from session.execute(query.where(column == any_(cast(split, ARRAY(column.type)))))
        return
    for i in range(0, len(keys), LOOKUP_CHUNK):
        yield from session.execute(query.where(column.in_(keys[i : i + LOOKUP_CHUNK])))


@lru_cache(maxsize=4096)
def _sqlite_time(value: datetime) -> str:
    # As mailprefs.db.UTCDateTime stores it on SQLite: UTC, as naive text. Most values of
    # a batch repeat (now, the file's consent dates), hence the cache.
    return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _same(value: Any) -> Any:
    return value


def time_as_stored(session: Session) -> Callable[[datetime], Any]:
    """How a UTC datetime goes to the driver: text on SQLite, as it is on PostgreSQL."""
    return _same if is_postgres(session) else _sqlite_time


def _json(value: Any) -> Any:
    return None if value is None else to_json(value)


def _converters(rows: list[Sequence[Any]], sqlite: bool) -> list[Callable[[Any], Any] | None]:
    """Per column, what its values need (decided once, from the first non-null value)."""
    found: list[Callable[[Any], Any] | None] = []
    for column in range(len(rows[0])):
        sample = next((r[column] for r in rows if r[column] is not None), None)
        if isinstance(sample, datetime):
            found.append(_sqlite_time if sqlite else None)
        elif isinstance(sample, dict):
            found.append(_json)
        else:
            found.append(None)
    return found


def _converted(rows: list[Sequence[Any]], sqlite: bool) -> list[Sequence[Any]]:
    convert = _converters(rows, sqlite)
    if not any(convert):
        return rows
    # Column by column: a conversion is then one pass over a list, not a step per cell.
    columns = [
        column if f is None else [None if v is None else f(v) for v in column]
        for f, column in zip(convert, zip(*rows, strict=True), strict=True)
    ]
    return list(zip(*columns, strict=True))


def insert_rows(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: list[Sequence[Any]],
    *,
    upsert: str = "",
) -> None:
    """INSERT the rows (tuples in `columns` order): `executemany` on SQLite, `COPY` on
    PostgreSQL. `upsert` is an `ON CONFLICT ...` clause: on PostgreSQL the rows are then
    copied into a temporary table and upserted from it in one statement."""
    if not rows:
        return
    if table not in TABLES:
        raise ValueError(table)
    names = ", ".join(columns)
    # The driver's own cursor, in the session's transaction.
    cursor = session.connection().connection.driver_connection.cursor()
    if not is_postgres(session):
        statement = (
            f"INSERT INTO {table} ({names}) "  # noqa: S608
            f"VALUES ({', '.join(['?'] * len(columns))}) {upsert}"
        )
        cursor.executemany(statement, _converted(rows, sqlite=True))
        return
    target = table
    if upsert:
        # Dropped at commit (or rollback): a failed batch leaves nothing behind.
        target = f"import_{table}"
        cursor.execute(f"CREATE TEMP TABLE {target} (LIKE {table}) ON COMMIT DROP")
    with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:  # noqa: S608
        for row in _converted(rows, sqlite=False):
            copy.write_row(row)
    if upsert:
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {target} {upsert}"  # noqa: S608
        )
        cursor.execute(f"DROP TABLE {target}")
