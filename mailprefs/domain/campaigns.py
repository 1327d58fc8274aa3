"""Campaigns: creation, the status machine, audience counts and progress.

    draft -> scheduled -> sending -> sent
      \\          \\          \\-> paused -> sending
       \\-> cancelled <-------/ (from draft, scheduled, sending, paused)

Expansion into the outbox and sending live in `mailprefs.delivery`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit, client_time, gate
from mailprefs.domain.errors import Conflict, Forbidden, Invalid, NotFound
from mailprefs.domain.models import Subscriber, Topic, TopicKind
from mailprefs.domain.outbox_models import (
    PRIORITY,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
)
from mailprefs.domain.templating import TemplateInvalid, validate
from mailprefs.logs import event

S = CampaignStatus
log = logging.getLogger("mailprefs.campaigns")
MAX_AUDIENCE_ATTRIBUTES = 20


class Content(NamedTuple):
    """What a campaign says: its subject, text and html templates."""

    subject: str
    text: str
    html: str | None = None


# Who may act on a campaign (create, read, preview, test, schedule, pause, cancel...)
# depends on its topic's kind: administrative mail reaches every registered person and
# cannot be opted out of, so only staff keys may touch it (issue 13 finding 2).
MAY_ACT = {
    TopicKind.MARKETING: frozenset({"marketing", "ops", "admin"}),
    TopicKind.ADMINISTRATIVE: frozenset({"ops", "admin"}),
}


def authorize(role: str | None, topic: Topic) -> None:
    """Raise Forbidden unless `role` may act on campaigns of `topic`: the one check every
    campaign action goes through."""
    if role not in MAY_ACT[topic.kind]:
        raise Forbidden(f"a {role} key may not act on campaigns of {topic.kind} topics")


def check_send_at(send_at: datetime | None, now: datetime) -> datetime | None:
    """A send time in the future, or within the clients' clock skew of now (taken as now)."""
    if send_at is None:
        return None
    return client_time.upcoming(
        send_at, now, "send_at", "must not be in the past (omit it to send now)"
    )


def validate_content(subject: str, text: str, html: str | None) -> None:
    """Templates must compile in the sandbox and reach for nothing unsafe."""
    try:
        validate(subject, text, html)
    except TemplateInvalid as exc:
        raise Invalid.field(exc.field, exc.detail) from None


def validate_audience(audience: dict[str, Any] | None) -> dict[str, Any] | None:
    if not audience:
        return None
    attributes = audience.get("attributes") or {}
    if len(attributes) > MAX_AUDIENCE_ATTRIBUTES:
        raise Invalid.field("audience.attributes", "too many conditions")
    for name, value in attributes.items():
        if isinstance(value, dict | list):
            raise Invalid.field(f"audience.attributes.{name}", "must be a single value")
    return {"attributes": dict(attributes)}


def create(
    session: Session,
    *,
    topic: Topic,
    subject: str,
    text: str,
    html: str | None,
    send_at: datetime | None,
    audience: dict[str, Any] | None,
    created_by: str,
    kind: CampaignKind = CampaignKind.CAMPAIGN,
) -> Campaign:
    now = clock.now()
    send_at = check_send_at(send_at, now)
    validate_content(subject, text, html)
    campaign = Campaign(
        kind=kind,
        topic_id=topic.id,
        subject=subject,
        text_body=text,
        html_body=html,
        audience=validate_audience(audience),
        status=S.SCHEDULED if send_at else S.DRAFT,
        send_at=send_at,
        priority=PRIORITY[kind],
        created_at=now,
        created_by=created_by,
        expanded_through=0,
        expansion_done=False,
    )
    session.add(campaign)
    session.flush()
    return campaign


def content_of(campaign: Campaign) -> Content:
    return Content(campaign.subject, campaign.text_body, campaign.html_body)


def create_scheduled(
    session: Session,
    topic: Topic,
    content: Content,
    *,
    at: datetime,
    actor: str,
    kind: CampaignKind = CampaignKind.CAMPAIGN,
    meta: dict[str, Any] | None = None,
) -> Campaign:
    """A campaign to everyone on `topic`, scheduled (audited) to fire at `at`: the way
    the service itself starts a broadcast (policy notices; demo and bench data)."""
    campaign = create(
        session,
        topic=topic,
        **content._asdict(),
        send_at=None,
        audience=None,
        created_by=actor,
        kind=kind,
    )
    campaign.meta = meta
    schedule(session, campaign, at, actor)
    return campaign


def get(
    session: Session, public_id: str, *, kinds: tuple[CampaignKind, ...] = (CampaignKind.CAMPAIGN,)
) -> Campaign:
    campaign = session.scalar(
        select(Campaign).where(Campaign.public_id == public_id, Campaign.kind.in_(kinds))
    )
    if campaign is None:
        raise NotFound("no campaign with this id")
    return campaign


def _move(campaign: Campaign, allowed_from: set[CampaignStatus], to: CampaignStatus) -> None:
    if campaign.status not in allowed_from:
        raise Conflict(f"a {campaign.status} campaign cannot become {to}")
    campaign.status = to


def schedule(session: Session, campaign: Campaign, send_at: datetime | None, actor: str) -> None:
    """Schedule (or reschedule) a draft or scheduled campaign; no time means now."""
    send_at = send_at or clock.now()
    _move(campaign, {S.DRAFT, S.SCHEDULED}, S.SCHEDULED)
    campaign.send_at = send_at
    _audit(session, actor, "campaign.schedule", campaign, {"send_at": send_at.isoformat()})


