"""The campaigns and messages API (docs/api.md), against a real SMTP server."""

from __future__ import annotations

import json
import threading
import urllib.request
from datetime import timedelta

import pytest

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain.outbox_models import Campaign, Delivery
from tests.conftest import bearer, count
from tests.support.factories import person
from tests.support.servers import live_server

CAMPAIGN = {
    "topic": "offers",
    "subject": "Hi {{ first_name }}",
    "text": "Hello {{ first_name }}",
    "html": "<p>Hello {{ first_name }}</p>",
}


@pytest.fixture
def app_config(sink):
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port}


def create(client, key, body=CAMPAIGN, headers=None):
    return client.post("/api/v1/campaigns", json=body, headers={**bearer(key), **(headers or {})})


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.get_json()


def test_create_draft_then_schedule_then_send_with_progress(client, marketing_key, db, app, sink):
    with db.transaction() as s:
        person(s, "a@example.com", opted_in=("offers",), attributes={"first_name": "Ann"})
        person(s, "b@example.com")
    created = create(client, marketing_key)
    assert created.status_code == 201
    campaign_id = created.get_json()["id"]
    assert created.get_json()["status"] == "draft"
    audience = client.get(
        f"/api/v1/campaigns/{campaign_id}/audience", headers=bearer(marketing_key)
    ).get_json()
    assert audience == {"total": 2, "allowed": 1, "blocked": {"no_consent": 1}}
    scheduled = client.post(
        f"/api/v1/campaigns/{campaign_id}/schedule", json={}, headers=bearer(marketing_key)
    )
    assert scheduled.status_code == 200 and scheduled.get_json()["status"] == "scheduled"
    Worker(app).run_due()
    detail = client.get(
        f"/api/v1/campaigns/{campaign_id}", headers=bearer(marketing_key)
    ).get_json()
    assert detail["status"] == "sent" and detail["topic"] == "offers"
    progress = {"planned", "sent", "blocked", "failed", "pending", "cancelled"}
    assert {k: v for k, v in detail["stats"].items() if k in progress} == {
        "planned": 2,
        "sent": 1,
        "blocked": {"no_consent": 1},
        "failed": 0,
        "pending": 0,
        "cancelled": 0,
    }
    # The reputation guard's figures extend the stats (tests/reputation has their rules).
    assert detail["stats"]["delivered"] == 1 and detail["stats"]["complaint_rate"] == 0.0
    assert [m[1] for m in sink.messages] == [["a@example.com"]]


def test_create_with_send_at_is_scheduled_and_fires_only_when_due(
    client, marketing_key, db, app, sink
):
    with db.transaction() as s:
        person(s, "a@example.com", opted_in=("offers",))
    send_at = (clock.now() + timedelta(hours=1)).isoformat()
    created = create(client, marketing_key, {**CAMPAIGN, "send_at": send_at}).get_json()
    assert created["status"] == "scheduled"
    assert Worker(app).run_due().fired == 0 and sink.messages == []
    clock.freeze(clock.now() + timedelta(hours=1, seconds=1))
    assert Worker(app).run_due().sent == 1


def test_marketing_keys_cannot_use_administrative_topics(client, marketing_key, db):
    response = create(client, marketing_key, {**CAMPAIGN, "topic": "policy"})
    problem(response, 403)
    assert count(db, Campaign.id) == 0


def test_ops_keys_can_send_administrative_campaigns(client, ops_key):
    assert create(client, ops_key, {**CAMPAIGN, "topic": "account"}).status_code == 201


