"""What the signed links in our mail act on: the person and the topic a link names, and
the opt-out behind the unsubscribe link."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs.domain import consent
from mailprefs.domain.consent import Evidence
from mailprefs.domain.errors import Gone, NotFound
from mailprefs.domain.models import Subscriber, SubscriberStatus, Topic, TopicKind

ERASED_DETAIL = "this person's data was erased; only the hash of the address is kept"


def find_person(session: Session, public_id: str, *, for_update: bool = False) -> Subscriber:
    """The person a link names; NotFound if unknown, Gone if erased.

    `for_update` locks the row (PostgreSQL) until the transaction ends, so two requests
    changing one person's consent at once run one after the other; SQLite needs no lock,
    its write transactions already do.
    """
    query = select(Subscriber).where(Subscriber.public_id == public_id)
    subscriber = session.scalar(query.with_for_update() if for_update else query)
    if subscriber is None:
        raise NotFound("no subscriber with this id")
    if subscriber.status == SubscriberStatus.ERASED:
        raise Gone(ERASED_DETAIL)
    return subscriber


def marketing_topic(session: Session, slug: str, *, active_only: bool = False) -> Topic:
    """The marketing topic a link names. A retired topic can still be left, not joined."""
    query = select(Topic).where(Topic.slug == slug, Topic.kind == TopicKind.MARKETING)
    topic = session.scalar(query.where(Topic.active) if active_only else query)
    if topic is None:
        raise NotFound("this link names no topic of ours")
    return topic


@dataclass(frozen=True)
class Unsubscribed:
    changed: bool  # False when the person was already opted out (nothing recorded)
    topic_name: str
    email: str | None


def opt_out(session: Session, public_id: str, slug: str, evidence: Evidence) -> Unsubscribed:
    """The unsubscribe link: opt the person out of the topic; idempotent."""
    subscriber = find_person(session, public_id, for_update=True)
    topic = marketing_topic(session, slug)
    _state, event = consent.opt_out(session, subscriber, topic, evidence)
    return Unsubscribed(event is not None, topic.name, subscriber.email)
