"""Expanding a campaign into the outbox: one delivery row per (campaign, person).

Each batch is one `INSERT ... SELECT` over a keyset range of subscriber ids, with the
gate's decision computed in SQL (`gate.reason_sql`), so nothing per person passes
through Python and memory stays flat in the audience size. The checkpoint
(`expanded_through`) moves in the same transaction as the rows it covers, so a crash
resumes exactly where the last committed batch ended; the unique (campaign,
subscriber) constraint makes a repeated batch harmless. A lease on the campaign row
keeps two processes from expanding the same campaign at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, func, literal, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailprefs.db import UTCDateTime
from mailprefs.domain import campaigns as campaign_rules
from mailprefs.domain import gate
from mailprefs.domain.models import Subscriber
from mailprefs.domain.outbox_models import Campaign, CampaignStatus, Delivery, DeliveryStatus

EXPANDABLE = (CampaignStatus.SENDING,)
# The delivery columns an expansion fills, in the order of its SELECT.
OUTBOX_COLUMNS = (
    "campaign_id",
    "subscriber_id",
    "status",
    "reason",
    "priority",
    "attempts",
    "next_attempt_at",
    "decided_at",
)


def pending_expansions(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(Campaign.id).where(
                Campaign.status.in_(EXPANDABLE), Campaign.expansion_done.is_(False)
            )
        )
    )


def take_lease(session: Session, campaign_id: int, owner: str, now: datetime, seconds: int) -> bool:
    """Hold the campaign's expansion lease (conditional UPDATE: one holder at a time)."""
    result = session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.expansion_done.is_(False),
            (Campaign.lease_owner == owner)
            | Campaign.lease_until.is_(None)
            | (Campaign.lease_until < now),
        )
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
    )
    return result.rowcount == 1


def _insert(dialect: str):
    return (postgresql if dialect == "postgresql" else sqlite).insert(Delivery.__table__)


def expand_batch(
    session: Session,
    campaign: Campaign,
    *,
    owner: str,
    now: datetime,
    batch: int,
    lease_seconds: int,
) -> int:
    """Add the next batch of delivery rows; returns how many subscribers it covered.

    The caller commits after each call. Returns 0 when the campaign is fully expanded
    (and marks it so), or -1 when the lease was lost to another process.
    """
    subscribers = Subscriber.__table__
    after = campaign.expanded_through
    upper = session.scalar(
        select(subscribers.c.id)
        .where(subscribers.c.id > after)
        .order_by(subscribers.c.id)
        .offset(batch - 1)
        .limit(1)
    )
    if upper is None:
        upper = session.scalar(select(func.max(subscribers.c.id)).where(subscribers.c.id > after))
    if upper is None:
        if keeps_expanding(campaign, now):
            return 0
        campaign.expansion_done = True
        campaign.lease_owner = campaign.lease_until = None
        analyze_outbox(session)
        return 0
    joined, columns = gate.audience_joins(campaign.topic_id, ids=(after, upper))
    reason = gate.reason_sql(columns, campaign.topic.kind)
    status = gate_status(reason)
    rows = (
        select(
            literal(campaign.id).label("campaign_id"),
            subscribers.c.id.label("subscriber_id"),
            status.label("status"),
            reason.label("reason"),
            literal(campaign.priority).label("priority"),
            literal(0).label("attempts"),
            literal(now, UTCDateTime()).label("next_attempt_at"),
            literal(now, UTCDateTime()).label("decided_at"),
        )
        .select_from(joined)
        .where(
            subscribers.c.id > after,
            subscribers.c.id <= upper,
            *campaign_rules.audience_filter(campaign.audience, subscribers),
        )
    )
    dialect = session.get_bind().dialect.name
    insert = _insert(dialect).from_select(list(OUTBOX_COLUMNS), rows)
    session.execute(insert.on_conflict_do_nothing())
    moved = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id, Campaign.lease_owner == owner)
        .values(
            expanded_through=upper,
            lease_until=now + timedelta(seconds=lease_seconds),
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        return -1
    campaign.expanded_through = upper
    return upper - after


def expand_step(
    session: Session,
    campaign_id: int,
    *,
    owner: str,
    now: datetime,
    batch: int,
    lease_seconds: int,
) -> int:
    """Take (or renew) the expansion lease and add one batch; the caller commits.

    Returns what expand_batch returns; -1 also when another process holds the lease.
    """
    if not take_lease(session, campaign_id, owner, now, lease_seconds):
        return -1
    return expand_batch(
        session,
        session.get(Campaign, campaign_id),
        owner=owner,
        now=now,
        batch=batch,
        lease_seconds=lease_seconds,
    )


def analyze_outbox(session: Session) -> None:
    """Refresh the planner's statistics of the outbox, whose queued rows just arrived in
    bulk. Without them both databases answer a claim by sorting the whole queue instead
    of walking the queue index for the first rows: at 100,000 queued rows a claim of 200
    took 30 ms instead of 2.7 ms on SQLite, 38 ms instead of 5 ms on PostgreSQL, and the
    cost grows with the queue (docs/performance-2026-11.md)."""
    if session.get_bind().dialect.name == "sqlite":
        # Sampled, so it stays a few milliseconds however large the table.
        session.execute(text("PRAGMA analysis_limit=1000"))
    session.execute(text("ANALYZE deliveries"))


def gate_status(reason):
    """queued where the gate allows, blocked where it gives a reason."""
    return case(
        (reason.is_(None), literal(DeliveryStatus.QUEUED.value)),
        else_=literal(DeliveryStatus.BLOCKED.value),
    )


def keeps_expanding(campaign: Campaign, now: datetime) -> bool:
    """Whether a campaign goes on taking people who register later (policy notices do,
    until the policy takes effect; see mailprefs.domain.policies)."""
    from mailprefs.domain.policies import accepts_newcomers

    return accepts_newcomers(campaign, now)
