"""The pages a mailed link opens to do one thing: `/u/{token}` (one-click unsubscribe, and
resubscribe from the page it answers), `/confirm/{token}` (double opt-in) and
`/rejoin/{token}` (a closed account opened again)."""

from __future__ import annotations

import functools
from typing import Any

from flask import Response, current_app, request, url_for

from mailprefs import clock
from mailprefs.delivery.message import TEST_COPY_ID
from mailprefs.domain import confirmations, consent, links, reactivation, suppression
from mailprefs.domain.addresses import mask
from mailprefs.domain.models import SubscriberStatus, TopicState
from mailprefs.domain.tokens import TokenExpired
from mailprefs.extensions import db_session, get_db
from mailprefs.web.prefs.common import (
    ACTOR,
    MACHINE_HEADERS,
    RESEND_INTERVAL,
    LinkOfTestCopy,
    NothingAsked,
    bp,
    checked,
    evidence,
    find_subscriber,
    load_token,
    marketing_topic,
    opt_in_by_link,
    page,
    preferences_url,
    problem,
    require_button,
)

# --- /u/{token}: one-click unsubscribe ---------------------------------------------------


@bp.get("/u/<token>")
def unsubscribe_page(token: str):
    """What the button will do. HEAD is answered from here too; neither changes anything."""
    payload = load_token("unsubscribe", token)
    with get_db().session(read_only=True) as session:
        subscriber = find_subscriber(session, payload["s"])
        topic = marketing_topic(session, payload["t"])
        state = consent.state_of(session, subscriber, topic)
        return page(
            "prefs/unsubscribe.html",
            topic=topic,
            address=mask(subscriber.email),
            already=state == TopicState.OPTED_OUT,
            closed=subscriber.status != SubscriberStatus.ACTIVE,
            preferences_url=preferences_url(payload["s"], payload.get("c")),
        )


@bp.post("/u/<token>")
def unsubscribe_post(token: str):
    """RFC 8058 one-click (or the page's button): opt out of the mail's topic; 200."""
    payload = load_token("unsubscribe", token)
    # Mail clients send exactly this body (RFC 8058); anything else is parsed as a form.
    if (
        request.get_data(cache=True) == b"List-Unsubscribe=One-Click"
        or request.form.get("List-Unsubscribe") == "One-Click"
    ):
        source = "one_click"
    elif request.form.get("unsubscribe") == "yes":
        source = "unsubscribe_page"
    else:
        raise NothingAsked(
            "This request did not ask to unsubscribe. Open the link from the email and "
            "press the button."
        )
    if payload["s"] == TEST_COPY_ID:
        raise LinkOfTestCopy("this link comes from a test copy")
    proof = evidence(source, payload)
    # A bare connection, not the ORM session: this is the one path mail clients call in
    # bulk, and the write lock is held for as short a time as possible.
    db = get_db()
    with db.write_turn(), db.engine.begin() as connection:
        done = links.opt_out(connection, payload["s"], payload["t"], proof)
    if source == "one_click":
        config = current_app.config
        response = Response(
            _one_click_answer(
                done.topic_name,
                done.changed,
                config["MAILPREFS_ORG_NAME"],
                config["MAILPREFS_POSTAL_ADDRESS"],
                config["MAILPREFS_PRIVACY_POLICY_URL"],
            ),
            headers=MACHINE_HEADERS,
            mimetype="text/html",
        )
        response.machine_answer = True
        return response
    return page(
        "prefs/unsubscribed.html",
        topic_name=done.topic_name,
        address=mask(done.email),
        changed=done.changed,
        preferences_url=preferences_url(payload["s"], payload.get("c")),
        resubscribe_url=url_for("prefs.resubscribe", token=token),
    )


@functools.lru_cache(maxsize=256)
def _one_click_answer(
    topic_name: str, changed: bool, org_name: str, postal_address: str, privacy_url: str
) -> str:
    """The short page a mail client's POST gets: the same few bodies over and over, so
    rendered once each (without the context processors: no login lookup)."""
    return current_app.jinja_env.get_template("prefs/one_click.html").render(
        topic_name=topic_name,
        changed=changed,
        org_name=org_name,
        postal_address=postal_address,
        privacy_url=privacy_url,
    )


# --- /u/{token}/resubscribe: the button on the unsubscribed page -------------------------


@bp.post("/u/<token>/resubscribe")
def resubscribe(token: str):
    """Opt in again to the topic the unsubscribe link was for (a change of mind, or a
    slip). The link was mailed to the address, which is the proof a confirmation mail
    would ask for, so a double opt-in topic is confirmed at once (as on the preference
    page). A closed account, a suppressed address (bounce, complaint) or a retired topic is
    not resubscribed: the page says why and what to do instead."""
    payload = load_token("unsubscribe", token)
    require_button(
        "resubscribe", "This request did not ask to subscribe again. Use the button on the page."
    )
    if payload["s"] == TEST_COPY_ID:
        raise LinkOfTestCopy("this link comes from a test copy")
    with get_db().transaction() as session:
        subscriber = find_subscriber(session, payload["s"], for_update=True)
        topic = marketing_topic(session, payload["t"], active_only=True)
        prefs = preferences_url(payload["s"], payload.get("c"))
        if subscriber.status != SubscriberStatus.ACTIVE:
            return problem(
                409,
                "Your account is closed",
                "We send no email to this address. To receive it again, register again.",
                preferences_url=prefs,
            )
        if suppression.active(session, subscriber.email_hash) is not None:
            return problem(
                409,
                "We cannot subscribe this address again from here",
                "Mail to this address bounced or was reported, so we stopped all of it. "
                "Write to us and we will look into it.",
            )
        state = consent.state_of(session, subscriber, topic)
        changed = state != TopicState.OPTED_IN
        if changed:
            opt_in_by_link(session, subscriber, topic, state, payload, source="unsubscribe_page")
        return page(
            "prefs/resubscribed.html",
            topic_name=topic.name,
            address=mask(subscriber.email),
            changed=changed,
            preferences_url=prefs,
        )


