"""Plain `executemany` for an import's biggest inserts, below SQLAlchemy's per-row
parameter processing (which cost more than the database itself, on a million rows).

Ids are reserved first, so no RETURNING is needed: on SQLite the batch's transaction
holds the write lock (BEGIN IMMEDIATE), so max(id) + n cannot be taken by anyone else;
on PostgreSQL the ids come from the table's own sequence.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

# The only tables written this way: names are never input.
TABLES = frozenset({"subscribers", "consent_events", "topic_subscriptions"})


def reserve_ids(session: Session, table: str, n: int) -> list[int]:
    if table not in TABLES:
        raise ValueError(table)
    if n == 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return list(
            session.scalars(
                text(
                    f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "  # noqa: S608
                    "FROM generate_series(1, :n)"
                ),
                {"n": n},
            )
        )
    top = session.scalar(text(f"SELECT coalesce(max(id), 0) FROM {table}")) or 0  # noqa: S608
    return list(range(top + 1, top + n + 1))


@lru_cache(maxsize=4096)
def _sqlite_time(value: datetime) -> str:
    # As mailprefs.db.UTCDateTime stores it on SQLite: UTC, as naive text. Most values of
    # a batch repeat (now, the file's consent dates), hence the cache.
    return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _json(value: Any) -> Any:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


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


def insert_rows(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: list[Sequence[Any]],
    *,
    on_conflict: str = "",
) -> None:
    """INSERT the rows (tuples in `columns` order) with the driver's executemany."""
    if not rows:
        return
    if table not in TABLES:
        raise ValueError(table)
    sqlite = session.get_bind().dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join([mark] * len(columns))}) {on_conflict}"
    )
    convert = [(i, f) for i, f in enumerate(_converters(rows, sqlite)) if f is not None]
    values = []
    for row in rows:
        row = list(row)
        for i, f in convert:
            if row[i] is not None:
                row[i] = f(row[i])
        values.append(tuple(row))
    session.connection().exec_driver_sql(statement, values)
