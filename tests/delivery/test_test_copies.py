"""Test copies of a campaign go through the outbox: queued and audited by the request
(no SMTP in it), sent by the worker ahead of everything else, the gate asked at send."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailprefs.delivery.worker import Worker
from mailprefs.domain import users
from mailprefs.domain.models import AuditEntry, Suppression, User
from mailprefs.domain.outbox_models import Campaign, CampaignKind, Delivery, DeliveryStatus
from tests.api.test_campaigns_api import CAMPAIGN
from tests.conftest import bearer, count
from tests.support.factories import person


@pytest.fixture
def app_config(sink):
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": sink.port,
        "MAILPREFS_TEST_ADDRESSES": "listed@example.com",
    }


def create(client, key) -> str:
    response = client.post("/api/v1/campaigns", json=CAMPAIGN, headers=bearer(key))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def ask(client, key, campaign_id, emails):
    return client.post(
        f"/api/v1/campaigns/{campaign_id}/test", json={"emails": emails}, headers=bearer(key)
    )


def staff(db, email="staff@example.com"):
    with db.transaction() as s:
        users.create(s, email, "ops", "a long enough password")


def test_a_test_send_is_queued_and_audited_without_smtp_then_sent_by_the_worker(
    client, marketing_key, db, app, sink
):
    """The request queues one outbox row per staff address and an audit entry, sends
    nothing; the worker then sends each marked copy once. The campaign counts none."""
    staff(db)
    campaign_id = create(client, marketing_key)
    answer = ask(client, marketing_key, campaign_id, ["Staff@Example.com", "listed@example.com"])
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {
        "queued": ["staff@example.com", "listed@example.com"],
        "sent": [],
        "failed": [],
    }
    assert sink.messages == []  # nothing left during the request
    with db.session(read_only=True) as s:
        copies = s.scalars(select(Campaign).where(Campaign.kind == CampaignKind.TEST)).all()
        assert {c.meta["to"] for c in copies} == {"staff@example.com", "listed@example.com"}
        assert {c.meta["test_of"] for c in copies} == {campaign_id}
        rows = s.scalars(select(Delivery)).all()
        assert [r.status for r in rows] == [DeliveryStatus.QUEUED] * 2
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "campaign.test")).one()
        assert entry.target_id == campaign_id and entry.detail == {"copies": 2}
        assert "@" not in str(entry.detail)

    summary = Worker(app).run_due()
    assert summary.sent == 2
    assert sorted(rcpts[0] for _f, rcpts, _r in sink.messages) == [
        "listed@example.com",
        "staff@example.com",
    ]
    for _from, _rcpts, raw in sink.messages:
        assert b"[TEST]" in raw and b"X-Mailprefs-Test: yes" in raw
        assert b"Hi [first_name]" in raw  # placeholders, nobody's data
    stats = client.get(
        f"/api/v1/campaigns/{campaign_id}", headers=bearer(marketing_key)
    ).get_json()["stats"]
    assert stats["planned"] == 0 and stats["sent"] == 0
    with db.session(read_only=True) as s:
        assert {r.status for r in s.scalars(select(Delivery))} == {DeliveryStatus.SENT}
        # Settled copies keep no staff address.
        copies = s.scalars(select(Campaign).where(Campaign.kind == CampaignKind.TEST)).all()
        assert [c.meta for c in copies] == [{"test_of": campaign_id}] * 2
    # Sent once: a second run finds nothing to do.
    assert Worker(app).run_due().sent == 0 and len(sink.messages) == 2


def test_test_copies_to_the_public_are_refused_whole_and_nothing_is_queued(
    client, marketing_key, db, sink
):
    """An address that is no staff login nor listed: 422 naming it, no row, no audit."""
    staff(db)
    with db.transaction() as s:
        person(s, "a@example.com", opted_in=("offers",))
    campaign_id = create(client, marketing_key)
    refused = ask(client, marketing_key, campaign_id, ["staff@example.com", "a@example.com"])
    assert refused.status_code == 422 and refused.mimetype == "application/problem+json"
    assert [e["field"] for e in refused.get_json()["errors"]] == ["emails.1"]
    assert count(db, Delivery.id) == 0
    with db.session(read_only=True) as s:
        assert s.scalars(select(Campaign).where(Campaign.kind == CampaignKind.TEST)).all() == []
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "campaign.test")).all() == []
    bad = ask(client, marketing_key, campaign_id, ["not an address"])
    assert bad.status_code == 422 and count(db, Delivery.id) == 0


def test_test_copies_go_first_in_line_before_a_running_campaign(
    client, marketing_key, db, app, sink
):
    """A test copy asked for while a campaign's rows wait is the first message sent."""
    staff(db)
    with db.transaction() as s:
        for i in range(5):
            person(s, f"p{i}@example.com", opted_in=("offers",))
    running = create(client, marketing_key)
    client.post(f"/api/v1/campaigns/{running}/schedule", json={}, headers=bearer(marketing_key))
    worker = Worker(app)
    worker.fire_due()
    worker.expand_all()
    assert count(db, Delivery.id) == 5
    other = create(client, marketing_key)
    assert ask(client, marketing_key, other, ["staff@example.com"]).status_code == 200
    worker.drain()
    recipients = [rcpts[0] for _f, rcpts, _r in sink.messages]
    assert len(recipients) == 6 and recipients[0] == "staff@example.com"


def test_the_gate_is_asked_at_send_a_login_closed_since_gets_no_copy(
    client, marketing_key, db, app, sink
):
    """Queued for a staff login that is deactivated before the worker runs: the row is
    blocked (not_staff) at send and nothing leaves."""
    staff(db)
    campaign_id = create(client, marketing_key)
    assert ask(client, marketing_key, campaign_id, ["staff@example.com"]).status_code == 200
    with db.transaction() as s:
        s.scalars(select(User).where(User.email == "staff@example.com")).one().active = False
    summary = Worker(app).run_due()
    assert summary.blocked == 1 and summary.sent == 0 and sink.messages == []
    with db.session(read_only=True) as s:
        row = s.scalars(select(Delivery)).one()
        assert row.status == DeliveryStatus.BLOCKED and row.reason == "not_staff"
        assert "to" not in s.get(Campaign, row.campaign_id).meta


def test_a_relay_refusing_a_test_copy_fails_that_row_and_suppresses_nobody(
    client, marketing_key, db, app, sink
):
    """550 for a staff address: the copy's row fails with the relay's answer, the worker
    goes on, and no suppression is recorded (staff are not recipients)."""
    staff(db, "reject550.staff@example.com")
    staff(db)
    campaign_id = create(client, marketing_key)
    answer = ask(
        client, marketing_key, campaign_id, ["reject550.staff@example.com", "staff@example.com"]
    )
    assert answer.status_code == 200
    summary = Worker(app).run_due()
    assert summary.failed == 1 and summary.sent == 1
    assert [rcpts for _f, rcpts, _r in sink.messages] == [["staff@example.com"]]
    assert count(db, Suppression.id) == 0
    with db.session(read_only=True) as s:
        rows = sorted(s.scalars(select(Delivery)), key=lambda r: r.status.value)
        assert [r.status.value for r in rows] == ["failed", "sent"]
        assert "550" in rows[0].last_error and "@" not in rows[0].last_error
