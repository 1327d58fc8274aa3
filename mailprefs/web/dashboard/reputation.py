"""The reputation guard on the dashboard: a banner on every page while a campaign stands
paused by it, and on a campaign's page its rates, its stream's, and a chart over time.

Reads only; the rules are `mailprefs.domain.reputation`'s. The chart's time axis is the
sends chart's (`metrics.sends_over_time`), extended to the last bounce or complaint, so
that reports arriving after the last message still show where they arrived.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailprefs.domain import reputation
from mailprefs.domain.outbox_models import (
    BounceEvent,
    BounceKind,
    Campaign,
    CampaignStatus,
    Complaint,
    Delivery,
    DeliveryStatus,
)
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.metrics import MAX_BUCKETS, sends_over_time

LABEL = "%Y-%m-%dT%H:%MZ"
MAX_BANNERS = 5


def limits() -> reputation.Limits:
    return reputation.Limits.from_config(current_app.config)


@bp.app_template_global()
def guard_banners() -> list[Campaign]:
    """Campaigns the guard paused and nobody has resumed yet (newest first)."""
    return list(
        db_session().scalars(
            select(Campaign)
            .where(
                Campaign.status == CampaignStatus.PAUSED,
                Campaign.pause_reason.in_(reputation.GUARD_REASONS),
            )
            .order_by(Campaign.id.desc())
            .limit(MAX_BANNERS)
        )
    )


def panel(session: Session, campaign: Campaign) -> dict[str, Any]:
    """What the campaign page shows of the guard."""
    current = limits()
    summary = reputation.summary(session, campaign, current)
    series = rates_over_time(session, campaign)
    return {
        "summary": summary,
        "guarded": campaign.status == CampaignStatus.PAUSED
        and campaign.pause_reason in reputation.GUARD_REASONS,
        "detail": campaign.pause_detail or {},
        "series": series,
        "chart": chart(series, current),
    }


def _events(session: Session, campaign: Campaign) -> list[tuple[datetime, str]]:
    """(when, what) of each hard bounce and complaint counted toward the campaign;
    what: "refused" (a relay refusal: delivered and bounced at once), "bounce" or
    "complaint"."""
    bounced = session.execute(
        select(BounceEvent.delivery_id, BounceEvent.occurred_at, Delivery.status)
        .join(Delivery, Delivery.id == BounceEvent.delivery_id)
        .where(Delivery.campaign_id == campaign.id, BounceEvent.kind == BounceKind.HARD)
        .order_by(BounceEvent.occurred_at)
    ).all()
    out, seen = [], set()
    for delivery_id, at, status in bounced:
        if delivery_id in seen:
            continue
        seen.add(delivery_id)
        out.append((_aware(at), "refused" if status == DeliveryStatus.FAILED else "bounce"))
    complained = session.execute(
        select(Complaint.email_hash, Complaint.created_at)
        .where(Complaint.campaign_id == campaign.id)
        .order_by(Complaint.created_at)
    ).all()
    hashes = set()
    for email_hash, at in complained:
        if email_hash not in hashes:
            hashes.add(email_hash)
            out.append((_aware(at), "complaint"))
    return out


def rates_over_time(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Cumulative bounce and complaint rates at the end of each bucket of the sends
    chart: points of [label, delivered so far, bounce rate, complaint rate]."""
    sends = sends_over_time(session, campaign)
    if not sends["points"]:
        return {"unit": sends["unit"], "points": []}
    step = timedelta(minutes=1) if sends["unit"] == "minute" else timedelta(hours=1)
    keys = [datetime.strptime(label, LABEL).replace(tzinfo=UTC) for label, _ in sends["points"]]
    sent = {k: n for k, (_, n) in zip(keys, sends["points"], strict=True)}
    events = _events(session, campaign)
    last = keys[-1]
    if events:
        last = max(last, _floor(max(at for at, _ in events), sends["unit"]))
    moment = keys[0]
    buckets = []
    while moment <= last and len(buckets) < 10_000:
        buckets.append(moment)
        moment += step
    buckets = buckets[-MAX_BUCKETS:]
    # Whatever came before the first bucket shown starts the running totals.
    sent_total = sum(n for _, n in sends["points"])
    stats_sent = session.scalar(
        select(func.count(Delivery.id)).where(
            Delivery.campaign_id == campaign.id, Delivery.status == DeliveryStatus.SENT
        )
    )
    delivered = (stats_sent or 0) - sent_total + sum(n for k, n in sent.items() if k < buckets[0])
    bounces = complaints = 0
    per = {b: [0, 0, 0] for b in buckets}  # refused, bounces, complaints
    for at, what in events:
        key = max(_floor(at, sends["unit"]), buckets[0])
        if key not in per:  # past the last bucket kept (a send of over 10,000 of them)
            key = buckets[-1]
        per[key][("refused", "bounce", "complaint").index(what)] += 1
    points = []
    for b in buckets:
        refused, bounced, complained = per[b]
        delivered += sent.get(b, 0) + refused
        bounces += refused + bounced
        complaints += complained
        points.append(
            [
                b.strftime(LABEL),
                delivered,
                bounces / delivered if delivered else 0.0,
                complaints / delivered if delivered else 0.0,
            ]
        )
    return {"unit": sends["unit"], "points": points}


def _floor(at: datetime, unit: str) -> datetime:
    at = at.replace(second=0, microsecond=0)
    return at.replace(minute=0) if unit == "hour" else at


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def chart(series: dict[str, Any], current: reputation.Limits, width: int = 600) -> dict:
    """Two lines (bounce and complaint rate) and their limits, in SVG user units."""
    height, plot = 180, 160
    points = series["points"]
    top = max(
        [current.complaint_rate * 1.5, current.bounce_rate * 1.5]
        + [p[2] for p in points]
        + [p[3] for p in points]
    )
    top = top or 0.01
    slot = width / max(len(points) - 1, 1)

    def y(rate: float) -> float:
        return round(plot - plot * min(rate, top) / top, 2)

    def line(index: int) -> str:
        coords = [f"{round(i * slot, 2)},{y(p[index])}" for i, p in enumerate(points)]
        if len(coords) == 1:  # one bucket: a level line across, not an invisible dot
            coords.append(f"{width},{y(points[0][index])}")
        return " ".join(coords)

    return {
        "width": width,
        "height": height,
        "plot": plot,
        "top": top,
        "bounce": line(2),
        "complaint": line(3),
        "bounce_limit": y(current.bounce_rate),
        "complaint_limit": y(current.complaint_rate),
        "first": points[0][0] if points else None,
        "last": points[-1][0] if points else None,
    }
