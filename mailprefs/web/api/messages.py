"""Administrative messages from the organisation's own apps, through the same gate."""

from __future__ import annotations

from flask import current_app

from mailprefs.domain import messages, subscribers
from mailprefs.domain.topics import get_topic
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.idempotency import HEADER, once
from mailprefs.web.api.schemas import MessageIn, MessageOut

routes = api.group("messages", roles=("ops", "transactional"))


@routes.post(
    "/messages",
    body=MessageIn,
    responses={202: MessageOut},
    errors=(404, 409),
    headers=[HEADER],
    links={"GetMessage": "get_messages_public_id"},
)
def send_message(call: Call):
    """Send one administrative message to one subscriber

    `to` is a subscriber's public id or address. The gate decides now and again at
    sending; a blocked message answers 202 with status `blocked` and the reason
    (`unknown_recipient` for an address nobody registered). Sent ahead of marketing.
    Honours `Idempotency-Key`.
    """
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


@routes.get("/messages/<public_id>", responses={200: MessageOut})
def get_message(call: Call, public_id: str):
    """Where a single message is"""
    _campaign, delivery = messages.get(call.session, public_id)
    return 200, MessageOut(id=public_id, status=delivery.status.value, reason=delivery.reason)
