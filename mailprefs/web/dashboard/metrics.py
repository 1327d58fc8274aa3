"""Progress figures for the dashboard: campaign stats and sends over time.

Reads only; the counting rules are the domain's (`campaigns.stats`). The time series
groups `deliveries.sent_at` by minute (or by hour for long sends) in SQL, so a large
campaign costs one grouped query, not a row per message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from mailprefs.domain import campaigns
from mailprefs.domain.outbox_models import Campaign, CampaignStatus, Delivery

MAX_BUCKETS = 180
MAX_BAR = 30  # SVG units: a send of a few minutes shows bars, not a wall
FINAL = {CampaignStatus.SENT, CampaignStatus.CANCELLED}


def progress(session: Session, campaign: Campaign) -> dict[str, Any]:
    """What the progress bars show, as the JSON endpoint serves it."""
    stats = campaigns.stats(session, campaign)
    blocked = sum(stats["blocked"].values())
    planned = stats["planned"]
    done = stats["sent"] + blocked + stats["failed"] + stats["cancelled"]
    return {
        "id": campaign.public_id,
        "status": campaign.status.value,
        "final": campaign.status in FINAL,
        "send_at": campaign.send_at.isoformat() if campaign.send_at else None,
        "stats": stats,
        "blocked_total": blocked,
        "percent": {
            "sent": _pct(stats["sent"], planned),
            "blocked": _pct(blocked, planned),
            "failed": _pct(stats["failed"], planned),
            "cancelled": _pct(stats["cancelled"], planned),
            "pending": _pct(stats["pending"], planned),
            "done": _pct(done, planned),
        },
    }


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def _bucket(session: Session, unit: str):
    column = Delivery.sent_at
    if session.get_bind().dialect.name == "postgresql":
        # Constants as literals, not parameters: PostgreSQL must see the GROUP BY
        # expression as the very one selected. `unit` is one of two fixed words.
        truncated = func.date_trunc(
            literal_column(f"'{unit}'"), func.timezone(literal_column("'UTC'"), column)
        )
        return func.to_char(truncated, literal_column("'YYYY-MM-DD\"T\"HH24:MI'"))
    pattern = "'%Y-%m-%dT%H:%M'" if unit == "minute" else "'%Y-%m-%dT%H:00'"
    return func.strftime(literal_column(pattern), column)


def sends_over_time(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Sent messages per minute (per hour when the send spans more than MAX_BUCKETS
    minutes), gaps filled with zero, the last MAX_BUCKETS buckets at most."""
    first, last = session.execute(
        select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
            Delivery.campaign_id == campaign.id, Delivery.sent_at.is_not(None)
        )
    ).one()
    if first is None:
        return {"unit": "minute", "points": [], "max": 0}
    first, last = _aware(first), _aware(last)
    unit = "minute" if (last - first) <= timedelta(minutes=MAX_BUCKETS) else "hour"
    bucket = _bucket(session, unit).label("bucket")
    counts = dict(
        session.execute(
            select(bucket, func.count())
            .where(Delivery.campaign_id == campaign.id, Delivery.sent_at.is_not(None))
            .group_by(bucket)
        ).all()
    )
    step = timedelta(minutes=1) if unit == "minute" else timedelta(hours=1)
    start = first.replace(second=0, microsecond=0)
    if unit == "hour":
        start = start.replace(minute=0)
    end = last.replace(second=0, microsecond=0)
    points = []
    moment = start
    while moment <= end and len(points) < 10_000:
        key = moment.strftime("%Y-%m-%dT%H:%M")
        points.append([key + "Z", int(counts.get(key, 0))])
        moment += step
    points = points[-MAX_BUCKETS:]
    return {"unit": unit, "points": points, "max": max((n for _, n in points), default=0)}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def chart_geometry(series: dict[str, Any], width: int = 600, height: int = 160) -> dict:
    """Bars of the sends chart, in SVG user units (the JS draws the same on updates)."""
    points = series["points"]
    top = max(series["max"], 1)
    plot = height - 20
    slot = width / max(len(points), 1)
    bars = []
    for i, (label, n) in enumerate(points):
        h = round(plot * n / top, 2)
        w = min(max(slot * 0.8, 0.5), MAX_BAR)
        bars.append(
            {
                "x": round(i * slot + (slot - w) / 2, 2),
                "y": round(plot - h, 2),
                "w": round(w, 2),
                "h": h,
                "label": label,
                "n": n,
            }
        )
    return {"width": width, "height": height, "plot": plot, "bars": bars, "top": top}
