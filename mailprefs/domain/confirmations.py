"""Double opt-in: a confirmation mail (administrative stream) when a topic goes pending."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs.domain import messages
from mailprefs.domain.consent import ConsentEvent
from mailprefs.domain.models import Subscriber, Topic, TopicState
from mailprefs.domain.outbox_models import Campaign, CampaignKind, Delivery
from mailprefs.domain.topics import get_topic

SUBJECT = "Please confirm: {name}"
TEXT = (
    "Hello,\n\n"
    "someone, hopefully you, asked to receive \u201c{name}\u201d from {{{{ org_name }}}} at this "
    "address. To confirm, open this link and press the button:\n\n"
    "{{{{ confirm_url }}}}\n\n"
    "If you did not ask for this, ignore this message: you will not be subscribed.\n"
)
HTML = (
    "<p>Hello,</p><p>someone, hopefully you, asked to receive \u201c{name}\u201d from "
    "{{{{ org_name }}}} at this address. To confirm, open this link and press the button:</p>"
    '<p><a href="{{{{ confirm_url }}}}">Confirm my subscription</a></p>'
    "<p>If you did not ask for this, ignore this message: you will not be subscribed.</p>"
)


def _literal(name: str) -> str:
    # Topic names come from configuration; keep them from being read as template syntax.
    return name.replace("{", "(").replace("}", ")").replace("%", "")


def request(session: Session, subscriber: Subscriber, topic: Topic, actor: str) -> Campaign:
    """Queue a confirmation mail for `topic`; its link is signed at send time and expires."""
    name = _literal(topic.name)
    campaign, _delivery = messages.enqueue(
        session,
        topic=get_topic(session, "account"),
        subscriber=subscriber,
        subject=SUBJECT.format(name=name),
        text=TEXT.format(name=name),
        html=HTML.format(name=name),
        created_by=actor,
        kind=CampaignKind.CONFIRMATION,
        meta={"confirm_topic": topic.slug},
    )
    return campaign


def after_change(
    session: Session,
    subscriber: Subscriber,
    topic: Topic,
    state: TopicState,
    event: ConsentEvent | None,
    actor: str,
) -> Campaign | None:
    """Call after any consent change: a fresh `pending` state sends a confirmation mail."""
    if state == TopicState.PENDING and event is not None:
        return request(session, subscriber, topic, actor)
    return None


def metas_since(session: Session, subscriber: Subscriber, since: datetime) -> list[dict | None]:
    """The `meta` of every confirmation-kind mail queued for this person after `since`
    (what each asks to confirm: a topic, or joining again)."""
    return list(
        session.scalars(
            select(Campaign.meta)
            .join(Delivery, Delivery.campaign_id == Campaign.id)
            .where(
                Delivery.subscriber_id == subscriber.id,
                Campaign.kind == CampaignKind.CONFIRMATION,
                Campaign.created_at > since,
            )
        )
    )


def requested_since(
    session: Session, subscriber: Subscriber, topic: Topic, since: datetime
) -> bool:
    """Whether a confirmation mail for `topic` was queued for this person after `since`
    (so a "send me a new link" button cannot be used to flood a mailbox)."""
    metas = metas_since(session, subscriber, since)
    return any((meta or {}).get("confirm_topic") == topic.slug for meta in metas)
