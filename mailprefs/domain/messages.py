"""Single administrative messages (password resets, receipts, notices, confirmations).

Each is a campaign of one, so it leaves through the same gate and outbox as everything
else, with a higher priority than marketing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import campaigns, gate
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import Subscriber, Topic, TopicKind
from mailprefs.domain.outbox_models import (
    PRIORITY,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
)


def enqueue(
    session: Session,
    *,
    topic: Topic,
    subscriber: Subscriber | None,
    subject: str,
    text: str,
    html: str | None,
    created_by: str,
    kind: CampaignKind = CampaignKind.TRANSACTIONAL,
    meta: dict[str, Any] | None = None,
) -> tuple[Campaign, Delivery]:
    """Queue one administrative message, deciding with the gate now (and again at send)."""
    if topic.kind != TopicKind.ADMINISTRATIVE:
        raise Invalid.field("topic", "single messages go on administrative topics only")
    now = clock.now()
    campaign = campaigns.create(
        session,
        topic=topic,
        subject=subject,
        text=text,
        html=html,
        send_at=None,
        audience=None,
        created_by=created_by,
        kind=kind,
    )
    campaign.status = CampaignStatus.SENDING
    campaign.started_at = now
    campaign.expansion_done = True
    campaign.meta = meta
    facts = gate.load_recipient(session, subscriber.id, topic.id) if subscriber else None
    purpose = gate.purpose_of(kind, meta)
    decision = gate.decide(facts.facts if facts else None, topic, now, purpose)
    delivery = Delivery(
        campaign_id=campaign.id,
        subscriber_id=subscriber.id if subscriber else None,
        status=DeliveryStatus.QUEUED if decision.allowed else DeliveryStatus.BLOCKED,
        reason=decision.reason,
        priority=PRIORITY[kind],
        attempts=0,
        next_attempt_at=now,
        decided_at=now,
    )
    session.add(delivery)
    if not decision.allowed:
        campaign.status = CampaignStatus.SENT
        campaign.finished_at = now
    session.flush()
    return campaign, delivery


def get(session: Session, public_id: str) -> tuple[Campaign, Delivery]:
    campaign = campaigns.get(session, public_id, kinds=(CampaignKind.TRANSACTIONAL,))
    delivery = session.scalar(select(Delivery).where(Delivery.campaign_id == campaign.id))
    return campaign, delivery
