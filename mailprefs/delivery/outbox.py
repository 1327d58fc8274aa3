"""The outbox: claiming delivery rows, asking the gate again, and recording outcomes.

Claiming is one short statement that sets a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`,
so workers never wait on each other; SQLite: the write lock serialises claims). Work
happens outside any lock. Each row is re-checked in its own short transaction just
before it is sent, which also confirms the lease is still ours, the row still queued and
the campaign still sending: a cancel, a pause or an unsubscribe takes effect for the
very next message.

The send loop runs on a Core connection, and the statements it runs for every message
are built once, with bound parameters: building a statement and passing it through the
ORM session costs several times what SQLite takes to run it. Functions that take `db`
accept a connection or a session (whose transaction they then join).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, literal_column, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mailprefs.domain import gate, suppression
from mailprefs.domain.gate import Decision, Facts, Recipient
from mailprefs.domain.models import (
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
    TopicState,
)
from mailprefs.domain.outbox_models import (
    BounceEvent,
    BounceKind,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
)

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


def sending_campaigns():
    return select(Campaign.id).where(Campaign.status == CampaignStatus.SENDING)


_deliveries = Delivery.__table__


def _connection(db: Connection | Session) -> Connection:
    return db.connection() if isinstance(db, Session) else db


# Still ours to send: leased by us, still queued, its campaign still sending. Extends
# the lease, so the row stays ours while the message is built and sent.
_STILL_OURS = (
    update(_deliveries)
    .where(
        _deliveries.c.id == bindparam("delivery_id"),
        _deliveries.c.lease_owner == bindparam("owner"),
        _deliveries.c.status == QUEUED,
        _deliveries.c.campaign_id.in_(
            select(Campaign.__table__.c.id).where(
                Campaign.__table__.c.status == CampaignStatus.SENDING.value
            )
        ),
    )
    .values(lease_until=bindparam("until"))
)

_MARK_SENT = (
    update(_deliveries)
    .where(_deliveries.c.id == bindparam("delivery_id"))
    .values(
        status=DeliveryStatus.SENT,
        lease_owner=None,
        lease_until=None,
        sent_at=bindparam("at"),
        decided_at=bindparam("at"),
        message_id=bindparam("sent_message_id"),
        reason=None,
        last_error=None,
    )
)


@functools.lru_cache(maxsize=64)
def _recipient_query(topic_id: int):
    """`gate.load_recipient`'s query, built once per topic with the subscriber bound."""
    joined, c = gate.audience_joins(topic_id)
    s = Subscriber.__table__.c
    return (
        select(
            c.status,
            c.status_reason,
            c.state.label("state"),
            c.suppression.label("suppression"),
            s.public_id,
            s.email,
            s.attributes,
        )
        .select_from(joined)
        .where(s.id == bindparam("subscriber_id"))
    )


def load_recipient(db: Connection | Session, subscriber_id: int, topic_id: int) -> Recipient | None:
    """The same as `gate.load_recipient` (the facts for the gate, the data for the
    message, fresh from the database), without building the query each time."""
    row = (
        _connection(db)
        .execute(_recipient_query(topic_id), {"subscriber_id": subscriber_id})
        .first()
    )
    if row is None:
        return None
    return Recipient(
        facts=Facts(
            status=SubscriberStatus(row.status),
            status_reason=row.status_reason,
            topic_state=TopicState(row.state) if row.state else TopicState.NONE,
            suppression=SuppressionReason(row.suppression) if row.suppression else None,
        ),
        public_id=row.public_id,
        email=row.email,
        attributes=row.attributes or {},
    )


def claim(
    session: Session, owner: str, *, limit: int, lease: timedelta, now: datetime
) -> list[Claimed]:
    """Lease up to `limit` due rows, most urgent first. The caller commits at once."""
    candidates = (
        select(Delivery.id)
        .where(
            Delivery.status == QUEUED,
            Delivery.next_attempt_at <= now,
            (Delivery.lease_until.is_(None)) | (Delivery.lease_until < now),
            Delivery.campaign_id.in_(sending_campaigns()),
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


def prepare(
    db: Connection | Session,
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
    another worker after ours expired); otherwise the gate's decision, already recorded
    on the row when it blocks.
    """
    connection = _connection(db)
    still_ours = connection.execute(
        _STILL_OURS, {"delivery_id": item.id, "owner": owner, "until": now + lease}
    )
    if still_ours.rowcount != 1:
        # Paused, cancelled or already handled: give the row back now, so that a resume
        # does not wait for our lease to run out.
        release(connection, [item.id], owner)
        return None
    recipient = (
        load_recipient(connection, item.subscriber_id, topic_id)
        if item.subscriber_id is not None
        else None
    )
    decision = gate.decide(recipient.facts if recipient else None, topic_kind, now)
    if recipient is not None and decision.allowed and not recipient.email:
        decision = gate.Blocked(gate.ERASED)  # defensive: nothing to send to
    if not decision.allowed:
        _finish(connection, item.id, DeliveryStatus.BLOCKED, reason=decision.reason, decided_at=now)
    return decision, recipient


def _finish(db: Connection | Session, delivery_id: int, status: DeliveryStatus, **values) -> None:
    _connection(db).execute(
        update(_deliveries)
        .where(_deliveries.c.id == delivery_id)
        .values(status=status, lease_owner=None, lease_until=None, **values)
    )


def mark_sent(db: Connection | Session, delivery_id: int, message_id: str, now: datetime) -> None:
    _connection(db).execute(
        _MARK_SENT, {"delivery_id": delivery_id, "at": now, "sent_message_id": message_id}
    )


def mark_retry(
    db: Connection | Session, item: Claimed, error: str, policy: RetryPolicy, now: datetime
) -> bool:
    """A temporary failure: back off and retry, or give up after the limit.
    Returns True when it will be retried."""
    attempts = item.attempts + 1
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
) -> None:
    """5xx: the row fails for good; a refused recipient goes on the suppression list."""
    _finish(
        session,
        item.id,
        DeliveryStatus.FAILED,
        reason="rejected_recipient" if recipient_refused else "rejected_message",
        attempts=item.attempts + 1,
        last_error=error[:512],
    )
    if recipient_refused and email_hash:
        suppression.add(
            session,
            email_hash,
            SuppressionReason.BOUNCE,
            source="smtp",
            evidence={"delivery": item.id, "diagnostic": error[:200]},
        )
        session.add(
            BounceEvent(
                email_hash=email_hash,
                subscriber_id=item.subscriber_id,
                kind=BounceKind.HARD,
                source="smtp",
                diagnostic=error[:1000],
                delivery_id=item.id,
                occurred_at=now,
                recorded_at=now,
            )
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


def release(db: Connection | Session, ids: list[int], owner: str) -> None:
    """Give back leased rows we will not send (on shutdown), for others to take now."""
    if ids:
        _connection(db).execute(
            update(_deliveries)
            .where(_deliveries.c.id.in_(ids), _deliveries.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )
