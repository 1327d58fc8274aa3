"""The reputation guard: complaint and hard-bounce rates, and the breaker that pauses.

Mailbox providers judge a sender by the share of its mail that is reported as spam or
bounces: Gmail asks bulk senders to stay under 0.1% spam reports and never reach 0.3%;
Amazon SES puts an account under review at 5% bounces (docs/reputation.md has the
sources). So per campaign (and per stream, over a rolling window) we count

    delivered     messages handed to the relay: sent, or refused by it for the address
    hard bounces  deliveries with a hard bounce recorded against them
    complaints    addresses that complained about the campaign

and once a campaign has `min_sample` deliveries, a rate above its limit pauses it with
the reason `complaint_rate` or `bounce_rate`, audited. Ops resume it with a written
note; the guard then judges only what happens after the resume (`rates_baseline`).

A bounce or complaint counts toward a campaign when it names one of its deliveries (the
original Message-ID in a DSN or ARF report, a VERP return path, or, for JSON events that
name neither, the last message sent to that address within ATTRIBUTION_DAYS).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, distinct, func, or_, select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit
from mailprefs.domain.addresses import address_hash, normalise
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import Subscriber, Topic, TopicKind
from mailprefs.domain.outbox_models import (
    BounceEvent,
    BounceKind,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Complaint,
    Delivery,
    DeliveryStatus,
)

COMPLAINT_RATE = "complaint_rate"
BOUNCE_RATE = "bounce_rate"
GUARD_REASONS = (COMPLAINT_RATE, BOUNCE_RATE)
GUARD_ACTOR = "system:reputation-guard"
ATTRIBUTION_DAYS = 30
MAX_NOTE = 2000


@dataclass(frozen=True)
class Limits:
    complaint_rate: float = 0.003
    bounce_rate: float = 0.05
    min_sample: int = 1000
    window_days: int = 7

    @classmethod
    def from_config(cls, config: Any) -> Limits:
        return cls(
            complaint_rate=config["MAILPREFS_COMPLAINT_RATE_LIMIT"],
            bounce_rate=config["MAILPREFS_BOUNCE_RATE_LIMIT"],
            min_sample=config["MAILPREFS_RATE_MIN_SAMPLE"],
            window_days=config["MAILPREFS_RATE_WINDOW_DAYS"],
        )


@dataclass(frozen=True)
class Rates:
    delivered: int = 0
    hard_bounces: int = 0
    complaints: int = 0

    @property
    def bounce_rate(self) -> float:
        return self.hard_bounces / self.delivered if self.delivered else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.delivered if self.delivered else 0.0

    def minus(self, baseline: dict[str, Any] | None) -> Rates:
        """What happened after `baseline` (counts saved when ops last resumed)."""
        if not baseline:
            return self
        return Rates(
            delivered=max(self.delivered - int(baseline.get("delivered", 0)), 0),
            hard_bounces=max(self.hard_bounces - int(baseline.get("hard_bounces", 0)), 0),
            complaints=max(self.complaints - int(baseline.get("complaints", 0)), 0),
        )

    def counts(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "hard_bounces": self.hard_bounces,
            "complaints": self.complaints,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.counts(),
            "bounce_rate": round(self.bounce_rate, 6),
            "complaint_rate": round(self.complaint_rate, 6),
        }


# Handed to the relay: sent, or refused by it for this address (a synchronous bounce).
_DELIVERED = or_(
    Delivery.status == DeliveryStatus.SENT,
    and_(Delivery.status == DeliveryStatus.FAILED, Delivery.reason == "rejected_recipient"),
)


def _bounced(session: Session, *conditions: Any) -> int:
    """How many deliveries have a bounce event meeting `conditions` (each counted once)."""
    count = session.scalar(
        select(func.count(distinct(BounceEvent.delivery_id)))
        .join(Delivery, Delivery.id == BounceEvent.delivery_id)
        .where(*conditions)
    )
    return count or 0


def campaign_rates(session: Session, campaign_id: int) -> Rates:
    delivered = session.scalar(
        select(func.count(Delivery.id)).where(Delivery.campaign_id == campaign_id, _DELIVERED)
    )
    hard = _bounced(
        session, Delivery.campaign_id == campaign_id, BounceEvent.kind == BounceKind.HARD
    )
    complaints = session.scalar(
        select(func.count(distinct(Complaint.email_hash))).where(
            Complaint.campaign_id == campaign_id
        )
    )
    return Rates(delivered or 0, hard, complaints or 0)


def stream_rates(session: Session, stream: TopicKind, since: datetime) -> Rates:
    """One stream's rates over mail sent since `since` (and what came back since)."""
    in_stream = Campaign.topic_id.in_(select(Topic.id).where(Topic.kind == stream))
    stream_campaigns = select(Campaign.id).where(in_stream)
    sent = session.scalar(
        select(func.count(Delivery.id)).where(
            Delivery.campaign_id.in_(stream_campaigns),
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at >= since,
        )
    )
    # A refusal by the relay has no sent_at; its bounce event says when it happened.
    in_window = (Delivery.campaign_id.in_(stream_campaigns), BounceEvent.occurred_at >= since)
    refused = _bounced(
        session,
        *in_window,
        Delivery.status == DeliveryStatus.FAILED,
        Delivery.reason == "rejected_recipient",
    )
    hard = _bounced(session, *in_window, BounceEvent.kind == BounceKind.HARD)
    complaints = session.scalar(
        select(func.count(distinct(Complaint.email_hash))).where(
            Complaint.campaign_id.in_(stream_campaigns), Complaint.created_at >= since
        )
    )
    return Rates((sent or 0) + refused, hard, complaints or 0)


def breach(rates: Rates, limits: Limits) -> str | None:
    """The reason to pause, if the sample is large enough and a rate is over its limit.
    Complaints first: they are what providers weigh most."""
    if rates.delivered < limits.min_sample:
        return None
    if rates.complaint_rate > limits.complaint_rate:
        return COMPLAINT_RATE
    if rates.bounce_rate > limits.bounce_rate:
        return BOUNCE_RATE
    return None


def check(session: Session, campaign: Campaign, limits: Limits) -> str | None:
    """Pause a sending campaign whose rates are over a limit; returns the reason if it
    paused it. Only campaigns: a policy notice or a transactional message must go out."""
    if campaign.kind != CampaignKind.CAMPAIGN or campaign.status != CampaignStatus.SENDING:
        return None
    rates = campaign_rates(session, campaign.id)
    judged = rates.minus(campaign.rates_baseline)
    reason = breach(judged, limits)
    if reason is None:
        return None
    campaign.status = CampaignStatus.PAUSED
    campaign.pause_reason = reason
    limit = limits.complaint_rate if reason == COMPLAINT_RATE else limits.bounce_rate
    campaign.pause_detail = {
        **judged.as_dict(),
        "limit": limit,
        "min_sample": limits.min_sample,
        "at": clock.now().isoformat(),
    }
    audit.record(
        session,
        GUARD_ACTOR,
        "campaign.pause",
        target_type="campaign",
        target_id=campaign.public_id,
        detail={"reason": reason, **campaign.pause_detail},
    )
    session.flush()
    return reason


def check_campaigns(session: Session, campaign_ids: Iterable[int], limits: Limits) -> list[str]:
    """`check` each of these campaigns (locked first, so that two processes judging at
    once pause it once); returns the public ids of those it paused."""
    paused = []
    for campaign_id in sorted(set(campaign_ids)):
        campaign = session.scalar(
            select(Campaign).where(Campaign.id == campaign_id).with_for_update()
        )
        if campaign is not None and check(session, campaign, limits):
            paused.append(campaign.public_id)
    return paused


def campaigns_of_messages(session: Session, message_ids: Iterable[str | None]) -> set[int]:
    ids = {m.strip() for m in message_ids if m}
    if not ids:
        return set()
    return set(
        session.scalars(select(Delivery.campaign_id).where(Delivery.message_id.in_(ids)).distinct())
    )


def last_message_to(session: Session, email: str, hash_key: str) -> str | None:
    """The Message-ID of the last message sent to an address within ATTRIBUTION_DAYS."""
    try:
        email_hash = address_hash(normalise(email), hash_key)
    except Invalid:
        return None
    since = clock.now() - timedelta(days=ATTRIBUTION_DAYS)
    return session.scalar(
        select(Delivery.message_id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Subscriber.email_hash == email_hash,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at >= since,
        )
        .order_by(Delivery.sent_at.desc(), Delivery.id.desc())
        .limit(1)
    )


def attribute(session: Session, events: list[Any], hash_key: str) -> list[Any]:
    """Events (bounces.Event) that name no message get the last one sent to the address,
    so that the JSON events of a provider's webhook count toward a campaign too."""
    out = []
    for event in events:
        if event.message_id or event.type not in ("bounce", "complaint"):
            out.append(event)
            continue
        message_id = last_message_to(session, event.email, hash_key)
        out.append(dataclasses.replace(event, message_id=message_id) if message_id else event)
    return out


def resume_note(campaign: Campaign, note: str | None) -> dict[str, Any] | None:
    """For a campaign the guard paused: the written note ops must give to resume it, and
    the counts from which the guard judges again. None for any other pause."""
    if campaign.pause_reason not in GUARD_REASONS:
        return None
    note = (note or "").strip()
    if not note:
        raise Invalid.field(
            "note",
            f"this campaign was paused by the reputation guard ({campaign.pause_reason}); "
            "write what was checked or changed before resuming it",
        )
    return {"note": note[:MAX_NOTE], "was": campaign.pause_reason}


def ingest(
    session: Session,
    events: list[Any],
    *,
    hash_key: str,
    thresholds: Any,
    actor: str,
    limits: Limits,
) -> Any:
    """`bounces.ingest` (the one writer of bounce facts), after attributing events to the
    message they answer, then the guard's judgement of the campaigns they concern. The
    caller commits: the facts and any pause are one transaction."""
    from mailprefs.domain import bounces

    events = attribute(session, events, hash_key)
    outcome = bounces.ingest(session, events, hash_key=hash_key, thresholds=thresholds, actor=actor)
    check_campaigns(session, campaigns_of_messages(session, (e.message_id for e in events)), limits)
    return outcome


def summary(session: Session, campaign: Campaign, limits: Limits) -> dict[str, Any]:
    """The campaign's rates, its stream's over the window, and the limits (API stats)."""
    since = clock.now() - timedelta(days=limits.window_days)
    return {
        **campaign_rates(session, campaign.id).as_dict(),
        "stream": {
            "kind": campaign.topic.kind.value,
            "window_days": limits.window_days,
            **stream_rates(session, campaign.topic.kind, since).as_dict(),
        },
        "limits": {
            "complaint_rate": limits.complaint_rate,
            "bounce_rate": limits.bounce_rate,
            "min_sample": limits.min_sample,
        },
    }
