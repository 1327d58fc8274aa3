"""The preference center, `/preferences/{token}`: choose topics, stop all marketing, close
the account (a second step confirms it), report an unsolicited email.

GET shows, POST changes and redirects back (303) with `?done=...`, so reloading or going
back never repeats a change. Every change is a consent event with source
`preference_page` (a report's opt-outs carry source `complaint`).
"""

from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs.domain import complaints, consent, subscribers, suppression
from mailprefs.domain.addresses import mask
from mailprefs.domain.models import Subscriber, SubscriberStatus, Topic, TopicKind, TopicState
from mailprefs.domain.outbox_models import Campaign
from mailprefs.domain.topics import list_topics
from mailprefs.extensions import db_session, get_db
from mailprefs.web.prefs.common import (
    NothingAsked,
    bp,
    evidence,
    find_subscriber,
    load_token,
    opt_in_by_link,
    page,
    problem,
)

DONE = {"saved", "unchanged", "all_off", "closed", "reported"}
MAX_DETAIL = 2000


@bp.get("/preferences/<token>")
def preferences(token: str):
    payload = load_token("preferences", token)
    done = request.args.get("done")
    with get_db().session(read_only=True) as session:
        subscriber = find_subscriber(session, payload["s"])
        view = _view(session, subscriber, payload)
        if request.args.get("step") == "close" and view["active"]:
            return page("prefs/close_account.html", **view, token=token)
        return page(
            "prefs/preferences.html", **view, token=token, done=done if done in DONE else None
        )


@bp.post("/preferences/<token>")
def preferences_post(token: str):
    payload = load_token("preferences", token)
    action = request.form.get("action")
    if action not in {"save", "all_off", "close", "report"}:
        raise NothingAsked("This request did not say what to change.")
    session = db_session()
    subscriber = find_subscriber(session, payload["s"], for_update=True)
    if action == "report":
        done = _report(session, subscriber, payload)
    elif subscriber.status != SubscriberStatus.ACTIVE:
        return problem(
            409,
            "Your account is closed",
            "We send you no email at all. To receive our email again, register again.",
        )
    elif action == "close" and request.form.get("confirm") != "yes":
        # The second step: nothing happens until the person confirms on this page.
        view = _view(session, subscriber, payload)
        return page("prefs/close_account.html", **view, token=token)
    elif action == "close":
        subscribers.deactivate(session, subscriber, evidence("preference_page", payload))
        done = "closed"
    elif _suppressed(session, subscriber) is not None:
        return problem(
            409,
            "Nothing was changed",
            "We send no marketing email to this address (see the preference page for why).",
        )
    elif action == "all_off":
        changed = consent.opt_out_of_all_marketing(
            session, subscriber, evidence("preference_page", payload)
        )
        done = "all_off" if changed else "unchanged"
    else:
        done = _save(session, subscriber, payload, set(request.form.getlist("topic")))
    session.commit()
    return redirect(url_for("prefs.preferences", token=token, done=done), code=303)


def _save(
    session: Session, subscriber: Subscriber, payload: dict[str, Any], wanted: set[str]
) -> str:
    """Apply the ticked boxes. Ticking a double opt-in topic here records a confirmed
    opt-in: the person reached this page through a link we mailed to the address, which
    is the proof a confirmation mail would ask for. An unticked topic that still waits
    for confirmation is left waiting (it receives nothing until confirmed)."""
    changed = False
    states = consent.states(session, subscriber)
    for topic in _marketing(session):
        state = states.get(topic.slug, TopicState.NONE)
        if topic.slug in wanted and state != TopicState.OPTED_IN:
            opt_in_by_link(session, subscriber, topic, state, payload, source="preference_page")
            changed = True
        elif topic.slug not in wanted and state == TopicState.OPTED_IN:
            consent.opt_out(session, subscriber, topic, evidence("preference_page", payload))
            changed = True
    return "saved" if changed else "unchanged"


def _report(session: Session, subscriber: Subscriber, payload: dict[str, Any]) -> str:
    """An unsolicited email: a complaint for ops to investigate, marketing suppressed and
    withdrawn. One open complaint per person is enough; a second report adds nothing."""
    if complaints.open_for(session, subscriber) is None:
        campaign = None
        if payload.get("c"):
            campaign = session.scalar(select(Campaign).where(Campaign.public_id == payload["c"]))
        detail = (request.form.get("detail") or "").strip()[:MAX_DETAIL]
        complaints.report(
            session,
            subscriber=subscriber,
            email_hash=None,
            source="preference_page",
            evidence=evidence("preference_page", payload),
            campaign=campaign,
            detail=detail or None,
        )
    return "reported"


def _marketing(session: Session) -> list[Topic]:
    return [t for t in list_topics(session) if t.kind == TopicKind.MARKETING]


def _suppressed(session: Session, subscriber: Subscriber) -> str | None:
    if not subscriber.email_hash:
        return None
    row = suppression.active(session, subscriber.email_hash)
    return row.reason.value if row is not None else None


def _view(session: Session, subscriber: Subscriber, payload: dict[str, Any]) -> dict[str, Any]:
    states = consent.states(session, subscriber)
    topics = list_topics(session)
    complaint = complaints.open_for(session, subscriber)
    return {
        "address": mask(subscriber.email),
        "active": subscriber.status == SubscriberStatus.ACTIVE,
        "marketing": [
            {"topic": t, "state": states.get(t.slug, TopicState.NONE).value}
            for t in topics
            if t.kind == TopicKind.MARKETING
        ],
        "administrative": [t for t in topics if t.kind == TopicKind.ADMINISTRATIVE],
        "suppressed": _suppressed(session, subscriber),
        "reported_at": complaint.created_at if complaint else None,
        "from_campaign": bool(payload.get("c")),
    }
