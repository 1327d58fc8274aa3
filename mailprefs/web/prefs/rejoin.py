"""`/rejoin/{token}`: a person who closed their account confirms they want to join again.

The link comes in the one mail a closed account may be sent (domain/reactivation.py).
GET shows what the button will do and changes nothing; the POST reopens the account and
records the consents with the page's evidence.
"""

from __future__ import annotations

from flask import current_app, request

from mailprefs.domain import reactivation
from mailprefs.domain.addresses import mask
from mailprefs.domain.models import SubscriberStatus
from mailprefs.extensions import db_session, get_db
from mailprefs.web.prefs.common import (
    bp,
    evidence,
    find_subscriber,
    load_token,
    page,
    preferences_url,
    problem,
)


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
    if request.form.get("rejoin") != "yes":
        return problem(
            400,
            "Nothing was changed",
            "This request did not ask to join again. Open the link from the email and "
            "press the button.",
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