def pause(session: Session, campaign: Campaign, actor: str) -> None:
    _move(campaign, {S.SCHEDULED, S.SENDING}, S.PAUSED)
    campaign.pause_reason, campaign.pause_detail = "manual", None
    _audit(session, actor, "campaign.pause", campaign)
    event(log, "campaign.paused", campaign=campaign.public_id, actor=actor)


def resume(session: Session, campaign: Campaign, actor: str, note: str | None = None) -> None:
    """Resume a paused campaign. One the reputation guard paused needs a written note;
    the guard then judges only what comes after (see `reputation`)."""
    from mailprefs.domain import reputation

    overruled = reputation.resume_note(campaign, note) if campaign.status == S.PAUSED else None
    # A campaign paused before it started goes back to waiting for its time.
    _move(campaign, {S.PAUSED}, S.SENDING if campaign.started_at else S.SCHEDULED)
    if overruled is not None:
        campaign.rates_baseline = reputation.campaign_rates(session, campaign.id).counts()
    campaign.pause_reason = None
    _audit(session, actor, "campaign.resume", campaign, overruled)
    event(log, "campaign.resumed", campaign=campaign.public_id, actor=actor)


def cancel(session: Session, campaign: Campaign, actor: str) -> int:
    """Stop what has not been sent. Idempotent; a sent campaign cannot be cancelled."""
    if campaign.status == S.CANCELLED:
        return 0
    _move(campaign, {S.DRAFT, S.SCHEDULED, S.SENDING, S.PAUSED}, S.CANCELLED)
    campaign.finished_at = clock.now()
    result = session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign.id, Delivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.CANCELLED, lease_owner=None, lease_until=None)
    )
    _audit(session, actor, "campaign.cancel", campaign, {"unsent": result.rowcount})
    event(log, "campaign.cancelled", campaign=campaign.public_id, unsent=result.rowcount)
    return result.rowcount


def fire_due(session: Session, now: datetime) -> list[int]:
    """Move every scheduled campaign whose time has come to `sending`; returns their ids.

    The move is a conditional UPDATE, so of several processes firing at once exactly one
    fires each campaign.
    """
    due = session.scalars(
        select(Campaign.id).where(Campaign.status == S.SCHEDULED, Campaign.send_at <= now)
    ).all()
    fired = []
    for campaign_id in due:
        result = session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status == S.SCHEDULED)
            .values(status=S.SENDING, started_at=now)
        )
        if result.rowcount == 1:
            fired.append(campaign_id)
    return fired


def finish_sent(session: Session, now: datetime) -> int:
    """Mark `sent` every sending campaign that is fully expanded with nothing queued."""
    queued = (
        select(Delivery.id)
        .where(Delivery.campaign_id == Campaign.id, Delivery.status == DeliveryStatus.QUEUED)
        .exists()
    )
    result = session.execute(
        update(Campaign)
        .where(Campaign.status == S.SENDING, Campaign.expansion_done, ~queued)
        .values(status=S.SENT, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def stats(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Progress: planned, sent, blocked by reason, failed, pending (and cancelled)."""
    rows = session.execute(
        select(Delivery.status, Delivery.reason, func.count())
        .where(Delivery.campaign_id == campaign.id)
        .group_by(Delivery.status, Delivery.reason)
    ).all()
    result: dict[str, Any] = {
        "planned": 0,
        "sent": 0,
        "blocked": {},
        "failed": 0,
        "pending": 0,
        "cancelled": 0,
    }
    for status, reason, count in rows:
        result["planned"] += count
        if status == DeliveryStatus.BLOCKED:
            result["blocked"][reason] = result["blocked"].get(reason, 0) + count
        elif status == DeliveryStatus.QUEUED:
            result["pending"] += count
        else:
            result[status.value] += count
    return result


def audience_filter(audience: dict[str, Any] | None, subscribers: Any) -> list[Any]:
    """WHERE clauses for `audience.attributes` equality conditions."""
    clauses = []
    for name, value in ((audience or {}).get("attributes") or {}).items():
        column = subscribers.c.attributes[name]
        if isinstance(value, bool):
            clauses.append(column.as_boolean() == value)
        elif isinstance(value, int):
            clauses.append(column.as_integer() == value)
        elif isinstance(value, float):
            clauses.append(column.as_float() == value)
        elif value is None:
            clauses.append(column.as_string().is_(None))
        else:
            clauses.append(column.as_string() == str(value))
    return clauses


def audience_counts(
    session: Session, topic: Topic, audience: dict[str, Any] | None
) -> dict[str, Any]:
    """Who would be allowed and who blocked, by reason: the gate, set-based in SQL."""
    joined, columns = gate.audience_joins(topic.id)
    reason = gate.reason_sql(columns, topic).label("reason")
    subscribers = Subscriber.__table__
    query = (
        select(reason, func.count())
        .select_from(joined)
        .where(*audience_filter(audience, subscribers))
        .group_by(reason)
    )
    counts = {"total": 0, "allowed": 0, "blocked": {}}
    for why, count in session.execute(query).all():
        counts["total"] += count
        if why is None:
            counts["allowed"] += count
        else:
            counts["blocked"][why] = count
    return counts


def _audit(
    session: Session, actor: str, action: str, campaign: Campaign, detail: dict | None = None
) -> None:
    audit.record(
        session, actor, action, target_type="campaign", target_id=campaign.public_id, detail=detail
    )
