"""A person who closed their account joins again only through themselves (invariant 5).

When the organisation's site registers a closed account again with consents (the person
signed up again there), nothing in the account changes: the person is mailed a request
to confirm, a confirmation mail of the administrative stream (queued and sent like the
double opt-in ones, domain/confirmations.py) and the one mail the gate lets through to a
closed account (`gate.REACTIVATION`). At most one per MAILPREFS_REACTIVATION_INTERVAL_HOURS,
so a site (or someone typing another's address into it) cannot flood a mailbox. Its link
(token purpose `reactivate`, expiring like confirmation links) names the person and the
topics; the person's POST on that page reopens the account with the page's evidence.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit, confirmations, consent, subscribers
from mailprefs.domain.campaigns import Content
from mailprefs.domain.consent import Evidence
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import (
    ConsentAction,
    Subscriber,
    SubscriberStatus,
    Topic,
    TopicKind,
    TopicState,
)
from mailprefs.domain.outbox_models import Campaign
from mailprefs.domain.tokens import TOPIC_LIST_MAX

SUBJECT = "You asked to join again \u2014 please confirm"
TEXT = (
    "Hello,\n\n"
    "you closed your account with {{ org_name }} some time ago, and someone, hopefully "
    "you, has just signed up again with this address. To join again, open this link and "
    "press the button:\n\n"
    "{{ confirm_url }}\n\n"
    "If you did not ask for this, ignore this message: your account stays closed and we "
    "will not write to you.\n"
)
HTML = (
    "<p>Hello,</p><p>you closed your account with {{ org_name }} some time ago, and "
    "someone, hopefully you, has just signed up again with this address. To join again, "
    "open this link and press the button:</p>"
    '<p><a href="{{ confirm_url }}">Confirm that I want to join again</a></p>'
    "<p>If you did not ask for this, ignore this message: your account stays closed and "
    "we will not write to you.</p>"
)


def request(
    session: Session,
    subscriber: Subscriber,
    topics: list[Topic],
    *,
    actor: str,
    interval: timedelta,
) -> Campaign | None:
    """Queue the request to confirm for a closed account asked to join `topics`.

    None when one was already queued within `interval`. The gate decides as for any
    message: an erased address, a child or a suppressed address is never sent it (the
    outbox row records why). Changes nothing in the account."""
    slugs = list(dict.fromkeys(topic.slug for topic in topics))
    if not slugs:
        raise Invalid.field("consents", "name at least one topic to join again")
    if len(",".join(slugs)) > TOPIC_LIST_MAX:
        raise Invalid.field("consents", "too many topics to join again at once")
    # One request at a time per person: two registrations at once queue one mail.
    session.execute(select(Subscriber.id).where(Subscriber.id == subscriber.id).with_for_update())
    if requested_since(session, subscriber, clock.now() - interval):
        return None
    content = Content(SUBJECT, TEXT, HTML)
    campaign, delivery = confirmations.enqueue(
        session, subscriber, content, {"reactivate": slugs}, actor
    )
    audit.record(
        session,
        actor,
        "subscriber.reactivation_requested",
        target_type="subscriber",
        target_id=subscriber.public_id,
        detail={"topics": slugs, "delivery": delivery.status.value, "reason": delivery.reason},
    )
    return campaign


def requested_since(session: Session, subscriber: Subscriber, since: datetime) -> bool:
    """Whether a request to join again was queued for this person after `since`."""
    metas = confirmations.metas_since(session, subscriber, since)
    return any((meta or {}).get("reactivate") for meta in metas)


def topics_named(session: Session, slugs: str) -> list[Topic]:
    """The marketing topics a link names (comma-separated), skipping any retired since."""
    wanted = [slug for slug in slugs.split(",") if slug]
    found = session.scalars(
        select(Topic).where(Topic.slug.in_(wanted), Topic.active, Topic.kind == TopicKind.MARKETING)
    ).all()
    by_slug = {topic.slug: topic for topic in found}
    return [by_slug[slug] for slug in dict.fromkeys(wanted) if slug in by_slug]


def reopen(
    session: Session,
    subscriber: Subscriber,
    topics: list[Topic],
    evidence: Evidence,
    *,
    hash_key: str,
) -> None:
    """The person confirmed: reopen the account and opt them in to `topics`.

    Pressing the button in the mail is their confirmation, so a double opt-in topic is
    confirmed at once (an opt-in and a confirm event, both with this evidence) rather
    than sending yet another mail. Audited."""
    if subscriber.status != SubscriberStatus.DEACTIVATED or not subscriber.email:
        raise Invalid("only a closed account can be reopened")
    subscribers.register(
        session,
        email=subscriber.email,
        attributes={},
        consents=[],
        hash_key=hash_key,
        evidence=evidence,
        reopen=True,
    )
    for topic in topics:
        state, _event = consent.change(session, subscriber, topic, ConsentAction.OPT_IN, evidence)
        if state == TopicState.PENDING:
            consent.confirm(session, subscriber, topic, evidence)
    audit.record(
        session,
        evidence.actor or "recipient",
        "subscriber.reactivate",
        target_type="subscriber",
        target_id=subscriber.public_id,
        detail={"topics": [topic.slug for topic in topics], "source": evidence.source},
        ip=evidence.ip,
    )
    session.flush()
