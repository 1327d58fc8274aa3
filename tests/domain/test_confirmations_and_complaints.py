"""Double opt-in sends a confirmation mail; a complaint stops marketing and is evidence."""

from __future__ import annotations

from sqlalchemy import select

from mailprefs.domain import complaints, consent, subscribers, suppression
from mailprefs.domain.models import SuppressionReason, TopicState
from mailprefs.domain.outbox_models import Campaign, CampaignKind, Delivery, DeliveryStatus
from mailprefs.domain.subscribers import ConsentRequest
from tests.support.factories import HASH_KEY, evidence, person


def confirmations_for(session, subscriber):
    return session.execute(
        select(Campaign, Delivery)
        .join(Delivery, Delivery.campaign_id == Campaign.id)
        .where(Campaign.kind == CampaignKind.CONFIRMATION, Delivery.subscriber_id == subscriber.id)
    ).all()


def test_a_double_opt_in_topic_queues_one_confirmation_mail_on_the_account_topic(session):
    alice, _ = subscribers.register(
        session,
        email="alice@example.com",
        attributes={},
        hash_key=HASH_KEY,
        evidence=evidence(),
        consents=[ConsentRequest("newsletter", evidence()), ConsentRequest("offers", evidence())],
    )
    ((campaign, delivery),) = confirmations_for(session, alice)
    assert campaign.meta == {"confirm_topic": "newsletter"}
    assert campaign.topic.slug == "account" and campaign.priority == 0
    assert delivery.status == DeliveryStatus.QUEUED
    assert "{{ confirm_url }}" in campaign.text_body and "Newsletter" in campaign.subject
    # Asking again while pending does not send a second mail.
    subscribers.register(
        session,
        email="alice@example.com",
        attributes={},
        hash_key=HASH_KEY,
        evidence=evidence(),
        consents=[ConsentRequest("newsletter", evidence())],
    )
    assert len(confirmations_for(session, alice)) == 1


def test_single_opt_in_topics_send_no_confirmation(session):
    alice = person(session, opted_in=("offers",))
    assert confirmations_for(session, alice) == []


def test_a_complaint_suppresses_marketing_withdraws_consent_and_opens_an_item(session):
    alice = person(session, opted_in=("offers", "newsletter"))
    row = complaints.report(
        session,
        subscriber=alice,
        email_hash=None,
        source="preference_page",
        evidence=evidence("preference_page", ip="192.0.2.5"),
        detail="spam!",
    )
    assert complaints.open_count(session) == 1 and row.status == "open"
    assert suppression.active(session, alice.email_hash).reason == SuppressionReason.COMPLAINT
    states = consent.states(session, alice)
    assert states["offers"] == states["newsletter"] == TopicState.OPTED_OUT
    sources = {e.source for e in consent.history(session, alice) if e.action == "opt_out"}
    assert sources == {"complaint"}
    complaints.resolve(session, row, actor="ops", resolution="checked consent evidence: valid")
    assert complaints.open_count(session) == 0


def test_a_complaint_keeps_a_stronger_suppression(session):
    alice = person(session)
    suppression.add(session, alice.email_hash, SuppressionReason.BOUNCE, source="smtp")
    complaints.report(
        session, subscriber=alice, email_hash=None, source="arf", evidence=evidence("complaint")
    )
    assert suppression.active(session, alice.email_hash).reason == SuppressionReason.BOUNCE
