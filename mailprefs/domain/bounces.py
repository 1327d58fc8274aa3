"""What comes back from the mail world: bounces and complaints, made into evidence.

A hard bounce suppresses the address at once. Soft bounces are counted: `limit` of them
within `days` suppress it too (counting only those since the last lift of a bounce
suppression, so a lifted address starts afresh). A complaint goes through
`complaints.report` (a marketing suppression, marketing consent withdrawn with the
complaint as its source, an item in the queue). Every bounce is a `BounceEvent` row.

Addresses nobody registered are recorded by their hash all the same: the address is
suppressed before anyone registers it. Diagnostics often quote the address; it is
replaced by `<recipient>` (`addresses.redact`, every spelling) before anything is
stored, so no free text keeps it.

This module is the only writer of bounce facts (BounceEvent rows and bounce
suppressions): reports that arrive later (`ingest`) and refusals at send time
(`record_refusal`, called by the outbox) alike.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import client_time, complaints, suppression
from mailprefs.domain.addresses import address_hash, normalise, redact
from mailprefs.domain.consent import Evidence
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import Subscriber, Suppression, SuppressionReason
from mailprefs.domain.outbox_models import (
    BounceEvent,
    BounceKind,
    Campaign,
    Complaint,
    ComplaintStatus,
    Delivery,
)

# Events per request (JSON) and recipients per raw report: what one request may write.
MAX_EVENTS = 500
# Events written per transaction: a big report must not hold SQLite's one write lock
# (and the one-click unsubscribes queued behind it) for long.
EVENTS_PER_TRANSACTION = 100


@dataclass(frozen=True)
class Thresholds:
    soft_limit: int
    soft_days: int


@dataclass(frozen=True)
class Event:
    """One bounce or complaint, however it arrived (JSON, DSN, ARF)."""

    type: str  # "bounce" | "complaint" | anything else is ignored
    email: str
    bounce: str | None = None  # "hard" | "soft"
    diagnostic: str | None = None
    at: datetime | None = None
    message_id: str | None = None
    source: str = "json"


@dataclass
class Outcome:
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    suppressed: int = 0  # addresses newly suppressed by these events
    ignored: int = 0  # delays, non-complaint feedback, duplicates, unusable addresses

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def check(events: list[Event]) -> None:
    """Invalid unless every event may be recorded: at most MAX_EVENTS, none dated in the
    future. Checked before anything is written, so a refusal stores nothing."""
    if len(events) > MAX_EVENTS:
        raise Invalid.field("body", f"at most {MAX_EVENTS} recipients per request; split it")
    now = clock.now()
    for i, event in enumerate(events):
        if event.at is not None:
            client_time.happened(
                event.at, now, f"events.{i}.at", "an event cannot have happened in the future"
            )


def ingest(
    session: Session,
    events: list[Event],
    *,
    hash_key: str,
    thresholds: Thresholds,
    actor: str,
) -> Outcome:
    """Record every event; the caller commits. Invalid (nothing stored) if any event is
    dated in the future."""
    check(events)
    outcome = Outcome()
    for event in events:
        if event.type not in ("bounce", "complaint"):
            outcome.ignored += 1
            continue
        try:
            address = normalise(event.email)
        except Invalid:
            outcome.ignored += 1
            continue
        email_hash = address_hash(address, hash_key)
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email_hash == email_hash))
        delivery = _delivery(session, event.message_id)
        if event.type == "complaint":
            _complaint(session, event, email_hash, subscriber, delivery, actor, outcome)
        else:
            _bounce(session, event, address, email_hash, subscriber, delivery, thresholds, outcome)
    session.flush()
    return outcome


def _bounce(
    session: Session,
    event: Event,
    address: str,
    email_hash: str,
    subscriber: Subscriber | None,
    delivery: Delivery | None,
    thresholds: Thresholds,
    outcome: Outcome,
) -> None:
    now = clock.now()
    kind = BounceKind.HARD if event.bounce == "hard" else BounceKind.SOFT
    diagnostic = redact(event.diagnostic, address)
    row = BounceEvent(
        email_hash=email_hash,
        subscriber_id=subscriber.id if subscriber else None,
        kind=kind,
        source=event.source,
        diagnostic=diagnostic,
        delivery_id=delivery.id if delivery else None,
        occurred_at=event.at or now,
        recorded_at=now,
    )
    session.add(row)
    session.flush()
    if kind == BounceKind.HARD:
        outcome.hard += 1
        evidence = {"bounce_event": row.id, "kind": "hard", "diagnostic": (diagnostic or "")[:200]}
        if _suppress(session, email_hash, event.source, evidence):
            outcome.suppressed += 1
        return
    outcome.soft += 1
    recent = soft_bounces_counted(session, email_hash, thresholds.soft_days)
    if recent >= thresholds.soft_limit:
        evidence = {
            "bounce_event": row.id,
            "kind": "soft",
            "soft_bounces": recent,
            "days": thresholds.soft_days,
        }
        if _suppress(session, email_hash, event.source, evidence):
            outcome.suppressed += 1


def record_refusal(
    session: Session,
    *,
    address: str,
    email_hash: str,
    subscriber_id: int | None,
    delivery_id: int,
    diagnostic: str,
    now: datetime,
) -> BounceEvent:
    """A relay refused the recipient with a 5xx at send time: a hard bounce, recorded and
    suppressed like a reported one, the relay's answer redacted first."""
    text = redact(diagnostic, address)
    row = BounceEvent(
        email_hash=email_hash,
        subscriber_id=subscriber_id,
        kind=BounceKind.HARD,
        source="smtp",
        diagnostic=text,
        delivery_id=delivery_id,
        occurred_at=now,
        recorded_at=now,
    )
    session.add(row)
    session.flush()
    evidence = {"delivery": delivery_id, "bounce_event": row.id, "diagnostic": (text or "")[:200]}
    _suppress(session, email_hash, "smtp", evidence)
    return row


