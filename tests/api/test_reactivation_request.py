"""Issue 13 finding 13, the way back: a closed account registered again WITH consents.

The key gets 202 `pending_reactivation`; nothing in the account changes; ONE request to
confirm goes to the person through the relay (at most one per
MAILPREFS_REACTIVATION_INTERVAL_HOURS), never to an erased address, a child or a
suppressed address. Its link reopens the account only when the person presses the
button (tests/prefs/test_rejoin.py)."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import subscribers, suppression
from mailprefs.domain.addresses import address_hash
from mailprefs.domain.models import (
    AuditEntry,
    ConsentEvent,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
)
from mailprefs.domain.outbox_models import Campaign, CampaignKind, Delivery, DeliveryStatus
from tests.conftest import bearer
from tests.support.factories import HASH_KEY, evidence, person

ADDRESS = "closed@example.com"
SIGNUP = {
    "email": ADDRESS,
    "consents": [
        {"topic": "offers", "source": "web_form", "ip": "192.0.2.1"},
        {"topic": "newsletter", "source": "web_form", "ip": "192.0.2.1"},
    ],
}


@pytest.fixture
def app_config(relay_config):
    return relay_config


@pytest.fixture
def closed(db) -> int:
    with db.transaction() as s:
        someone = person(s, ADDRESS, opted_in=("offers",))
        subscribers.deactivate(s, someone, evidence("preference_page"))
        return someone.id


def requests_queued(db) -> list[tuple[dict, DeliveryStatus, str | None]]:
    with db.session(read_only=True) as s:
        return [
            (meta, status, reason)
            for meta, status, reason in s.execute(
                select(Campaign.meta, Delivery.status, Delivery.reason)
                .join(Delivery, Delivery.campaign_id == Campaign.id)
                .where(Campaign.kind == CampaignKind.CONFIRMATION)
                .order_by(Campaign.id)
            )
            if (meta or {}).get("reactivate")
        ]


def ledger(db) -> list:
    with db.session(read_only=True) as s:
        return s.scalars(select(ConsentEvent.id).order_by(ConsentEvent.id)).all()


def status_of(db, subscriber_id: int) -> SubscriberStatus:
    with db.session(read_only=True) as s:
        return s.get(Subscriber, subscriber_id).status


def received(sink) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(raw, policy=email.policy.default) for _f, _to, raw in sink.messages
    ]


def test_202_changes_nothing_and_mails_one_request_to_confirm(
    client, db, app, sink, closed, marketing_key
):
    """202 with `pending_reactivation`; the account stays closed, no consent event; one
    confirmation mail, sent through the relay to the person, with a /rejoin/ link."""
    events = ledger(db)
    reply = client.post("/api/v1/subscribers", json=SIGNUP, headers=bearer(marketing_key))
    assert reply.status_code == 202, reply.get_data(as_text=True)
    body = reply.get_json()
    assert body["status"] == "pending_reactivation" and "email" not in body
    with db.session(read_only=True) as s:
        assert body["id"] == s.get(Subscriber, closed).public_id
        audit = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "subscriber.reactivation_requested")
        ).all()
        assert [a.detail["topics"] for a in audit] == [["offers", "newsletter"]]
    assert status_of(db, closed) == SubscriberStatus.DEACTIVATED
    assert ledger(db) == events
    assert requests_queued(db) == [
        ({"reactivate": ["offers", "newsletter"]}, DeliveryStatus.QUEUED, None)
    ]

    Worker(app).run_due()
    [mail] = received(sink)
    assert mail["To"] == ADDRESS and mail["Subject"].startswith("You asked to join again")
    assert "List-Unsubscribe" not in mail  # the administrative stream
    text = mail.get_body(("plain",)).get_content()
    assert re.search(r"https://mail\.example\.test/rejoin/[A-Za-z0-9_.\-]+", text)
    # Sending it changed nothing either: only the person's POST reopens the account.
    assert status_of(db, closed) == SubscriberStatus.DEACTIVATED
    assert ledger(db) == events
    assert requests_queued(db)[0][1] == DeliveryStatus.SENT


def test_at_most_one_request_per_interval(client, db, app, sink, closed, ops_key):
    """Registered again and again: one mail per MAILPREFS_REACTIVATION_INTERVAL_HOURS
    (default 24); after the interval, one more."""
    for _ in range(3):
        reply = client.post("/api/v1/subscribers", json=SIGNUP, headers=bearer(ops_key))
        assert reply.status_code == 202
    assert len(requests_queued(db)) == 1
    clock.freeze(clock.now() + timedelta(hours=23))
    assert (
        client.post("/api/v1/subscribers", json=SIGNUP, headers=bearer(ops_key)).status_code == 202
    )
    assert len(requests_queued(db)) == 1
    clock.freeze(clock.now() + timedelta(hours=1, minutes=1))
    assert (
        client.post("/api/v1/subscribers", json=SIGNUP, headers=bearer(ops_key)).status_code == 202
    )
    assert len(requests_queued(db)) == 2
    assert status_of(db, closed) == SubscriberStatus.DEACTIVATED


@pytest.mark.parametrize("app_config", [{"MAILPREFS_REACTIVATION_INTERVAL_HOURS": 2}])
def test_the_interval_is_a_setting(client, db, closed, ops_key):
    assert (
        client.post("/api/v1/subscribers", json=SIGNUP, headers=bearer(ops_key)).status_code == 202
    )
    clock.freeze(clock.now() + timedelta(hours=2, minutes=1))
    assert (
        client.post("/api/v1/subscribers", json=SIGNUP, headers=bearer(ops_key)).status_code == 202
    )
    assert len(requests_queued(db)) == 2


@pytest.mark.parametrize(
    ("reason", "gate_reason"),
    [
        (SuppressionReason.BOUNCE, "suppressed_bounce"),
        (SuppressionReason.COMPLAINT, "suppressed_complaint"),
        (SuppressionReason.MANUAL, "suppressed_manual"),
    ],
)
def test_never_mailed_to_a_suppressed_address(
    client, db, app, sink, closed, ops_key, reason, gate_reason
):
    """A bounced or complained (or manually suppressed) address: 202 as for anyone (the
    key learns nothing new), nothing changes, the request is blocked at the gate with
    the reason and nothing reaches the relay."""
    with db.transaction() as s:
        suppression.add(s, address_hash(ADDRESS, HASH_KEY), reason, source="test")
    events = ledger(db)
    reply = client.post("/api/v1/subscribers", json=SIGNUP, headers=bearer(ops_key))
    assert reply.status_code == 202, reply.get_data(as_text=True)
    assert requests_queued(db) == [
        ({"reactivate": ["offers", "newsletter"]}, DeliveryStatus.BLOCKED, gate_reason)
    ]
    Worker(app).run_due()
    assert sink.messages == []
    assert status_of(db, closed) == SubscriberStatus.DEACTIVATED and ledger(db) == events


def test_suppressed_after_queueing_is_stopped_at_send(client, db, app, sink, closed, ops_key):
    """The gate asks again at sending: a bounce recorded after the request was queued
    stops it."""
    assert (
        client.post("/api/v1/subscribers", json=SIGNUP, headers=bearer(ops_key)).status_code == 202
    )
    with db.transaction() as s:
        suppression.add(s, address_hash(ADDRESS, HASH_KEY), SuppressionReason.BOUNCE, source="t")
    Worker(app).run_due()
    assert sink.messages == []
    assert requests_queued(db)[0][1:] == (DeliveryStatus.BLOCKED, "suppressed_bounce")


@pytest.mark.parametrize("why", ["by_request", "underage"])
def test_never_to_an_erased_address_or_a_child(client, db, app, sink, ops_key, why):
    """Erased (or known to be under 13): 409, nothing stored, nothing queued or sent."""
    with db.transaction() as s:
        someone = person(s, ADDRESS, opted_in=("offers",))
        subscribers.deactivate(s, someone, evidence("preference_page"))
        subscribers.erase(s, someone, hash_key=HASH_KEY, actor="test", reason=why)
    events = ledger(db)
    reply = client.post("/api/v1/subscribers", json=SIGNUP, headers=bearer(ops_key))
    assert reply.status_code == 409 and reply.mimetype == "application/problem+json"
    Worker(app).run_due()
    assert requests_queued(db) == [] and sink.messages == [] and ledger(db) == events


def test_an_intake_showing_a_child_is_refused_and_nobody_is_mailed(
    client, db, app, sink, closed, ops_key
):
    """A closed account registered again with an age under 13: 422, nothing queued."""
    reply = client.post(
        "/api/v1/subscribers",
        json={**SIGNUP, "attributes": {"age": 12}},
        headers=bearer(ops_key),
    )
    assert reply.status_code == 422 and reply.mimetype == "application/problem+json"
    Worker(app).run_due()
    assert requests_queued(db) == [] and sink.messages == []
    assert status_of(db, closed) == SubscriberStatus.DEACTIVATED


def test_an_unknown_topic_is_422_and_nothing_is_queued(client, db, closed, ops_key):
    reply = client.post(
        "/api/v1/subscribers",
        json={"email": ADDRESS, "consents": [{"topic": "no-such-topic", "source": "web_form"}]},
        headers=bearer(ops_key),
    )
    assert reply.status_code in (404, 422), reply.get_data(as_text=True)
    assert reply.mimetype == "application/problem+json"
    assert requests_queued(db) == []


def test_the_route_documents_the_202(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    route = spec["paths"]["/api/v1/subscribers"]["post"]
    assert "202" in route["responses"]
    assert "pending_reactivation" in route["description"]