def test_idempotency_key_yields_one_campaign_and_refuses_a_different_body(
    client, marketing_key, db
):
    headers = {"Idempotency-Key": "launch-2026-11"}
    first = create(client, marketing_key, headers=headers)
    again = create(client, marketing_key, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert count(db, Campaign.id) == 1
    other = create(client, marketing_key, {**CAMPAIGN, "subject": "Other"}, headers=headers)
    problem(other, 409)
    assert count(db, Campaign.id) == 1


def test_racing_creates_with_one_key_yield_one_campaign(app, marketing_key, db):
    with live_server(app) as base:
        answers = []

        def post():
            request = urllib.request.Request(
                f"{base}/api/v1/campaigns",
                data=json.dumps(CAMPAIGN).encode(),
                method="POST",
                headers={
                    **bearer(marketing_key),
                    "Content-Type": "application/json",
                    "Idempotency-Key": "race",
                },
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append((response.status, json.loads(response.read())["id"]))

        threads = [threading.Thread(target=post) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(answers) == 6
    assert {status for status, _ in answers} == {201}
    assert len({cid for _, cid in answers}) == 1
    assert count(db, Campaign.id) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "Hi\r\nBcc: victim@example.org"}, "subject"),
        ({"topic": "nope"}, "topic"),
        ({"send_at": "tomorrow"}, "send_at"),
        ({"send_at": "2030-01-01T10:00:00"}, "send_at"),
        ({"send_at": "2001-01-01T10:00:00Z"}, "send_at"),
        ({"text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}, "text"),
        ({"html": "{{ cycler.__init__.__globals__.os }}"}, "html"),
        ({"subject": "{% include 'x' %}"}, "subject"),
        ({"text": "{% for %}"}, "text"),
        (
            {
                "text": "{% for a in range(3000) %}{% for b in range(3000) %}{% endfor %}{% endfor %}"
            },
            "text",
        ),
        ({"subject": 42}, "subject"),
        ({"audience": {"attributes": {"plan": {"nested": True}}}}, "audience.attributes.plan"),
        ({"extra": "field"}, "extra"),
    ],
)
def test_bad_campaigns_are_refused_and_nothing_is_stored(
    client, marketing_key, db, change, field, sink
):
    response = create(client, marketing_key, {**CAMPAIGN, **change})
    body = problem(response, 422)
    assert field in [e["field"] for e in body["errors"]], body
    assert count(db, Campaign.id) == 0 and sink.messages == []


def test_a_20_mib_campaign_is_413(client, marketing_key, db):
    response = create(client, marketing_key, {**CAMPAIGN, "text": "x" * (20 * 1024 * 1024)})
    problem(response, 413)
    assert count(db, Campaign.id) == 0


@pytest.mark.parametrize(
    ("steps", "illegal"),
    [
        ([], "resume"),
        ([], "pause"),
        (["cancel"], "schedule"),
        (["cancel"], "resume"),
        (["schedule", "pause"], "schedule"),
    ],
)
def test_illegal_moves_answer_409(client, marketing_key, steps, illegal):
    campaign_id = create(client, marketing_key).get_json()["id"]
    for step in steps:
        assert (
            client.post(
                f"/api/v1/campaigns/{campaign_id}/{step}", json={}, headers=bearer(marketing_key)
            ).status_code
            == 200
        )
    problem(
        client.post(
            f"/api/v1/campaigns/{campaign_id}/{illegal}", json={}, headers=bearer(marketing_key)
        ),
        409,
    )


def test_pause_and_resume_before_start_returns_to_scheduled(client, marketing_key):
    campaign_id = create(
        client,
        marketing_key,
        {**CAMPAIGN, "send_at": (clock.now() + timedelta(days=1)).isoformat()},
    ).get_json()["id"]
    paused = client.post(f"/api/v1/campaigns/{campaign_id}/pause", headers=bearer(marketing_key))
    assert paused.get_json()["status"] == "paused"
    resumed = client.post(f"/api/v1/campaigns/{campaign_id}/resume", headers=bearer(marketing_key))
    assert resumed.get_json()["status"] == "scheduled"


def test_cancel_is_idempotent_but_a_sent_campaign_cannot_be_cancelled(
    client, marketing_key, app, db
):
    campaign_id = create(client, marketing_key).get_json()["id"]
    for _ in range(2):
        assert (
            client.post(
                f"/api/v1/campaigns/{campaign_id}/cancel", headers=bearer(marketing_key)
            ).get_json()["status"]
            == "cancelled"
        )
    other = create(client, marketing_key, {**CAMPAIGN, "subject": "Two"}).get_json()["id"]
    client.post(f"/api/v1/campaigns/{other}/schedule", json={}, headers=bearer(marketing_key))
    Worker(app).run_due()
    problem(client.post(f"/api/v1/campaigns/{other}/cancel", headers=bearer(marketing_key)), 409)


def test_preview_uses_placeholders_not_personal_data(client, marketing_key, db):
    with db.transaction() as s:
        person(s, "secret@example.com", opted_in=("offers",), attributes={"first_name": "Zebediah"})
    campaign_id = create(client, marketing_key).get_json()["id"]
    preview = client.get(f"/api/v1/campaigns/{campaign_id}/preview", headers=bearer(marketing_key))
    body = preview.get_json()
    assert preview.status_code == 200
    assert body["subject"] == "Hi [first_name]"
    assert "Hello [first_name]" in body["text"] and "Hello [first_name]" in body["html"]
    assert "List-Unsubscribe" in body["headers"]
    assert "Zebediah" not in preview.get_data(as_text=True)
    assert "secret@" not in preview.get_data(as_text=True)


def test_unknown_campaign_is_404(client, marketing_key):
    problem(client.get("/api/v1/campaigns/nope", headers=bearer(marketing_key)), 404)


# --- single administrative messages ------------------------------------------------


def test_a_transactional_key_sends_one_administrative_message(
    client, transactional_key, db, app, sink
):
    with db.transaction() as s:
        public_id = person(s, "user@example.com").public_id  # no marketing consent needed
    reply = client.post(
        "/api/v1/messages",
        headers=bearer(transactional_key),
        json={"topic": "account", "to": public_id, "subject": "Your receipt", "text": "Thanks."},
    )
    assert reply.status_code == 202
    body = reply.get_json()
    assert body["status"] == "queued"
    Worker(app).run_due()
    assert [m[1] for m in sink.messages] == [["user@example.com"]]
    status = client.get(
        f"/api/v1/messages/{body['id']}", headers=bearer(transactional_key)
    ).get_json()
    assert status["status"] == "sent"
    assert b"List-Unsubscribe" not in sink.messages[0][2]


def test_messages_to_an_unknown_address_are_blocked_and_recorded(
    client, transactional_key, db, sink
):
    reply = client.post(
        "/api/v1/messages",
        headers=bearer(transactional_key),
        json={"topic": "account", "to": "nobody@example.com", "subject": "Reset", "text": "Link"},
    )
    assert reply.status_code == 202
    assert (
        reply.get_json()["status"] == "blocked"
        and reply.get_json()["reason"] == "unknown_recipient"
    )
    assert count(db, Delivery.id) == 1


def test_messages_refuse_marketing_topics_and_marketing_keys(
    client, transactional_key, marketing_key, db
):
    with db.transaction() as s:
        public_id = person(s, "user@example.com").public_id
    body = {"topic": "offers", "to": public_id, "subject": "Buy", "text": "Now"}
    problem(client.post("/api/v1/messages", json=body, headers=bearer(transactional_key)), 422)
    problem(
        client.post(
            "/api/v1/messages", json={**body, "topic": "account"}, headers=bearer(marketing_key)
        ),
        403,
    )
    assert count(db, Campaign.id) == 0


def test_messages_honour_idempotency_keys(client, transactional_key, db):
    with db.transaction() as s:
        public_id = person(s, "user@example.com").public_id
    body = {"topic": "account", "to": public_id, "subject": "Reset", "text": "Link"}
    headers = {**bearer(transactional_key), "Idempotency-Key": "reset-1"}
    first = client.post("/api/v1/messages", json=body, headers=headers)
    second = client.post("/api/v1/messages", json=body, headers=headers)
    assert first.get_json() == second.get_json() and count(db, Delivery.id) == 1
    problem(client.post("/api/v1/messages", json={**body, "text": "Other"}, headers=headers), 409)


def test_messages_to_an_unknown_id_are_404(client, transactional_key):
    problem(
        client.post(
            "/api/v1/messages",
            headers=bearer(transactional_key),
            json={"topic": "account", "to": "no-such-id", "subject": "x", "text": "y"},
        ),
        404,
    )


def test_a_send_at_of_just_now_is_taken_as_now_but_older_is_refused(client, marketing_key):
    """A client's 'now' arrives slightly in the past: within 5 minutes it means now."""
    just_now = (clock.now() - timedelta(seconds=30)).isoformat()
    assert create(client, marketing_key, {**CAMPAIGN, "send_at": just_now}).status_code == 201
    long_ago = (clock.now() - timedelta(minutes=6)).isoformat()
    problem(create(client, marketing_key, {**CAMPAIGN, "send_at": long_ago}), 422)
