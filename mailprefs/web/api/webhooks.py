"""Outgoing webhooks: admins register, list and delete the endpoints events go to."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from flask import current_app
from pydantic import BaseModel, Field, RootModel, StringConstraints

from mailprefs.domain import webhooks
from mailprefs.domain.webhook_models import WebhookEndpoint
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.schemas import Strict

ADMIN = ("admin",)
EventName = Literal[
    "subscription.changed",
    "subscriber.erased",
    "delivery.bounced",
    "complaint.received",
    "campaign.paused",
]
Url = Annotated[str, StringConstraints(min_length=8, max_length=2000, pattern=r"^[^\s\x00]*$")]

DESCRIPTION = (
    'Each event is POSTed as JSON `{"id", "type", "created_at", "data"}` with the '
    "header `Mailprefs-Signature: t=UNIX,v1=HEX`, where HEX is HMAC-SHA256 keyed with the "
    'endpoint\'s secret over the bytes `t + "." + body`. Delivered at least once (deduplicate '
    "on `id`), in order per person, retried with backoff for 24 hours, then marked failed. "
    "`data` holds public ids; the address (`data.email`) only for endpoints registered "
    "with `include_email` (audited). The URL must be https (plain http only to a loopback "
    "address in development). See docs/reputation.md."
)


class WebhookIn(Strict):
    url: Url
    events: list[EventName] = Field(min_length=1, max_length=5)
    include_email: bool = False


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    include_email: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the signing secret; shown this once only")


class WebhookList(RootModel[list[WebhookOut]]):
    pass


def _out(row: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=row.public_id,
        url=row.url,
        events=row.events,
        include_email=row.include_email,
        created_at=row.created_at,
    )


@api.route(
    "/webhooks",
    "GET",
    summary="Registered webhook endpoints (secrets are never shown again)",
    roles=ADMIN,
    responses={200: WebhookList},
    tag="webhooks",
)
def list_webhooks(call: Call):
    return 200, WebhookList([_out(row) for row in webhooks.active(call.session)])


@api.route(
    "/webhooks",
    "POST",
    summary="Register an endpoint for outgoing events",
    description=DESCRIPTION,
    roles=ADMIN,
    body=WebhookIn,
    responses={201: WebhookCreated},
    tag="webhooks",
)
def create_webhook(call: Call):
    body: WebhookIn = call.body
    row, secret = webhooks.register(
        call.session,
        url=body.url,
        events=list(body.events),
        include_email=body.include_email,
        actor=call.actor,
        environment=current_app.config["MAILPREFS_ENV"],
    )
    call.session.commit()
    return 201, WebhookCreated(**_out(row).model_dump(), secret=secret)


@api.route(
    "/webhooks/<public_id>",
    "DELETE",
    summary="Stop sending to an endpoint (what it had pending is cancelled)",
    roles=ADMIN,
    responses={204: None},
    tag="webhooks",
)
def delete_webhook(call: Call, public_id: str):
    webhooks.delete(call.session, webhooks.get(call.session, public_id), call.actor)
    call.session.commit()
    return 204, None
