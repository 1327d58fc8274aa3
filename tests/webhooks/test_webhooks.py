"""Outgoing webhooks: registered by admins, written with their cause, delivered signed,
at least once, in order per person, retried for 24 hours; a hanging receiver blocks
nobody else. The receiver is a real HTTP server in its own process that verifies the
signature."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import consent, links, webhooks
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import AuditEntry, Subscriber
from mailprefs.domain.topics import get_topic
from mailprefs.domain.webhook_models import WebhookDelivery, WebhookDeliveryStatus, WebhookEvent
from tests.conftest import bearer, count
from tests.support.factories import evidence, person
from tests.webhooks.conftest import register, sender

ALL = list(webhooks.EVENT_TYPES)


def test_admins_register_https_endpoints_and_see_the_secret_once(
    client, admin_key, ops_key, marketing_key, db
):
    url = "https://crm.example.test/hooks/mailprefs"
    body = {"url": url, "events": ["subscriber.erased"]}
    for key in (ops_key, marketing_key):
        assert client.post("/api/v1/webhooks", json=body, headers=bearer(key)).status_code == 403
    bad = [
        {"url": "http://crm.example.test/hook", "events": ["subscriber.erased"]},
        {"url": "ftp://crm.example.test/hook", "events": ["subscriber.erased"]},
        {"url": "https://user:pw@crm.example.test/", "events": ["subscriber.erased"]},
        {"url": url, "events": []},
        {"url": url, "events": ["everything"]},
    ]
    for wrong in bad:
        reply = client.post("/api/v1/webhooks", json=wrong, headers=bearer(admin_key))
        assert reply.status_code == 422, (wrong, reply.get_json())
    assert count(db, WebhookEvent.id) == 0
    created = client.post(
        "/api/v1/webhooks", json={**body, "include_email": True}, headers=bearer(admin_key)
    )
    assert created.status_code == 201
    hook = created.get_json()
    assert hook["secret"].startswith("whsec_") and hook["include_email"] is True
    listed = client.get("/api/v1/webhooks", headers=bearer(admin_key)).get_json()
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    with db.session(read_only=True) as s:
        (entry,) = s.scalars(select(AuditEntry).where(AuditEntry.action == "webhook.create"))
        assert entry.detail["include_email"] is True and entry.target_id == hook["id"]
    path = f"/api/v1/webhooks/{hook['id']}"
    assert client.delete(path, headers=bearer(admin_key)).status_code == 204
    assert client.delete(path, headers=bearer(admin_key)).status_code == 404
    assert client.get("/api/v1/webhooks", headers=bearer(admin_key)).get_json() == []


def test_plain_http_only_to_loopback_and_never_in_production():
    assert webhooks.check_url("http://127.0.0.1:9/h", "development") == "http://127.0.0.1:9/h"
    assert webhooks.check_url("http://[::1]:9/h", "testing")
    for environment in ("production",):
        with pytest.raises(Invalid):
            webhooks.check_url("http://127.0.0.1:9/h", environment)
    with pytest.raises(Invalid):
        webhooks.check_url("http://10.0.0.1/h", "development")


def test_events_are_written_in_the_transaction_of_their_cause(app, client, admin_key, db, receiver):
    """An opt-out that rolls back leaves no event; the committed one leaves exactly one."""
    with db.transaction() as s:
        someone = person(s, "t@example.com", opted_in=("offers",)).id
    assert count(db, WebhookEvent.id) == 0, "no endpoint: nothing written"
    register(client, admin_key, receiver, ["subscription.changed"])
    with pytest.raises(RuntimeError), db.transaction() as s:
        subscriber = s.get(Subscriber, someone)
        consent.opt_out(s, subscriber, get_topic(s, "offers"), evidence())
        s.flush()
        assert s.scalar(select(func.count(WebhookEvent.id))) == 1
        raise RuntimeError("the request failed after the change")
    assert count(db, WebhookEvent.id) == 0
    with db.transaction() as s:
        consent.opt_out(s, s.get(Subscriber, someone), get_topic(s, "offers"), evidence())
    assert count(db, WebhookEvent.id) == 1 and count(db, WebhookDelivery.id) == 1


def _people(db) -> dict[str, str]:
    with db.transaction() as s:
        return {
            name: person(s, f"{name}@example.com", opted_in=("offers",)).public_id
            for name in ("ann", "bob", "cat")
        }


def test_a_real_receiver_gets_signed_events_in_order_with_public_ids_only(
    app, client, admin_key, ops_key, db, receiver
):
    hook = register(client, admin_key, receiver, ALL)
    ids = _people(db)
    consents = f"/api/v1/subscribers/{ids['ann']}/consents"
    for action in ("opt_out", "opt_in", "opt_out"):
        reply = client.post(
            consents,
            json={"topic": "offers", "action": action, "source": "api"},
            headers=bearer(ops_key),
        )
        assert reply.status_code == 201, reply.get_json()
    with db.transaction() as s:  # the one-click path (Core, on the cursor)
        links.opt_out(s, ids["bob"], "offers", evidence("one_click"))
    assert (
        client.delete(f"/api/v1/subscribers/{ids['cat']}", headers=bearer(ops_key)).status_code
        == 204
    )
    events = {"events": [{"type": "bounce", "bounce": "hard", "email": "dan@example.net"}]}
    assert (
        client.post("/api/v1/events/bounces", json=events, headers=bearer(ops_key)).status_code
        == 202
    )

    summary = Worker(app).run_due()
    got = receiver.received()
    assert summary.webhooks == len(got) > 0
    assert all(r["verified"] and r["status"] == 200 for r in got)
    by_type = [(r["event"]["type"], r["event"]["data"].get("subscriber")) for r in got]
    ann = [
        r["event"]["data"]["state"]
        for r in got
        if r["event"]["data"].get("subscriber") == ids["ann"]
    ]
    # Registered (opted in), then the three changes: in the order they happened.
    assert ann == ["opted_in", "opted_out", "opted_in", "opted_out"], "in order for the person"
    assert ("subscription.changed", ids["bob"]) in by_type
    assert ("subscriber.erased", ids["cat"]) in by_type
    assert ("delivery.bounced", None) in by_type
    raw = str([r["event"] for r in got])
    assert "@example" not in raw and all("email" not in r["event"]["data"] for r in got)
    assert len({r["event"]["id"] for r in got}) == len(got)
    with db.session(read_only=True) as s:
        statuses = set(s.scalars(select(WebhookDelivery.status)))
    assert statuses == {WebhookDeliveryStatus.DELIVERED}
    assert hook["id"]


def test_include_email_endpoints_get_the_address_but_never_an_erased_ones(
    app, client, admin_key, ops_key, db, receiver
):
    ids = _people(db)
    register(client, admin_key, receiver, ALL, include_email=True)
    with db.transaction() as s:
        links.opt_out(s, ids["ann"], "offers", evidence("one_click"))
    assert (
        client.delete(f"/api/v1/subscribers/{ids['cat']}", headers=bearer(ops_key)).status_code
        == 204
    )
    sender(app).drain()
    got = {r["event"]["type"]: r["event"]["data"] for r in receiver.received()}
    assert got["subscription.changed"]["email"] == "ann@example.com"
    assert "email" not in got["subscriber.erased"]


def test_a_failing_event_holds_back_only_that_persons_later_events(
    app, client, admin_key, db, receiver
):
    """The receiver answers 500 to each event's first two tries. Ann's second event waits
    until her first is delivered; Bob's goes on its own. Retries follow the backoff."""
    ids = _people(db)
    register(client, admin_key, receiver, ["subscription.changed"])
    receiver.set("mode", "fail-first 2")
    with db.transaction() as s:
        links.opt_out(s, ids["ann"], "offers", evidence("one_click"))
    with db.transaction() as s:
        ann = s.scalar(select(Subscriber).where(Subscriber.public_id == ids["ann"]))
        consent.opt_in(s, ann, get_topic(s, "offers"), evidence())
        links.opt_out(s, ids["bob"], "offers", evidence("one_click"))
    hooks = sender(app)
    deadline = time.monotonic() + 60
    while len([r for r in receiver.received() if r["status"] == 200]) < 3:
        assert time.monotonic() < deadline
        hooks.run_once()
        time.sleep(0.5)
    log = [
        (r["event"]["data"]["subscriber"], r["event"]["data"]["state"], r["status"])
        for r in receiver.received()
    ]
    ann_log = [(state, status) for who, state, status in log if who == ids["ann"]]
    assert (
        ann_log
        == [
            ("opted_out", 500),
            ("opted_out", 500),
            ("opted_out", 200),
            ("opted_in", 500),
            ("opted_in", 500),
            ("opted_in", 200),
        ][: len(ann_log)]
    )
    first_ok = ann_log.index(("opted_out", 200))
    assert all(state == "opted_out" for state, _ in ann_log[: first_ok + 1])
    assert any(who == ids["bob"] and status == 200 for who, _, status in log)


