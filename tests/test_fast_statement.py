"""`db.FastStatement` writes and reads exactly what SQLAlchemy's own execution does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import bindparam, insert, literal, select

from mailprefs.db import FastStatement
from mailprefs.domain.models import AuditEntry

_audit = AuditEntry.__table__


def test_a_fast_statement_writes_and_reads_what_sqlalchemy_does(db):
    """The same INSERT (typed values: an aware datetime in another zone, JSON, a
    constant, a callable bind, an unused extra value) run fast and through
    `Connection.execute` writes equal rows; a SELECT with a LIMIT gets equal rows back."""
    at = datetime(2026, 3, 2, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    statement = insert(_audit).values(
        at=bindparam("at", type_=_audit.c.at.type),
        actor=bindparam("actor", type_=_audit.c.actor.type),
        # A callable: `bind.value` is None here, `effective_value` the string.
        action=bindparam("action", callable_=lambda: "fast.test", type_=_audit.c.action.type),
        target_type=literal("campaign"),  # a constant in the statement
        target_id=bindparam("target_id", type_=_audit.c.target_id.type),
        detail=bindparam("detail", type_=_audit.c.detail.type),
        ip=bindparam("ip", type_=_audit.c.ip.type),
    )
    values = {
        "at": at,
        "actor": "key:mp_1",
        "target_id": None,
        "detail": {"copies": 2, "nested": ["ü", None]},
        "ip": "2001:db8::1",
        "unused": "ignored",
    }
    with db.engine.begin() as connection:
        fast = FastStatement(statement, connection.dialect)
        fast.execute(connection.connection, {**values, "actor": "fast"}).close()
        connection.execute(statement, {**values, "actor": "slow"})

    columns = [c for c in _audit.c if c.name not in ("id", "actor")]
    with db.engine.connect() as connection:
        rows = {
            row.actor: tuple(row[c.name] for c in columns)
            for row in connection.execute(select(_audit).where(_audit.c.action == "fast.test"))
            .mappings()
            .all()
        }
    assert set(rows) == {"fast", "slow"}
    assert rows["fast"] == rows["slow"]
    assert rows["fast"][0] == at.astimezone(UTC)  # stored as UTC, read back aware

    query = (
        select(_audit.c.actor, _audit.c.target_type)
        .where(_audit.c.action == bindparam("action"))
        .order_by(_audit.c.actor)
        .limit(1)
    )
    with db.engine.connect() as connection:
        fast_rows = (
            FastStatement(query, connection.dialect)
            .execute(connection.connection, {"action": "fast.test"})
            .fetchall()
        )
        slow_rows = connection.execute(query, {"action": "fast.test"}).all()
    assert [tuple(r) for r in fast_rows] == [tuple(r) for r in slow_rows] == [("fast", "campaign")]
