"""The outbox: claiming delivery rows, asking the gate again, and recording outcomes.

Claiming is one short statement that sets a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`,
so workers never wait on each other; SQLite: the write lock serialises claims). Work
happens outside any lock. Each row is re-checked in its own short transaction just
before it is sent, which also confirms the lease is still ours, the row still queued and
the campaign still sending: a cancel, a pause or an unsubscribe takes effect for the
very next message. That per-message transaction is `mailprefs.delivery.sendtx`.

Functions that take `db` accept a connection or a session (whose transaction they then
join): the send loop records rare outcomes (retries, failures) on a Core connection.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import literal_column, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mailprefs.domain import bounces
from mailprefs.domain.addresses import redact
from mailprefs.domain.outbox_models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
)
from mailprefs.logs import event

log = logging.getLogger("mailprefs.worker")

# A literal, not a bound parameter: SQLite can only use the partial queue index when
# the query's condition visibly matches the index's own WHERE.
QUEUED = literal_column("'queued'")


@dataclass(frozen=True)
class Claimed:
    id: int
    campaign_id: int
    subscriber_id: int | None
    attempts: int
    priority: int


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float
    max_attempts: int

    def delay(self, attempts: int) -> timedelta:
        """Exponential backoff with jitter: base, 2x base, 4x base ... capped."""
        seconds = min(self.base_seconds * 2 ** max(attempts - 1, 0), self.max_seconds)
        return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


def sending_campaigns(test_copies: bool = False):
    """Campaigns whose rows may be sent. Test copies are a queue of their own, which the
    worker sends ahead of every batch (`delivery.test_copies`), never mixed into one."""
    test = Campaign.kind == CampaignKind.TEST
    return select(Campaign.id).where(
        Campaign.status == CampaignStatus.SENDING, test if test_copies else ~test
    )


_deliveries = Delivery.__table__


def _connection(db: Connection | Session) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def claim(
    session: Session,
    owner: str,
    *,
    limit: int,
    lease: timedelta,
    now: datetime,
    test_copies: bool = False,
) -> list[Claimed]:
    """Lease up to `limit` due rows (test copies only, or none), most urgent first. The
    caller commits at once."""
    candidates = (
        select(Delivery.id)
        .where(
            Delivery.status == QUEUED,
            Delivery.next_attempt_at <= now,
            (Delivery.lease_until.is_(None)) | (Delivery.lease_until < now),
            Delivery.campaign_id.in_(sending_campaigns(test_copies)),
        )
        .order_by(Delivery.priority, Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(Delivery)
        .where(Delivery.id.in_(candidates.scalar_subquery()))
        .values(lease_owner=owner, lease_until=now + lease)
        .returning(
            Delivery.id,
            Delivery.campaign_id,
            Delivery.subscriber_id,
            Delivery.attempts,
            Delivery.priority,
        )
        .execution_options(synchronize_session=False)
    ).all()
    # RETURNING keeps no order: send the most urgent first.
    return sorted((Claimed(*row) for row in rows), key=lambda c: (c.priority, c.id))


def pending_count(session: Session, now: datetime) -> int:
    from sqlalchemy import func

    return (
        session.scalar(
            select(func.count(Delivery.id)).where(
                Delivery.status == QUEUED,
                Delivery.next_attempt_at <= now,
                Delivery.campaign_id.in_(sending_campaigns()),
            )
        )
        or 0
    )


def _finish(db: Connection | Session, delivery_id: int, status: DeliveryStatus, **values) -> None:
    _connection(db).execute(
        update(_deliveries)
        .where(_deliveries.c.id == delivery_id)
        .values(status=status, lease_owner=None, lease_until=None, **values)
    )


def mark_retry(
    db: Connection | Session, item: Claimed, error: str, policy: RetryPolicy, now: datetime
) -> bool:
    """A temporary failure: back off and retry, or give up after the limit.
    Returns True when it will be retried."""
    attempts = item.attempts + 1
    # One line per retry (the relay's answer is scrubbed of addresses by the formatter).
    event(
        log,
        "outbox.retry",
        delivery=item.id,
        attempts=attempts,
        gave_up=attempts >= policy.max_attempts,
        error=error[:200],
    )
    if attempts >= policy.max_attempts:
        _finish(
            db,
            item.id,
            DeliveryStatus.FAILED,
            reason="retries_exhausted",
            attempts=attempts,
            last_error=error[:512],
        )
        return False
    _connection(db).execute(
        update(_deliveries)
        .where(_deliveries.c.id == item.id)
        .values(
            attempts=attempts,
            next_attempt_at=now + policy.delay(attempts),
            lease_owner=None,
            lease_until=None,
            last_error=error[:512],
        )
    )
    return True


def mark_permanent_failure(
    session: Session,
    item: Claimed,
    error: str,
    *,
    recipient_refused: bool,
    email_hash: str | None,
    now: datetime,
    address: str | None = None,
) -> None:
    """5xx: the row fails for good; a refused recipient is a hard bounce, recorded (and
    suppressed) by `domain.bounces`, which redacts the address out of the relay's answer."""
    _finish(
        session,
        item.id,
        DeliveryStatus.FAILED,
        reason="rejected_recipient" if recipient_refused else "rejected_message",
        attempts=item.attempts + 1,
        last_error=(redact(error, address, limit=512) if address else error[:512]),
    )
    if recipient_refused and email_hash and address:
        bounces.record_refusal(
            session,
            address=address,
            email_hash=email_hash,
            subscriber_id=item.subscriber_id,
            delivery_id=item.id,
            diagnostic=error,
            now=now,
        )


def defer(db: Connection | Session, ids: list[int], owner: str, until: datetime) -> None:
    """Give back leased rows to be tried after `until`, without counting an attempt
    (they were never tried: the relay was down)."""
    if ids:
        _connection(db).execute(
            update(_deliveries)
            .where(_deliveries.c.id.in_(ids), _deliveries.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None, next_attempt_at=until)
        )
        event(log, "outbox.deferred", logging.WARNING, rows=len(ids), until=until.isoformat())


def release(db: Connection | Session, ids: list[int], owner: str) -> None:
    """Give back leased rows we will not send (on shutdown), for others to take now."""
    if ids:
        _connection(db).execute(
            update(_deliveries)
            .where(_deliveries.c.id.in_(ids), _deliveries.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )
