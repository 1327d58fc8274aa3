"""Outgoing webhooks: admins register, list and delete the endpoints events go to."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints

from mailprefs.domain import webhooks
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.schemas import Strict

EventName = Literal[
    "subscription.changed",
    "subscriber.erased",
    "delivery.bounced",
    "complaint.received",
    "campaign.paused",
]
routes = api.group("webhooks", roles=("admin",))
Url = Annotated[str, StringConstraints(min_length=8, max_length=2000, pattern=r"^[^\s\x00]*$")]


class WebhookIn(Strict):
    url: Url
    events: list[EventName] = Field(min_length=1, max_length=5)
    include_email: bool = False


class WebhookOut(BaseModel):
    # Read from the endpoint row itself, whose public id is the `id` shown.
    model_config = ConfigDict(from_attributes=True, validate_by_name=True)

    id: str = Field(validation_alias="public_id")
    url: str
    events: list[str]
    include_email: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the signing secret; shown this once only")


class WebhookList(RootModel[list[WebhookOut]]):
    pass


@routes.get("/webhooks", responses={200: WebhookList})
def list_webhooks(call: Call):
    """Registered webhook endpoints (secrets are never shown again)"""
    return 200, WebhookList(
        [WebhookOut.model_validate(row) for row in webhooks.active(call.session)]
    )


@routes.post("/webhooks", body=WebhookIn, responses={201: WebhookCreated})
def create_webhook(call: Call):
    """Register an endpoint for outgoing events

    Each event is POSTed as JSON `{"id", "type", "created_at", "data"}` with the header
    `Mailprefs-Signature: t=UNIX,v1=HEX`, where HEX is HMAC-SHA256 keyed with the
    endpoint's secret over the bytes `t + "." + body`. Delivered at least once
    (deduplicate on `id`), in order per person, retried with backoff for 24 hours, then
    marked failed. `data` holds public ids; the address (`data.email`) only for endpoints
    registered with `include_email` (audited). The URL must be https (plain http only to a
    loopback address in development). See docs/reputation.md.
    """
    body: WebhookIn = call.body
    row, secret = webhooks.register(
        call.session,
        url=body.url,
        events=list(body.events),
        include_email=body.include_email,
        actor=call.actor,
        environment=current_app.config["MAILPREFS_ENV"],
    )
    shown = WebhookOut.model_validate(row).model_dump()
    return call.commit(201, WebhookCreated(**shown, secret=secret))


@routes.delete("/webhooks/<public_id>", responses={204: None})
def delete_webhook(call: Call, public_id: str):
    """Stop sending to an endpoint (what it had pending is cancelled)"""
    webhooks.delete(call.session, webhooks.get(call.session, public_id), call.actor)
    return call.commit(204, None)
