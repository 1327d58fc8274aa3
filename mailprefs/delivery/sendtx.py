"""The send loop's per-message transaction: mark the last message, ask the gate again.

For each claimed row the worker runs one short write transaction, just before the
message is built and sent: it records the previous message as sent, confirms the row is
still ours (leased by us, still queued, its campaign still sending) and extends the
lease, and reads the person's current facts for the gate (and the data the message
needs). A blocked row is marked blocked in the same transaction; a row that is no longer
ours is given back.

This runs once per message, so it is kept lean: the statements are SQLAlchemy Core,
compiled once per dialect (`mailprefs.db.FastStatement`), and run on a DBAPI connection of their own
with the transaction begun and committed directly (`BEGIN IMMEDIATE` on SQLite, as
`mailprefs.db` does for every write). Through SQLAlchemy's execution layer the same
transaction cost about three times as much CPU as SQLite itself takes for it, which
showed in the messages a worker sends per second (docs/performance-2026-11.md).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, null, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.sql.expression import Executable

from mailprefs.db import FastStatement
from mailprefs.delivery.outbox import QUEUED, Claimed
from mailprefs.domain import gate
from mailprefs.domain.gate import Decision, Recipient
from mailprefs.domain.outbox_models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from mailprefs.logs import event

log = logging.getLogger("mailprefs.worker")

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
        self._compiled: dict[Any, FastStatement] = {}
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
            compiled = self._compiled[key] = FastStatement(build(), self._dialect)
        if not self._open:
            # psycopg begins a transaction by itself; SQLite must take the write lock up
            # front (see mailprefs.db), or a concurrent writer fails instead of waiting.
            if self._sqlite:
                self._dbapi.execute("BEGIN IMMEDIATE")
            self._open = True
        return compiled.execute(self._dbapi, values)

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
        purpose: str | None = None,
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
            # Our lease ran out and another worker took it, or the campaign was paused
            # or cancelled meanwhile: given back, not sent.
            event(log, "worker.row_given_back", delivery=item.id, campaign=item.campaign_id)
            return None
        recipient = (
            self._recipient(item.subscriber_id, topic_id)
            if item.subscriber_id is not None
            else None
        )
        decision = gate.decide(recipient.facts if recipient else None, topic_kind, now, purpose)
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
        """`gate.load_recipient` on this connection: its query, its reading of the row."""
        cursor = self._execute(
            ("recipient", topic_id),
            lambda: gate.recipient_query(topic_id),
            {"subscriber_id": subscriber_id},
        )
        row = cursor.fetchone()
        cursor.close()
        return gate.recipient_of(row)
