"""Resubscribe from the page that confirmed an unsubscribe (a change of mind, or a slip):
`POST /u/{token}/resubscribe` opts the person in again to the topic that link was for.

A GET never changes anything (link scanners); the POST needs the page's own button
field. The link was mailed to the address, which is the proof a confirmation mail would
ask for, so a double opt-in topic is confirmed at once (as on the preference page). A
closed account, a suppressed address (bounce, complaint) or a retired topic is not
resubscribed: the page says why and what to do instead."""

from __future__ import annotations

from flask import request

from mailprefs.delivery.message import TEST_COPY_ID
from mailprefs.domain import consent, suppression
from mailprefs.domain.addresses import mask
from mailprefs.domain.models import SubscriberStatus, TopicState
from mailprefs.extensions import get_db
from mailprefs.web.prefs.common import (
    LinkOfTestCopy,
    bp,
    find_subscriber,
    load_token,
    marketing_topic,
    opt_in_by_link,
    page,
    preferences_url,
    problem,
)


@bp.post("/u/<token>/resubscribe")
def resubscribe(token: str):
    payload = load_token("unsubscribe", token)
    if request.form.get("resubscribe") != "yes":
        return problem(
            400,
            "Nothing was changed",
            "This request did not ask to subscribe again. Use the button on the page.",
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
            opt_in_by_link(
                session,
                subscriber,
                topic,
                state,
                payload,
                source="unsubscribe_page",
                proof="unsubscribe link",
            )
        return page(
            "prefs/resubscribed.html",
            topic_name=topic.name,
            address=mask(subscriber.email),
            changed=changed,
            preferences_url=prefs,
        )