def soft_bounces_counted(session: Session, email_hash: str, days: int) -> int:
    """Soft bounces of the last `days` days that count toward the threshold: those after
    the last lift of a bounce suppression of this address."""
    since = clock.now() - timedelta(days=days)
    last_lift = session.scalar(
        select(func.max(Suppression.lifted_at)).where(
            Suppression.email_hash == email_hash,
            Suppression.reason == SuppressionReason.BOUNCE,
        )
    )
    window = BounceEvent.occurred_at >= since
    if last_lift is not None and last_lift >= since:
        window = BounceEvent.occurred_at > last_lift
    return (
        session.scalar(
            select(func.count(BounceEvent.id)).where(
                BounceEvent.email_hash == email_hash, BounceEvent.kind == BounceKind.SOFT, window
            )
        )
        or 0
    )


def _suppress(session: Session, email_hash: str, source: str, evidence: dict) -> bool:
    """Add a bounce suppression; False if the address was already suppressed."""
    if suppression.active(session, email_hash) is not None:
        return False
    suppression.add(
        session, email_hash, SuppressionReason.BOUNCE, source=source[:32], evidence=evidence
    )
    return True


def _complaint(
    session: Session,
    event: Event,
    email_hash: str,
    subscriber: Subscriber | None,
    delivery: Delivery | None,
    actor: str,
    outcome: Outcome,
) -> None:
    campaign = session.get(Campaign, delivery.campaign_id) if delivery else None
    # Feedback loops resend reports; one open item per address and campaign is enough.
    same_campaign = (
        Complaint.campaign_id == campaign.id if campaign else Complaint.campaign_id.is_(None)
    )
    duplicate = session.scalar(
        select(Complaint.id).where(
            Complaint.email_hash == email_hash,
            Complaint.status == ComplaintStatus.OPEN,
            Complaint.source == event.source,
            same_campaign,
        )
    )
    if duplicate is not None:
        outcome.ignored += 1
        return
    was_suppressed = suppression.active(session, email_hash) is not None
    complaints.report(
        session,
        subscriber=subscriber,
        email_hash=email_hash,
        source=event.source,
        evidence=Evidence(source="complaint", actor=actor, occurred_at=event.at),
        campaign=campaign,
        detail=redact(event.diagnostic, event.email.strip().lower()),
    )
    outcome.complaints += 1
    if not was_suppressed:
        outcome.suppressed += 1


def _delivery(session: Session, message_id: str | None) -> Delivery | None:
    """The delivery an original Message-ID names, when the report quotes one."""
    if not message_id:
        return None
    return session.scalar(select(Delivery).where(Delivery.message_id == message_id.strip()))


def counts_by_kind(session: Session, email_hash: str) -> Counter[str]:
    """Bounces recorded for an address, by kind (for the dashboard)."""
    rows = session.execute(
        select(BounceEvent.kind, func.count())
        .where(BounceEvent.email_hash == email_hash)
        .group_by(BounceEvent.kind)
    ).all()
    return Counter({kind.value: n for kind, n in rows})


def for_address(session: Session, email_hash: str, limit: int = 50) -> list[BounceEvent]:
    return list(
        session.scalars(
            select(BounceEvent)
            .where(BounceEvent.email_hash == email_hash)
            .order_by(BounceEvent.occurred_at.desc(), BounceEvent.id.desc())
            .limit(limit)
        )
    )
