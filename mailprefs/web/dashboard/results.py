"""Results: what a campaign achieved (delivered, blocked by reason, bounces, complaints
and unsubscribes attributed to it, day by day), and the service's overview (people by
state over time, opt-outs, bounce and complaint rates per stream, the queue now).

Reads only, grouped in SQL (a day per row, a state per row), so a campaign of a million
costs a few grouped queries. Attribution: a bounce through its delivery row, a complaint
through its campaign, an unsubscribe through the campaign its link carried (the consent
event's context)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import render_template
from sqlalchemy import and_, func, literal_column, select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import campaigns
from mailprefs.domain.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    SubscriberStatus,
    Topic,
)
from mailprefs.domain.outbox_models import (
    BounceEvent,
    Campaign,
    Complaint,
    Delivery,
    DeliveryStatus,
)
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp

DAYS = 30
ACCOUNT_ACTIONS = (ConsentAction.DEACTIVATE, ConsentAction.REACTIVATE, ConsentAction.ERASE)


def _day(session: Session, column: Any) -> Any:
    """A timestamp's UTC date as 'YYYY-MM-DD', in SQL, on either database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(
            func.timezone(literal_column("'UTC'"), column), literal_column("'YYYY-MM-DD'")
        )
    return func.strftime(literal_column("'%Y-%m-%d'"), column)


def _per_day(session: Session, column: Any, *where: Any) -> dict[str, int]:
    day = _day(session, column).label("day")
    return {d: n for d, n in session.execute(select(day, func.count()).where(*where).group_by(day))}


