"""The gate lets exactly one mail through to a closed account: the request to confirm
joining again (`gate.REACTIVATION`). Nothing else reaches a deactivated person, and that
one mail never reaches an erased address, a child or a suppressed address."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailprefs.domain import confirmations, gate, messages, reactivation, subscribers
from mailprefs.domain.gate import Facts, decide
from mailprefs.domain.models import SubscriberStatus, SuppressionReason, TopicState
from mailprefs.domain.outbox_models import CampaignKind, Delivery, DeliveryStatus
from mailprefs.domain.topics import get_topic
from tests.support.factories import evidence, person

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
CLOSED = Facts(SubscriberStatus.DEACTIVATED, None, TopicState.NONE, None)


def facts(**changes) -> Facts:
    """A closed account (deactivated, no topic state), with `changes`."""
    return replace(CLOSED, **changes)


@pytest.mark.parametrize(
    ("given", "kind", "purpose", "expected"),
    [
        # The one mail: a closed account, the administrative stream, this purpose.
        (facts(), "administrative", gate.REACTIVATION, None),
        # Any other mail to a closed account stays blocked.
        (facts(), "administrative", None, "deactivated"),
        (facts(), "marketing", gate.REACTIVATION, "deactivated"),
        (facts(topic_state=TopicState.OPTED_IN), "marketing", None, "deactivated"),
        # Never to an erased address, a child, or a suppressed address.
        (
            facts(status=SubscriberStatus.ERASED, status_reason="by_request"),
            "administrative",
            gate.REACTIVATION,
            "erased",
        ),
        (
            facts(status=SubscriberStatus.ERASED, status_reason="underage"),
            "administrative",
            gate.REACTIVATION,
            "underage",
        ),
        (None, "administrative", gate.REACTIVATION, "unknown_recipient"),
        # Other mail is decided as before: a complaint stops only marketing.
        (
            facts(status=SubscriberStatus.ACTIVE, suppression=SuppressionReason.COMPLAINT),
            "administrative",
            None,
            None,
        ),
    ],
)
def test_gate_reason_for_the_request_to_join_again(given, kind, purpose, expected):
    assert decide(given, kind, NOW, purpose).reason == expected


@pytest.mark.parametrize(
    ("suppression", "expected"),
    [
        (SuppressionReason.UNDERAGE, "underage"),
        (SuppressionReason.ERASED, "erased"),
        (SuppressionReason.BOUNCE, "suppressed_bounce"),
        (SuppressionReason.COMPLAINT, "suppressed_complaint"),
        (SuppressionReason.MANUAL, "suppressed_manual"),
    ],
)
def test_the_request_to_join_again_never_reaches_a_suppressed_address(suppression, expected):
    request = decide(facts(suppression=suppression), "administrative", NOW, gate.REACTIVATION)
    assert request.reason == expected


def test_only_a_reactivation_request_carries_the_purpose():
    assert gate.purpose_of("confirmation", {"reactivate": ["offers"]}) == gate.REACTIVATION
    assert gate.purpose_of("confirmation", {"confirm_topic": "newsletter"}) is None
    assert gate.purpose_of("transactional", {"reactivate": ["offers"]}) is None
    assert gate.purpose_of("campaign", None) is None


def test_in_the_outbox_only_the_request_reaches_a_closed_account(session):
    """Queued for a deactivated person: the request to join again is queued; an account
    notice and a double opt-in confirmation are blocked `deactivated`."""
    closed = person(session, "gone@example.com", opted_in=("offers",))
    subscribers.deactivate(session, closed, evidence("preference_page"))
    account = get_topic(session, "account")
    _c, notice = messages.enqueue(
        session,
        topic=account,
        subscriber=closed,
        subject="Your account",
        text="Hello",
        html=None,
        created_by="test",
    )
    double = confirmations.request(session, closed, get_topic(session, "newsletter"), "test")
    request = reactivation.request(
        session, closed, [get_topic(session, "offers")], actor="test", interval=timedelta(hours=24)
    )
    assert (notice.status, notice.reason) == (DeliveryStatus.BLOCKED, "deactivated")
    assert outcome(session, double) == [(DeliveryStatus.BLOCKED, "deactivated")]
    assert request.kind == CampaignKind.CONFIRMATION
    assert outcome(session, request) == [(DeliveryStatus.QUEUED, None)]


def outcome(session, campaign) -> list[tuple]:
    return session.execute(
        select(Delivery.status, Delivery.reason).where(Delivery.campaign_id == campaign.id)
    ).all()
