"""What the housekeeping jobs change, as plain functions of a session (testable alone)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailprefs.domain import audit, campaigns
from mailprefs.domain.models import AuditEntry, ConsentAction, ConsentEvent, IdempotencyRecord
from mailprefs.domain.outbox_models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
)

ACTOR = "scheduler"
IDEMPOTENCY_KEEP = timedelta(days=1)
COMPACT_ACTION = "database.compact"


def cancel_stale_confirmations(session: Session, now: datetime, max_age: timedelta) -> int:
    """Cancel confirmation mails still queued once their request is older than a
    confirmation link lives (MAILPREFS_CONFIRM_MAX_AGE_HOURS), e.g. after days of a
    relay refusing: a request to confirm that arrives that late would surprise the
    person. The topic stays `pending` (the gate keeps blocking it) until they ask again.
    A row a worker holds right now is left to it. Returns how many were cancelled."""
    in_hand = (Delivery.lease_until.is_not(None)) & (Delivery.lease_until >= now)
    stale = session.scalars(
        select(Campaign)
        .where(
            Campaign.kind == CampaignKind.CONFIRMATION,
            Campaign.status == CampaignStatus.SENDING,
            Campaign.created_at < now - max_age,
            select(Delivery.id)
            .where(
                Delivery.campaign_id == Campaign.id,
                Delivery.status == DeliveryStatus.QUEUED,
                ~in_hand,
            )
            .exists(),
        )
        .order_by(Campaign.id)
        .limit(1000)
    ).all()
    for campaign in stale:
        campaigns.cancel(session, campaign, ACTOR)
    return len(stale)


def prune_idempotency(session: Session, now: datetime) -> int:
    """Forget stored answers to `Idempotency-Key` requests older than a day (clients
    retry within minutes; the records would otherwise grow for ever)."""
    result = session.execute(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.created_at < now - IDEMPOTENCY_KEEP)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def erasures_since_compaction(session: Session, now: datetime) -> int:
    """Erasures recorded since the last compaction (or in the last day, if none ran)."""
    last = session.scalar(
        select(func.max(AuditEntry.at)).where(AuditEntry.action == COMPACT_ACTION)
    )
    since = last or now - timedelta(days=1)
    return (
        session.scalar(
            select(func.count(ConsentEvent.id)).where(
                ConsentEvent.action == ConsentAction.ERASE, ConsentEvent.recorded_at > since
            )
        )
        or 0
    )


def record_compaction(session: Session, started: datetime, erasures: int) -> None:
    """Dated when the compaction started, so erasures made while it ran count next time."""
    entry = audit.record(session, ACTOR, COMPACT_ACTION, detail={"erasures": erasures})
    entry.at = started