def _rate(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def campaign_results(session: Session, campaign: Campaign) -> dict[str, Any]:
    stats = campaigns.stats(session, campaign)
    in_campaign = Delivery.campaign_id == campaign.id
    bounces = dict(
        session.execute(
            select(BounceEvent.kind, func.count())
            .join(Delivery, Delivery.id == BounceEvent.delivery_id)
            .where(in_campaign)
            .group_by(BounceEvent.kind)
        ).all()
    )
    unsubscribed = and_(
        ConsentEvent.action == ConsentAction.OPT_OUT,
        ConsentEvent.context["campaign"].as_string() == campaign.public_id,
    )
    complained = Complaint.campaign_id == campaign.id
    totals = {
        "sent": stats["sent"],
        "hard_bounces": int(bounces.get("hard", 0)),
        "soft_bounces": int(bounces.get("soft", 0)),
        "complaints": session.scalar(select(func.count(Complaint.id)).where(complained)) or 0,
        "unsubscribes": session.scalar(select(func.count(ConsentEvent.id)).where(unsubscribed))
        or 0,
    }
    series = {
        "sent": _per_day(session, Delivery.sent_at, in_campaign, Delivery.sent_at.is_not(None)),
        "bounces": _per_day(
            session,
            BounceEvent.occurred_at,
            BounceEvent.delivery_id.in_(select(Delivery.id).where(in_campaign)),
        ),
        "complaints": _per_day(session, Complaint.created_at, complained),
        "unsubscribes": _per_day(session, ConsentEvent.occurred_at, unsubscribed),
    }
    days = sorted(set().union(*series.values()))
    return {
        **totals,
        "bounces": totals["hard_bounces"] + totals["soft_bounces"],
        "blocked": stats["blocked"],
        "failed": stats["failed"],
        "rates": {
            "bounces": _rate(totals["hard_bounces"] + totals["soft_bounces"], stats["sent"]),
            "complaints": _rate(totals["complaints"], stats["sent"]),
            "unsubscribes": _rate(totals["unsubscribes"], stats["sent"]),
        },
        "days": [
            {"day": d, **{name: counts.get(d, 0) for name, counts in series.items()}} for d in days
        ],
    }


def _window(now: datetime) -> tuple[datetime, list[str]]:
    start = (now - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(DAYS)]


def people_by_state(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Registered people by state at the end of each of the last DAYS days, from the
    registrations and the ledger's account events (deactivate, reactivate, erase)."""
    start, days = _window(now)
    points = []
    for i, day in enumerate(days):
        end = min(start + timedelta(days=i + 1), now)
        registered = (
            session.scalar(select(func.count(Subscriber.id)).where(Subscriber.created_at < end))
            or 0
        )
        latest = (
            select(func.max(ConsentEvent.id).label("id"))
            .where(
                ConsentEvent.topic_id.is_(None),
                ConsentEvent.action.in_(ACCOUNT_ACTIONS),
                ConsentEvent.occurred_at < end,
            )
            .group_by(ConsentEvent.subscriber_id)
            .subquery()
        )
        states = dict(
            session.execute(
                select(ConsentEvent.action, func.count())
                .join(latest, latest.c.id == ConsentEvent.id)
                .group_by(ConsentEvent.action)
            ).all()
        )
        deactivated = int(states.get(ConsentAction.DEACTIVATE, 0))
        erased = int(states.get(ConsentAction.ERASE, 0))
        points.append(
            {
                "day": day,
                "active": max(registered - deactivated - erased, 0),
                "deactivated": deactivated,
                "erased": erased,
            }
        )
    return points


def _per_stream(
    session: Session, counted: Any, *where: Any, via_delivery: Any = None
) -> dict[str, int]:
    """How many rows of `counted` (rows with a `campaign_id`, or reached through their
    delivery with the `via_delivery` join condition) match `where`, per stream (their
    campaign's topic kind)."""
    kind = Topic.kind.label("kind")
    query = select(kind, func.count()).select_from(counted)
    if via_delivery is not None:
        query = query.join(Delivery, via_delivery)
        counted = Delivery
    query = (
        query.join(Campaign, Campaign.id == counted.campaign_id)
        .join(Topic, Topic.id == Campaign.topic_id)
        .where(*where)
        .group_by(kind)
    )
    return dict(session.execute(query).all())


def overview(session: Session) -> dict[str, Any]:
    now = clock.now()
    start, days = _window(now)
    since = Delivery.sent_at >= start
    sent = _per_stream(session, Delivery, Delivery.status == DeliveryStatus.SENT, since)
    bounced = _per_stream(
        session,
        BounceEvent,
        BounceEvent.occurred_at >= start,
        via_delivery=Delivery.id == BounceEvent.delivery_id,
    )
    complained = _per_stream(session, Complaint, Complaint.created_at >= start)
    streams = []
    for stream in ("marketing", "administrative"):
        n = int(sent.get(stream, 0))
        b, c = int(bounced.get(stream, 0)), int(complained.get(stream, 0))
        streams.append(
            {
                "stream": stream,
                "sent": n,
                "bounces": b,
                "complaints": c,
                "bounce_rate": _rate(b, n),
                "complaint_rate": _rate(c, n),
            }
        )
    opt_outs = _per_day(
        session,
        ConsentEvent.occurred_at,
        ConsentEvent.action == ConsentAction.OPT_OUT,
        ConsentEvent.occurred_at >= start,
    )
    queued = Delivery.status == DeliveryStatus.QUEUED
    due = session.scalar(
        select(func.count(Delivery.id)).where(
            queued, (Delivery.next_attempt_at.is_(None)) | (Delivery.next_attempt_at <= now)
        )
    )
    waiting = session.scalar(select(func.count(Delivery.id)).where(queued)) or 0
    by_state = dict(
        session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
    )
    return {
        "since": start,
        "now": {s.value: int(by_state.get(s, 0)) for s in SubscriberStatus},
        "people": people_by_state(session, now),
        "opt_outs": [{"day": d, "n": opt_outs.get(d, 0)} for d in days],
        "opt_outs_total": sum(opt_outs.values()),
        "streams": streams,
        "queue": {"queued": waiting, "due": due or 0, "later": waiting - (due or 0)},
    }


def bars(points: list[dict[str, Any]], keys: list[str], width: int = 600, height: int = 140):
    """Stacked bars in SVG units (the page draws them; no script needed)."""
    top = max((sum(p[k] for k in keys) for p in points), default=0) or 1
    plot = height - 18
    slot = width / max(len(points), 1)
    out = []
    for i, p in enumerate(points):
        y = plot
        for k in keys:
            h = round(plot * p[k] / top, 2)
            y = round(y - h, 2)
            out.append(
                {
                    "x": round(i * slot + slot * 0.1, 2),
                    "y": y,
                    "w": round(slot * 0.8, 2),
                    "h": h,
                    "key": k,
                    "label": f"{p['day']}: {p[k]} {k}",
                }
            )
    return {
        "width": width,
        "height": height,
        "plot": plot,
        "top": top,
        "bars": out,
        "first": points[0]["day"] if points else "",
        "last": points[-1]["day"] if points else "",
    }


# --- the page -------------------------------------------------------------------------


@bp.get("/overview", endpoint="overview")
def overview_page():
    data = overview(db_session())
    return render_template(
        "dashboard/overview.html",
        o=data,
        people_chart=bars(data["people"], ["active", "deactivated", "erased"]),
        opt_out_chart=bars(data["opt_outs"], ["n"]),
    )