def test_a_receiver_failing_for_24_hours_is_marked_failed_then_replayed(
    app, client, admin_key, db, receiver
):
    ids = _people(db)
    register(client, admin_key, receiver, ["subscription.changed"])
    receiver.set("mode", "500")
    start = clock.freeze()
    with db.transaction() as s:
        links.opt_out(s, ids["ann"], "offers", evidence("one_click"))
    hooks = sender(app)
    tries = 0
    for _ in range(200):
        tries += hooks.run_once()
        with db.session(read_only=True) as s:
            row = s.scalar(select(WebhookDelivery))
        if row.status != WebhookDeliveryStatus.PENDING:
            break
        assert row.next_attempt_at > clock.now(), "a failure waits for its backoff"
        clock.advance(row.next_attempt_at - clock.now() + timedelta(seconds=1))
    assert row.status == WebhookDeliveryStatus.FAILED
    assert clock.now() - start >= timedelta(hours=24) and tries == row.attempts
    assert 5 < tries < 200, "backoff, not a try every second"
    assert row.last_status in (401, 500)
    # Replayed (the dashboard's button): a fresh window, sent again.
    clock.unfreeze()
    receiver.set("mode", "ok")
    with db.transaction() as s:
        webhooks.replay(s, s.get(WebhookDelivery, row.id), "user:1")
    assert hooks.run_once() == 1
    with db.session(read_only=True) as s:
        assert s.get(WebhookDelivery, row.id).status == WebhookDeliveryStatus.DELIVERED


