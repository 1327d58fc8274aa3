"""Plain `executemany` for an import's biggest inserts, below SQLAlchemy's per-row
parameter processing (which cost more than the database itself, on a million rows).

Ids are reserved first, so no RETURNING is needed: on SQLite the batch's transaction
holds the write lock (BEGIN IMMEDIATE), so max(id) + n cannot be taken by anyone else;
on PostgreSQL the ids come from the table's own sequence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
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


def _value(value: Any, sqlite: bool) -> Any:
    if isinstance(value, datetime):
        # As mailprefs.db.UTCDateTime stores it: UTC, and naive text on SQLite.
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else value
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


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
    values = [tuple(_value(v, sqlite) for v in row) for row in rows]
    session.connection().exec_driver_sql(statement, values)
