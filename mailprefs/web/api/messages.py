"""Administrative messages from the organisation's own apps, through the same gate."""

from __future__ import annotations

from flask import current_app

from mailprefs.domain import messages, subscribers
from mailprefs.domain.topics import get_topic
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.idempotency import HEADER, once
from mailprefs.web.api.schemas import MessageIn, MessageOut

ROLES = ("ops", "transactional")


@api.route(
    "/messages",
    "POST",
    summary="Send one administrative message to one subscriber",
    description="`to` is a subscriber's public id or address. The gate decides now and "
    "again at sending; a blocked message answers 202 with status `blocked` and the reason "
    "(`unknown_recipient` for an address nobody registered). Sent ahead of marketing. "
    "Honours `Idempotency-Key`.",
    roles=ROLES,
    body=MessageIn,
    responses={202: MessageOut},
    errors=(404, 409),
    tag="messages",
    headers=[HEADER],
    links={"GetMessage": "get_messages_public_id"},
)
def send_message(call: Call):
    body: MessageIn = call.body
    topic = get_topic(call.session, body.topic)

    def produce():
        subscriber = subscribers.resolve_recipient(
            call.session, body.to, current_app.config["MAILPREFS_HASH_KEY"]
        )
        campaign, delivery = messages.enqueue(
            call.session,
            topic=topic,
            subscriber=subscriber,
            subject=body.subject,
            text=body.text,
            html=body.html,
            created_by=call.actor,
        )
        return 202, MessageOut(
            id=campaign.public_id, status=delivery.status.value, reason=delivery.reason
        )

    return once(call, "messages.create", produce)


@api.route(
    "/messages/<public_id>",
    "GET",
    summary="Where a single message is",
    roles=ROLES,
    responses={200: MessageOut},
    tag="messages",
)
def get_message(call: Call, public_id: str):
    _campaign, delivery = messages.get(call.session, public_id)
    return 200, MessageOut(id=public_id, status=delivery.status.value, reason=delivery.reason)
