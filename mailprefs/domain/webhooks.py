"""Outgoing webhooks: endpoints admins register, and events written in the transaction of
the change that causes them (an outbox of their own; `delivery.webhooks` sends them).

Events are written by `emit` on the very connection and transaction of their cause, so
a change that rolls back leaves no event and a committed one always has its event. Most
causes are ORM rows (a consent event, a bounce, a complaint, a campaign that became
paused): a session `after_flush` hook sees them and emits. The one-click opt-out writes
its consent event with Core on the DBAPI cursor; it calls `emit` itself.

Payloads carry public ids only. The address is never stored here: for an endpoint
registered with `include_email`, the sender reads it when it sends (and an erased person
has none left to read).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import event, insert, inspect, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit
from mailprefs.domain.errors import Invalid, found
from mailprefs.domain.models import ConsentAction, ConsentEvent, Subscriber, Topic
from mailprefs.domain.outbox_models import BounceEvent, Campaign, CampaignStatus, Complaint
from mailprefs.domain.webhook_models import (
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)

EVENT_TYPES = (
    "subscription.changed",
    "subscriber.erased",
    "delivery.bounced",
    "complaint.received",
    "campaign.paused",
)
RETRY_WINDOW = timedelta(hours=24)
LOOPBACK_ENVIRONMENTS = ("development", "testing")
MAX_URL = 2000

_endpoints = WebhookEndpoint.__table__
_events = WebhookEvent.__table__
_deliveries = WebhookDelivery.__table__


# --- endpoints (admin) ---------------------------------------------------------------


def check_url(url: str, environment: str) -> str:
    """https only; plain http only to a loopback address, and only in development."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL or not parts.hostname or parts.scheme not in ("https", "http"):
        raise Invalid.field("url", "an absolute https:// URL")
    if parts.username or parts.password:
        raise Invalid.field("url", "no credentials in the URL; verify our signature instead")
    loopback_allowed = environment in LOOPBACK_ENVIRONMENTS and _loopback(parts.hostname)
    if parts.scheme == "http" and not loopback_allowed:
        raise Invalid.field(
            "url", "must be https (plain http only to a loopback address in development)"
        )
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(
    session: Session,
    *,
    url: str,
    events: list[str],
    include_email: bool,
    actor: str,
    environment: str,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned once; audited, with whether it
    receives addresses)."""
    url = check_url(url, environment)
    unknown = [e for e in events if e not in EVENT_TYPES]
    if not events or unknown:
        raise Invalid.field("events", f"name one or more of {list(EVENT_TYPES)}")
    row = WebhookEndpoint(
        url=url,
        events=sorted(set(events)),
        include_email=include_email,
        secret="whsec_" + secrets.token_hex(32),
        created_at=clock.now(),
        created_by=actor,
    )
    session.add(row)
    session.flush()
    detail = {"url": url, "events": row.events, "include_email": include_email}
    _audit(session, actor, "webhook.create", row, detail)
    return row, row.secret


def _audit(
    session: Session, actor: str, action: str, endpoint: WebhookEndpoint, detail: dict[str, Any]
) -> None:
    audit.record(
        session, actor, action, target_type="webhook", target_id=endpoint.public_id, detail=detail
    )


def active(session: Session) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.deleted_at.is_(None))
            .order_by(WebhookEndpoint.id)
        )
    )


def get(session: Session, public_id: str) -> WebhookEndpoint:
    row = session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.public_id == public_id, WebhookEndpoint.deleted_at.is_(None)
        )
    )
    return found(row, "no webhook endpoint with this id")


def delete(session: Session, endpoint: WebhookEndpoint, actor: str) -> int:
    """Stop sending to an endpoint; what it had pending is cancelled. Audited."""
    endpoint.deleted_at = clock.now()
    cancelled = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
        )
        .values(status=WebhookDeliveryStatus.CANCELLED, lease_owner=None, lease_until=None)
    ).rowcount
    _audit(session, actor, "webhook.delete", endpoint, {"cancelled": cancelled})
    session.flush()
    return cancelled


def replay(session: Session, delivery: WebhookDelivery, actor: str) -> None:
    """Send one delivery again (failed or delivered), with a fresh retry window."""
    if delivery.endpoint.deleted_at is not None:
        raise Invalid("its endpoint was deleted")
    now = clock.now()
    delivery.status = WebhookDeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.retry_until = now + RETRY_WINDOW
    delivery.lease_owner = delivery.lease_until = None
    detail = {"delivery": delivery.id, "event": delivery.event.public_id}
    _audit(session, actor, "webhook.replay", delivery.endpoint, detail)
    session.flush()


# --- events --------------------------------------------------------------------------


def subscriptions(connection: Connection) -> list[tuple[int, list[str]]]:
    """(endpoint id, event types) of every active endpoint."""
    return [
        (endpoint_id, list(events or []))
        for endpoint_id, events in connection.execute(
            select(_endpoints.c.id, _endpoints.c.events).where(_endpoints.c.deleted_at.is_(None))
        )
    ]


_LISTENED_SQL = "SELECT events FROM webhook_endpoints WHERE deleted_at IS NULL"


def listened(connection: Connection, type_: str) -> bool:
    """Whether any active endpoint wants `type_`: one plain statement on the DBAPI cursor,
    for the one-click path, where SQLAlchemy's per-execution work would be a noticeable
    share of the request (README, "Recipient pages")."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(_LISTENED_SQL)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    for (events,) in rows:
        if isinstance(events, str | bytes):  # SQLite hands JSON back as text
            events = json.loads(events)
        if type_ in (events or []):
            return True
    return False


def emit(
    connection: Connection,
    type_: str,
    data: dict[str, Any],
    *,
    ordering_key: str | None,
    now: datetime | None = None,
    endpoints: list[tuple[int, list[str]]] | None = None,
) -> int:
    """Write one event and a delivery for each endpoint that wants it, on `connection`
    (the cause's transaction). Returns how many deliveries; nothing is written when no
    endpoint wants this type. `endpoints`: `subscriptions()`, when already read."""
    if endpoints is None:
        endpoints = subscriptions(connection)
    wanted = [endpoint_id for endpoint_id, events in endpoints if type_ in events]
    if not wanted:
        return 0
    now = now or clock.now()
    key = ordering_key[:48] if ordering_key else None
    (event_id,) = connection.execute(
        insert(_events)
        .values(
            public_id="evt_" + secrets.token_urlsafe(12),
            type=type_,
            ordering_key=key,
            data={**data, "at": data.get("at") or now.isoformat()},
            created_at=now,
        )
        .returning(_events.c.id)
    ).one()
    connection.execute(
        insert(_deliveries),
        [
            {
                "event_id": event_id,
                "endpoint_id": endpoint_id,
                "ordering_key": key,
                "status": WebhookDeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "retry_until": now + RETRY_WINDOW,
                "created_at": now,
            }
            for endpoint_id in wanted
        ],
    )
    return len(wanted)


def _public_id(session: Session, subscriber_id: int | None) -> str | None:
    if subscriber_id is None:
        return None
    subscriber = session.get(Subscriber, subscriber_id)
    return subscriber.public_id if subscriber is not None else None


def _campaign_id(session: Session, campaign_id: int | None) -> str | None:
    campaign = session.get(Campaign, campaign_id) if campaign_id is not None else None
    return campaign.public_id if campaign is not None else None


def topic_state(action: str, double_opt_in: bool) -> str:
    """The state a topic's consent event leaves, as `subscription.changed` names it."""
    state = {"opt_out": "opted_out", "confirm": "opted_in"}.get(action)
    return state or ("pending" if double_opt_in else "opted_in")