def test_a_hanging_receiver_does_not_hold_back_another_endpoint(
    app, client, admin_key, db, receiver, second_receiver
):
    """One receiver never answers (timeout 1 s); the other gets every event in the same
    round, and the hanging one's deliveries wait for their retry."""
    ids = _people(db)
    register(client, admin_key, receiver, ["subscription.changed"])
    register(client, admin_key, second_receiver, ["subscription.changed"])
    receiver.set("mode", "hang")
    for name in ("ann", "bob", "cat"):
        with db.transaction() as s:
            links.opt_out(s, ids[name], "offers", evidence("one_click"))
    started = time.monotonic()
    sender(app).run_once()
    assert time.monotonic() - started < 10
    assert len(second_receiver.received()) == 3
    with db.session(read_only=True) as s:
        hanging = s.scalars(
            select(WebhookDelivery).where(WebhookDelivery.status == WebhookDeliveryStatus.PENDING)
        ).all()
    assert len(hanging) == 3
    tried = [d for d in hanging if d.attempts]
    assert len(tried) == 1 and "no answer" in tried[0].last_error
    assert all(d.lease_owner is None for d in hanging), "the untried ones were given back"


@pytest.mark.slow
def test_the_worker_process_sends_webhooks_from_its_own_thread(
    app, client, admin_key, db, database_url, tmp_path, receiver, second_receiver
):
    """`flask mailprefs worker` delivers events while it runs; one receiver hangs and
    the other still gets its events; SIGTERM stops it cleanly."""
    import signal

    from tests.support import processes

    ids = _people(db)
    register(client, admin_key, receiver, ["subscription.changed"])
    register(client, admin_key, second_receiver, ["subscription.changed"])
    receiver.set("mode", "hang")
    env = processes.environment(
        database_url,
        tmp_path,
        MAILPREFS_WORKER_IDLE_SECONDS="0.2",
        MAILPREFS_WEBHOOK_TIMEOUT_SECONDS="1",
    )
    worker = processes.start(["mailprefs", "worker"], env, tmp_path / "worker.log")
    try:
        for name in ("ann", "bob"):
            with db.transaction() as s:
                links.opt_out(s, ids[name], "offers", evidence("one_click"))
        deadline = time.monotonic() + 60
        while len(second_receiver.received()) < 2:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    assert all(r["verified"] for r in second_receiver.received())


def test_the_guard_pausing_a_campaign_sends_campaign_paused_with_its_reason(
    app, client, admin_key, ops_key, db, receiver
):
    """A campaign paused by the reputation guard: `campaign.paused` (reason and figures),
    and the complaints behind it as `complaint.received`, naming the campaign."""
    from tests.reputation.support import LIMITS, complaint, report, start_campaign

    app.config.update(LIMITS)
    addresses = [f"p{i:02d}@example.com" for i in range(30)]
    campaign_id = start_campaign(db, addresses)
    Worker(app).run_due()
    register(client, admin_key, receiver, ["campaign.paused", "complaint.received"])
    with db.transaction() as s:
        from mailprefs.domain.outbox_models import Campaign, CampaignStatus

        row = s.get(Campaign, campaign_id)
        row.status = CampaignStatus.SENDING  # as if more were still to come
        public_id = row.public_id
    assert report(client, ops_key, [complaint(a) for a in addresses[:3]]).status_code == 202
    sender(app).drain()
    got = [r["event"] for r in receiver.received()]
    paused = [e for e in got if e["type"] == "campaign.paused"]
    assert len(paused) == 1 and paused[0]["data"]["campaign"] == public_id
    assert paused[0]["data"]["reason"] == "complaint_rate"
    assert paused[0]["data"]["figures"]["complaints"] == 3
    complaints = [e for e in got if e["type"] == "complaint.received"]
    assert len(complaints) == 3 and {e["data"]["campaign"] for e in complaints} == {public_id}