# --- /confirm/{token}: double opt-in -----------------------------------------------------


@bp.get("/confirm/<token>")
def confirm_page(token: str):
    try:
        payload = load_token("confirm", token)
    except TokenExpired as exc:
        return _expired_confirmation(token, checked("confirm", exc.payload))
    with get_db().session(read_only=True) as session:
        subscriber = find_subscriber(session, payload["s"])
        topic = marketing_topic(session, payload["t"], active_only=True)
        return page(
            "prefs/confirm.html",
            topic=topic,
            address=mask(subscriber.email),
            state=consent.state_of(session, subscriber, topic).value,
            closed=subscriber.status != SubscriberStatus.ACTIVE,
            preferences_url=preferences_url(payload["s"]),
        )


@bp.post("/confirm/<token>")
def confirm_post(token: str):
    try:
        payload = load_token("confirm", token)
    except TokenExpired as exc:
        payload = checked("confirm", exc.payload)
        if request.form.get("resend") == "yes":
            return _resend(payload)
        return _expired_confirmation(token, payload)
    session = db_session()
    subscriber = find_subscriber(session, payload["s"], for_update=True)
    topic = marketing_topic(session, payload["t"], active_only=True)
    context = dict(
        topic=topic,
        address=mask(subscriber.email),
        preferences_url=preferences_url(payload["s"]),
    )
    if subscriber.status != SubscriberStatus.ACTIVE:
        return page("prefs/confirm.html", 409, state="closed", closed=True, **context)
    state = consent.state_of(session, subscriber, topic)
    if state == TopicState.OPTED_IN:
        return page("prefs/confirmed.html", changed=False, **context)
    if state != TopicState.PENDING:
        # Unsubscribed (or never asked) since the mail was sent: nothing to confirm.
        return page("prefs/confirm.html", 409, state=state.value, closed=False, **context)
    consent.confirm(session, subscriber, topic, evidence("confirmation", payload))
    session.commit()
    return page("prefs/confirmed.html", changed=True, **context)


def _expired_confirmation(token: str, payload: dict[str, Any]):
    """An expired link: offer a new one, if the subscription still waits for it."""
    with get_db().session(read_only=True) as session:
        subscriber = find_subscriber(session, payload["s"])
        topic = marketing_topic(session, payload["t"], active_only=True)
        state = consent.state_of(session, subscriber, topic)
        return page(
            "prefs/confirm_expired.html",
            400,
            topic=topic,
            address=mask(subscriber.email),
            can_resend=state == TopicState.PENDING and subscriber.status == SubscriberStatus.ACTIVE,
            state=state.value,
            hours=current_app.config["MAILPREFS_CONFIRM_MAX_AGE_HOURS"],
            token=token,
        )


def _resend(payload: dict[str, Any]):
    session = db_session()
    subscriber = find_subscriber(session, payload["s"], for_update=True)
    topic = marketing_topic(session, payload["t"], active_only=True)
    state = consent.state_of(session, subscriber, topic)
    context = dict(
        topic=topic,
        address=mask(subscriber.email),
        hours=current_app.config["MAILPREFS_CONFIRM_MAX_AGE_HOURS"],
    )
    if state != TopicState.PENDING or subscriber.status != SubscriberStatus.ACTIVE:
        return page("prefs/resent.html", 409, sent=False, waiting=False, **context)
    if confirmations.requested_since(session, subscriber, topic, clock.now() - RESEND_INTERVAL):
        return page("prefs/resent.html", sent=False, waiting=True, **context)
    confirmations.request(session, subscriber, topic, ACTOR)
    session.commit()
    return page("prefs/resent.html", sent=True, waiting=False, **context)


# --- /rejoin/{token}: back into a closed account -----------------------------------------
# The link comes in the one mail a closed account may be sent (domain/reactivation.py).
# GET shows what the button will do and changes nothing; the POST reopens the account and
# records the consents with the page's evidence.


@bp.get("/rejoin/<token>")
def rejoin_page(token: str):
    payload = load_token("reactivate", token)
    with get_db().session(read_only=True) as session:
        subscriber = find_subscriber(session, payload["s"])
        return page(
            "prefs/rejoin.html",
            topics=reactivation.topics_named(session, payload["t"]),
            address=mask(subscriber.email),
            closed=subscriber.status == SubscriberStatus.DEACTIVATED,
            preferences_url=preferences_url(payload["s"]),
        )


@bp.post("/rejoin/<token>")
def rejoin_post(token: str):
    payload = load_token("reactivate", token)
    require_button(
        "rejoin",
        "This request did not ask to join again. Open the link from the email and press the "
        "button.",
    )
    session = db_session()
    subscriber = find_subscriber(session, payload["s"], for_update=True)
    topics = reactivation.topics_named(session, payload["t"])
    context = dict(
        topics=topics,
        address=mask(subscriber.email),
        preferences_url=preferences_url(payload["s"]),
    )
    if subscriber.status != SubscriberStatus.DEACTIVATED:
        # Already open again (the button pressed twice): a stale link changes nothing.
        return page("prefs/rejoined.html", changed=False, **context)
    reactivation.reopen(
        session,
        subscriber,
        topics,
        evidence("confirmation", payload),
        hash_key=current_app.config["MAILPREFS_HASH_KEY"],
    )
    session.commit()
    return page("prefs/rejoined.html", changed=True, **context)