def change_data(
    person: str | None, action: str, source: str, at: datetime, topic: str | None, state: str
) -> dict[str, Any]:
    """The data of a `subscription.changed` event (`topic` None: the whole account)."""
    return {
        "subscriber": person,
        "action": action,
        "source": source,
        "at": at.isoformat(),
        "topic": topic,
        "state": state,
    }


def _consent(session: Session, row: ConsentEvent) -> tuple[str, dict[str, Any], str | None]:
    person = _public_id(session, row.subscriber_id)
    if row.action == ConsentAction.ERASE:
        return "subscriber.erased", {"subscriber": person}, person
    action = row.action.value
    if row.topic_id is None:  # account-level: deactivate, reactivate
        topic, state = None, "deactivated" if action == "deactivate" else "active"
    else:
        found = session.get(Topic, row.topic_id)
        topic, state = found.slug, topic_state(action, found.double_opt_in)
    data = change_data(person, action, row.source, row.occurred_at, topic, state)
    return "subscription.changed", data, person


def _bounce(session: Session, row: BounceEvent) -> tuple[str, dict[str, Any], str | None]:
    from mailprefs.domain.outbox_models import Delivery

    delivery = session.get(Delivery, row.delivery_id) if row.delivery_id else None
    person = _public_id(session, row.subscriber_id)
    data = {
        "subscriber": person,
        "bounce": row.kind.value,
        "campaign": _campaign_id(session, delivery.campaign_id) if delivery else None,
        "source": row.source,
        "at": row.occurred_at.isoformat(),
    }
    return "delivery.bounced", data, person


def _complaint(session: Session, row: Complaint) -> tuple[str, dict[str, Any], str | None]:
    person = _public_id(session, row.subscriber_id)
    data = {
        "complaint": row.public_id,
        "subscriber": person,
        "campaign": _campaign_id(session, row.campaign_id),
        "source": row.source,
        "at": row.created_at.isoformat(),
    }
    return "complaint.received", data, person


def _paused(campaign: Campaign) -> tuple[str, dict[str, Any], str | None] | None:
    history = inspect(campaign).attrs.status.history
    if not history.added or history.added[0] != CampaignStatus.PAUSED:
        return None
    if history.deleted and history.deleted[0] == CampaignStatus.PAUSED:
        return None
    data = {
        "campaign": campaign.public_id,
        "reason": campaign.pause_reason or "manual",
        "figures": campaign.pause_detail,
    }
    return "campaign.paused", data, f"campaign:{campaign.public_id}"


@event.listens_for(Session, "after_flush")
def _emit_for_flushed_rows(session: Session, _context: Any) -> None:
    """Events for the rows this flush wrote, on the flush's own connection."""
    found = []
    for row in session.new:
        if isinstance(row, ConsentEvent):
            found.append((row.id, _consent, row))
        elif isinstance(row, BounceEvent):
            found.append((row.id, _bounce, row))
        elif isinstance(row, Complaint):
            found.append((row.id, _complaint, row))
    paused = [_paused(row) for row in session.dirty if isinstance(row, Campaign)]
    if not found and not any(paused):
        return
    connection = session.connection()
    endpoints = subscriptions(connection)  # once per flush (an import flushes thousands)
    if not endpoints:
        return
    wanted = {t for _id, events in endpoints for t in events}
    # session.new is a set: write in the order the rows were written.
    for _id, build, row in sorted(found, key=lambda f: (f[1].__name__, f[0] or 0)):
        if _TYPE_OF[build] & wanted:
            type_, data, key = build(session, row)
            emit(connection, type_, data, ordering_key=key, endpoints=endpoints)
    for item in paused:
        if item is not None and item[0] in wanted:
            type_, data, key = item
            emit(connection, type_, data, ordering_key=key, endpoints=endpoints)


# Which event types each builder can produce (so rows nobody listens for cost nothing).
_TYPE_OF = {
    _consent: {"subscription.changed", "subscriber.erased"},
    _bounce: {"delivery.bounced"},
    _complaint: {"complaint.received"},
}
