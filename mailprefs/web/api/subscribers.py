"""Subscribers: register with consent, read (ops), consent changes, erase, export."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app

from mailprefs.delivery.transport import remove_captured_for
from mailprefs.domain import confirmations, consent, reactivation, subscribers
from mailprefs.domain.consent import Evidence
from mailprefs.domain.models import ConsentAction, Subscriber
from mailprefs.domain.subscribers import ConsentRequest
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import get_db
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.schemas import (
    ConsentChangeIn,
    ConsentChangeOut,
    ConsentIn,
    ReactivationPendingOut,
    SubscriberDetail,
    SubscriberExport,
    SubscriberIn,
    SubscriberOut,
)

MARKETING_OR_OPS = ("marketing", "ops")
OPS = ("ops",)
routes = api.group("subscribers", roles=OPS)


def _evidence(call: Call, consent_in: ConsentIn) -> Evidence:
    # The IP and user agent are the person's, as the client saw them, never the client's.
    return Evidence(
        source=consent_in.source,
        source_detail=consent_in.source_detail,
        ip=consent_in.ip,
        user_agent=consent_in.user_agent,
        actor=call.actor,
        occurred_at=consent_in.at,
    )


def summary(call: Call, subscriber: Subscriber) -> dict:
    return {
        "id": subscriber.public_id,
        "status": subscriber.status.value,
        "topics": {k: v.value for k, v in consent.states(call.session, subscriber).items()},
    }


def _hash_key() -> str:
    return current_app.config["MAILPREFS_HASH_KEY"]


@api.route(
    "/subscribers",
    "POST",
    summary="Register a subscriber with consent evidence",
    description="201 when created, 200 when the address was known. A person who closed "
    "their account (opted out entirely) is never reopened by a key: registered again with "
    "consents (they signed up again on your site), it answers 202 with status "
    "`pending_reactivation`, changes nothing, and mails the person a link to confirm "
    "(at most one per MAILPREFS_REACTIVATION_INTERVAL_HOURS; never to a suppressed "
    "address); only their confirmation reopens the account with those consents. "
    "Without consents it answers 409. An erased address answers 409 and stores "
    "nothing; an intake showing an age under 13 answers 422 and stores nothing.",
    roles=MARKETING_OR_OPS,
    body=SubscriberIn,
    responses={201: SubscriberOut, 200: SubscriberOut, 202: ReactivationPendingOut},
    errors=(409,),
    tag="subscribers",
    links={
        "GetSubscriber": "get_subscribers_public_id",
        "ChangeConsent": "post_subscribers_public_id_consents",
        "ExportSubscriber": "get_subscribers_public_id_export",
        "EraseSubscriber": "delete_subscribers_public_id",
    },
)
def create_subscriber(call: Call):
    body: SubscriberIn = call.body
    try:
        done = subscribers.register(
            call.session,
            email=body.email,
            attributes=body.attributes,
            consents=[ConsentRequest(c.topic, _evidence(call, c)) for c in body.consents],
            hash_key=_hash_key(),
            evidence=Evidence(source="api", actor=call.actor),
        )
    except subscribers.ClosedAccount as closed:
        if not closed.topics:
            raise
        # Only the person reopens it: ask them (invariant 5); the account is unchanged.
        hours = current_app.config["MAILPREFS_REACTIVATION_INTERVAL_HOURS"]
        reactivation.request(
            call.session,
            closed.subscriber,
            closed.topics,
            actor=call.actor,
            interval=timedelta(hours=hours),
        )
        pending = ReactivationPendingOut(
            id=closed.subscriber.public_id, status="pending_reactivation"
        )
        call.session.commit()
        return 202, pending
    # The states a new person's registration already knows: no statement to read them.
    states = done.states(call.session)
    reply = SubscriberOut(
        id=done.subscriber.public_id,
        status=done.subscriber.status.value,
        topics={slug: state.value for slug, state in states.items()},
    )
    call.session.commit()
    return (201 if done.created else 200), reply


@routes.get("/subscribers/<public_id>", responses={200: SubscriberDetail})
def get_subscriber(call: Call, public_id: str):
    """A subscriber's profile, topic states and consent history (audited)"""
    subscriber = subscribers.find_by_public_id(call.session, public_id)
    call.audit("subscriber.read", "subscriber", public_id)
    reply = SubscriberDetail(
        **summary(call, subscriber),
        email=subscriber.email,
        status_reason=subscriber.status_reason,
        attributes=subscriber.attributes,
        created_at=subscriber.created_at,
        updated_at=subscriber.updated_at,
        consent_history=[
            subscribers.event_json(e) for e in consent.history(call.session, subscriber)
        ],
    )
    return call.commit(200, reply)


@routes.post(
    "/subscribers/<public_id>/consents",
    roles=MARKETING_OR_OPS,
    body=ConsentChangeIn,
    responses={201: ConsentChangeOut},
    errors=(409,),
)
def change_consent(call: Call, public_id: str):
    """Record an opt-in or opt-out with its evidence

    Answers 201 with the new states; `changed` is false when the person already was in
    that state (nothing is recorded twice). Opting in to a deactivated account answers
    409: only registering again opts in again.
    """
    body: ConsentChangeIn = call.body
    subscriber = subscribers.find_by_public_id(call.session, public_id)
    topic = get_topic(call.session, body.topic)
    state, event = consent.change(
        call.session, subscriber, topic, ConsentAction(body.action), _evidence(call, body)
    )
    confirmations.after_change(call.session, subscriber, topic, state, event, call.actor)
    return call.commit(
        201, ConsentChangeOut(**summary(call, subscriber), changed=event is not None)
    )


@routes.delete("/subscribers/<public_id>", responses={204: None})
def erase_subscriber(call: Call, public_id: str):
    """Erase a subscriber's personal data

    Keeps only a one-way hash of the address on the suppression list. Idempotent.
    """
    return _erase(call, public_id, "by_request")


@routes.post("/subscribers/<public_id>/underage", responses={204: None})
def mark_underage(call: Call, public_id: str):
    """Mark a person as known to be under 13, which erases them"""
    return _erase(call, public_id, "underage")


def _erase(call: Call, public_id: str, reason: str) -> tuple[int, None]:
    """Erase (nothing to do for someone already erased); once that commits, old row
    versions out of the database files, and the captured copies of mail to the person
    (where mail is captured) deleted."""
    subscriber = subscribers.find_by_public_id(call.session, public_id, allow_erased=True)
    address = subscriber.email
    subscribers.erase(
        call.session, subscriber, hash_key=_hash_key(), actor=call.actor, reason=reason
    )
    call.session.commit()
    get_db().purge_erased()
    if address and current_app.config.get("MAILPREFS_CAPTURE_MAIL"):
        remove_captured_for(current_app.config["MAILPREFS_MAIL_CAPTURE_DIR"], address)
    return 204, None


@routes.get("/subscribers/<public_id>/export", responses={200: SubscriberExport})
def export_subscriber(call: Call, public_id: str):
    """Everything held about a person, consent events included (audited)"""
    subscriber = subscribers.find_by_public_id(call.session, public_id)
    call.audit("subscriber.export", "subscriber", public_id)
    return call.commit(200, SubscriberExport(**subscribers.export(call.session, subscriber)))
