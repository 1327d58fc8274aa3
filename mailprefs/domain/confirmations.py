"""Double opt-in: a confirmation mail (administrative stream) when a topic goes pending."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs.domain import messages
from mailprefs.domain.campaigns import Content
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


def enqueue(
    session: Session, subscriber: Subscriber, content: Content, meta: dict[str, Any], actor: str
) -> tuple[Campaign, Delivery]:
    """Queue a mail that asks the person to confirm what `meta` names, on the account
    topic (administrative stream); its link is signed at send time and expires."""
    return messages.enqueue(
        session,
        topic=get_topic(session, "account"),
        subscriber=subscriber,
        **content._asdict(),
        created_by=actor,
        kind=CampaignKind.CONFIRMATION,
        meta=meta,
    )


def request(session: Session, subscriber: Subscriber, topic: Topic, actor: str) -> Campaign:
    """Queue a confirmation mail for `topic`."""
    name = _literal(topic.name)
    content = Content(SUBJECT.format(name=name), TEXT.format(name=name), HTML.format(name=name))
    campaign, _delivery = enqueue(
        session, subscriber, content, {"confirm_topic": topic.slug}, actor
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
