"""The send loop's per-message transaction: mark the last message, ask the gate again.

For each claimed row the worker runs one short write transaction, just before the
message is built and sent: it records the previous message as sent, confirms the row is
still ours (leased by us, still queued, its campaign still sending) and extends the
lease, and reads the person's current facts for the gate (and the data the message
needs). A blocked row is marked blocked in the same transaction; a row that is no longer
ours is given back.

This runs once per message, so it is kept lean: the statements are SQLAlchemy Core,
compiled once per dialect (`_Compiled`), and run on a DBAPI connection of their own
with the transaction begun and committed directly (`BEGIN IMMEDIATE` on SQLite, as
`mailprefs.db` does for every write). Through SQLAlchemy's execution layer the same
transaction cost about three times as much CPU as SQLite itself takes for it, which
showed in the messages a worker sends per second (docs/performance-2026-11.md).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, null, select, update
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.sql.expression import Executable

from mailprefs.delivery.outbox import QUEUED, Claimed
from mailprefs.domain import gate
from mailprefs.domain.gate import Decision, Facts, Recipient
from mailprefs.domain.models import Subscriber, SubscriberStatus, SuppressionReason, TopicState
from mailprefs.domain.outbox_models import Campaign, CampaignStatus, Delivery, DeliveryStatus

_deliveries = Delivery.__table__
_campaigns = Campaign.__table__

# Still ours to send: leased by us, still queued, its campaign still sending. Extends
# the lease, so that the row stays ours while the message is built and sent.
_STILL_OURS = (
    update(_deliveries)
    .where(
        _deliveries.c.id == bindparam("delivery_id"),
        _deliveries.c.lease_owner == bindparam("owner"),
        _deliveries.c.status == QUEUED,
        _deliveries.c.campaign_id.in_(
            select(_campaigns.c.id).where(_campaigns.c.status == CampaignStatus.SENDING.value)
        ),
    )
    .values(lease_until=bindparam("until"))
)


def _finished(status: DeliveryStatus, **values: Any) -> Executable:
    return (
        update(_deliveries)
        .where(_deliveries.c.id == bindparam("delivery_id"))
        .values(status=status, lease_owner=null(), lease_until=null(), **values)
    )


_MARK_SENT = _finished(
    DeliveryStatus.SENT,
    sent_at=bindparam("at"),
    decided_at=bindparam("at"),
    message_id=bindparam("sent_message_id"),
    reason=null(),
    last_error=null(),
)
_MARK_BLOCKED = _finished(
    DeliveryStatus.BLOCKED, reason=bindparam("blocked_reason"), decided_at=bindparam("at")
)
# Paused, cancelled or already handled: give the row back now, so that a resume does
# not wait for our lease to run out.
_RELEASE = (
    update(_deliveries)
    .where(
        _deliveries.c.id == bindparam("delivery_id"),
        _deliveries.c.lease_owner == bindparam("owner"),
    )
    .values(lease_owner=null(), lease_until=null())
)


@functools.lru_cache(maxsize=64)
def _recipient_query(topic_id: int) -> Executable:
    """`gate.load_recipient`'s query (the same joins, from `gate.audience_joins`), built
    once per topic with the subscriber as a parameter."""
    joined, c = gate.audience_joins(topic_id)
    s = Subscriber.__table__.c
    return (
        select(
            c.status,
            c.status_reason,
            c.state,
            c.suppression,
            s.public_id,
            s.email,
            s.attributes,
        )
        .select_from(joined)
        .where(s.id == bindparam("subscriber_id"))
    )


class _Compiled:
    """A Core statement compiled for one dialect, with its parameters' bind processors.

    Values pass through their column types' own processors, so the driver receives what
    `Connection.execute` would give it; rows come back as the driver returns them.
    """

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.order = compiled.positiontup if compiled.positional else None
        self.constants: dict[str, Any] = {}
        self.processors: dict[str, Any] = {}
        for bind, name in compiled.bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                if process is not None:
                    self.processors[name] = process
            else:
                self.constants[name] = process(bind.value) if process else bind.value

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        params = dict(self.constants)
        for name, value in values.items():
            process = self.processors.get(name)
            params[name] = process(value) if process is not None else value
        if self.order is not None:
            return tuple(params[name] for name in self.order)
        return params


class SendTransactions:
    """One DBAPI connection from the engine's pool, for a batch's per-message transactions.

    Use as a context manager; `commit()` ends each transaction (the first statement
    begins one). Closing rolls back whatever was not committed.
    """

    def __init__(self, engine: Engine) -> None:
        self._pooled = engine.raw_connection()
        self._dbapi = self._pooled.driver_connection
        self._dialect = engine.dialect
        self._sqlite = engine.dialect.name == "sqlite"
        self._compiled: dict[Any, _Compiled] = {}
        self._open = False

    def __enter__(self) -> SendTransactions:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def open(self) -> bool:
        return self._open

    def commit(self) -> None:
        if self._open:
            self._dbapi.commit()
            self._open = False

    def close(self) -> None:
        try:
            if self._open:
                self._dbapi.rollback()
                self._open = False
        finally:
            self._pooled.close()

    def _execute(self, key: Any, build: Any, values: dict[str, Any]) -> Any:
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(build(), self._dialect)
        if not self._open:
            # psycopg begins a transaction by itself; SQLite must take the write lock up
            # front (see mailprefs.db), or a concurrent writer fails instead of waiting.
            if self._sqlite:
                self._dbapi.execute("BEGIN IMMEDIATE")
            self._open = True
        cursor = self._dbapi.cursor()
        cursor.execute(compiled.sql, compiled.parameters(values))
        return cursor

    def mark_sent(self, delivery_id: int, message_id: str, now: datetime) -> None:
        self._execute(
            "sent",
            lambda: _MARK_SENT,
            {"delivery_id": delivery_id, "at": now, "sent_message_id": message_id},
        ).close()

    def prepare(
        self,
        item: Claimed,
        topic_id: int,
        topic_kind: str,
        *,
        owner: str,
        lease: timedelta,
        now: datetime,
    ) -> tuple[Decision, Recipient | None] | None:
        """Re-check one row just before sending it.

        Returns None when the row is no longer ours to send (cancelled, paused, leased by
        another worker after ours expired); otherwise the gate's decision, already
        recorded on the row when it blocks.
        """
        cursor = self._execute(
            "still_ours",
            lambda: _STILL_OURS,
            {"delivery_id": item.id, "owner": owner, "until": now + lease},
        )
        ours = cursor.rowcount == 1
        cursor.close()
        if not ours:
            self._execute(
                "release", lambda: _RELEASE, {"delivery_id": item.id, "owner": owner}
            ).close()
            return None
        recipient = (
            self._recipient(item.subscriber_id, topic_id)
            if item.subscriber_id is not None
            else None
        )
        decision = gate.decide(recipient.facts if recipient else None, topic_kind, now)
        if recipient is not None and decision.allowed and not recipient.email:
            decision = gate.Blocked(gate.ERASED)  # defensive: nothing to send to
        if not decision.allowed:
            self._execute(
                "blocked",
                lambda: _MARK_BLOCKED,
                {"delivery_id": item.id, "blocked_reason": decision.reason, "at": now},
            ).close()
        return decision, recipient

    def _recipient(self, subscriber_id: int, topic_id: int) -> Recipient | None:
        """The same as `gate.load_recipient`: the gate's facts and the message's data,
        fresh from the database."""
        cursor = self._execute(
            ("recipient", topic_id),
            lambda: _recipient_query(topic_id),
            {"subscriber_id": subscriber_id},
        )
        row = cursor.fetchone()
        cursor.close()
        if row is None:
            return None
        status, status_reason, state, suppressed, public_id, email, attributes = row
        if isinstance(attributes, str):  # SQLite hands JSON back as text
            attributes = json.loads(attributes)
        return Recipient(
            facts=Facts(
                status=SubscriberStatus(status),
                status_reason=status_reason,
                topic_state=TopicState(state) if state else TopicState.NONE,
                suppression=SuppressionReason(suppressed) if suppressed else None,
            ),
            public_id=public_id,
            email=email,
            attributes=attributes or {},
        )
