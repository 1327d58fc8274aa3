"""The reputation guard: complaint and hard-bounce rates pause a campaign that is sending,
audited, and ops resume it only with a written note."""

from __future__ import annotations

import pytest

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import campaigns, reputation
from mailprefs.domain.outbox_models import CampaignStatus, DeliveryStatus
from tests.conftest import bearer
from tests.dashboard.conftest import login, post_form
from tests.reputation.support import (
    LIMITS,
    audit_of,
    campaign,
    complaint,
    count_status,
    hard_bounce,
    report,
    sent_to,
    start_campaign,
)


@pytest.fixture
def app_config(relay_config):
    return {**relay_config, **LIMITS}


def test_rates_are_hard_bounces_and_complaints_over_delivered(app, client, db, ops_key):
    """40 delivered; 2 complaints and 3 hard bounces reported by address (JSON events name
    no message: they count toward the last message sent to the address): 5% and 7.5%."""
    addresses = [f"r{i:02d}@example.com" for i in range(40)]
    campaign_id = start_campaign(db, addresses)
    Worker(app).run_due()
    reply = report(
        client,
        ops_key,
        [complaint(addresses[0]), complaint(addresses[1])]
        + [hard_bounce(a) for a in addresses[2:5]],
    )
    assert reply.status_code == 202, reply.get_json()
    with db.session(read_only=True) as s:
        rates = reputation.campaign_rates(s, campaign_id)
    assert (rates.delivered, rates.complaints, rates.hard_bounces) == (40, 2, 3)
    assert rates.complaint_rate == 0.05 and rates.bounce_rate == 0.075
    public_id = campaign(db, campaign_id).public_id
    stats = client.get(f"/api/v1/campaigns/{public_id}", headers=bearer(ops_key)).get_json()
    assert stats["stats"]["complaints"] == 2 and stats["stats"]["bounce_rate"] == 0.075
    assert stats["stats"]["stream"]["kind"] == "marketing"
    assert stats["stats"]["stream"]["delivered"] == 40
    assert stats["stats"]["limits"] == {
        "complaint_rate": 0.05,
        "bounce_rate": 0.1,
        "min_sample": 20,
    }


def test_complaints_arriving_while_the_worker_sends_pause_the_campaign(app, client, db, ops_key):
    """60 people, batches of 10. After the worker's 25th message, 3 recipients complain
    through the HTTP endpoint (12% > 5%, over the 20-message sample): the campaign is
    paused at once with reason complaint_rate, audited, and the worker sends nothing
    more of it; the rest stays queued."""
    from mailprefs.delivery.transport import SMTPTransport

    addresses = [f"c{i:02d}@example.com" for i in range(60)]
    campaign_id = start_campaign(db, addresses)
    public_id = campaign(db, campaign_id).public_id

    class ComplainAfter25(SMTPTransport):
        sent = 0

        def send(self, decision, message):
            super().send(decision, message)
            ComplainAfter25.sent += 1
            if ComplainAfter25.sent == 25:
                reply = report(client, ops_key, [complaint(a) for a in addresses[:3]])
                assert reply.status_code == 202

    app.config["MAILPREFS_BATCH_SIZE"] = 10
    summary = Worker(app, transport=ComplainAfter25(app.config)).run_due()
    row = campaign(db, campaign_id)
    assert row.status == CampaignStatus.PAUSED and row.pause_reason == "complaint_rate"
    # The 25th message was on the wire when the pause came; none after it.
    assert summary.sent == 25 and len(sent_to(db, campaign_id)) == 25
    assert count_status(db, campaign_id, DeliveryStatus.QUEUED) == 35
    # The guard judged what was recorded then: the 25th was on the wire, not yet marked.
    assert row.pause_detail["complaints"] == 3 and row.pause_detail["delivered"] == 24
    (entry,) = [e for e in audit_of(db, public_id) if e.action == "campaign.pause"]
    assert entry.actor == reputation.GUARD_ACTOR and entry.detail["reason"] == "complaint_rate"
    shown = client.get(f"/api/v1/campaigns/{public_id}", headers=bearer(ops_key)).get_json()
    assert shown["status"] == "paused" and shown["pause_reason"] == "complaint_rate"


def test_relay_refusals_are_hard_bounces_that_pause_with_bounce_rate(app, db):
    """A stale list: every third address is refused by the relay (550). Once 20 are
    delivered (refusals included), 33% > 10%: the worker's own check pauses the campaign
    with bounce_rate, and it stops short of the end."""
    addresses = [
        f"reject550.s{i:03d}@example.com" if i % 3 == 0 else f"s{i:03d}@example.com"
        for i in range(90)
    ]
    campaign_id = start_campaign(db, addresses)
    app.config["MAILPREFS_BATCH_SIZE"] = 10
    Worker(app).run_due()
    row = campaign(db, campaign_id)
    assert row.status == CampaignStatus.PAUSED and row.pause_reason == "bounce_rate"
    assert row.pause_detail["delivered"] >= 20
    assert count_status(db, campaign_id, DeliveryStatus.QUEUED) > 0


def test_below_the_minimum_sample_nothing_pauses(app, client, db, ops_key):
    """10 delivered, 5 complaints (50%): under the 20-message sample, the guard waits."""
    addresses = [f"m{i:02d}@example.com" for i in range(10)]
    campaign_id = start_campaign(db, addresses)
    Worker(app).run_due()
    with db.transaction() as s:
        row = s.get(type(campaign(db, campaign_id)), campaign_id)
        row.status = CampaignStatus.SENDING  # as if more were still to come
    report(client, ops_key, [complaint(a) for a in addresses[:5]])
    assert campaign(db, campaign_id).status == CampaignStatus.SENDING


def _paused_by_guard(app, client, db, ops_key, n=30) -> tuple[int, str]:
    addresses = [f"g{i:02d}@example.com" for i in range(n)]
    campaign_id = start_campaign(db, addresses)
    Worker(app).run_due()
    with db.transaction() as s:
        row = s.get(type(campaign(db, campaign_id)), campaign_id)
        row.status = CampaignStatus.SENDING
    assert report(client, ops_key, [complaint(a) for a in addresses[:3]]).status_code == 202
    row = campaign(db, campaign_id)
    assert row.pause_reason == "complaint_rate"
    return campaign_id, row.public_id


def test_api_resume_of_a_guard_pause_needs_the_dashboard_note(app, client, db, ops_key):
    """The API's resume (no body) is refused with 422 naming `note`; nothing changes."""
    campaign_id, public_id = _paused_by_guard(app, client, db, ops_key)
    reply = client.post(f"/api/v1/campaigns/{public_id}/resume", headers=bearer(ops_key))
    assert reply.status_code == 422
    assert reply.get_json()["errors"][0]["field"] == "note"
    assert campaign(db, campaign_id).status == CampaignStatus.PAUSED


def test_ops_resume_with_a_written_note_audited_and_the_guard_judges_afresh(
    app, client, db, ops_key
):
    """Dashboard: a banner on every page; resume without a note is refused with a
    message; with one the campaign runs again, the note is in the audit log, and the
    complaints it overruled do not pause it again."""
    from mailprefs.domain import users

    campaign_id, public_id = _paused_by_guard(app, client, db, ops_key)
    with db.transaction() as s:
        users.create(s, "ops@example.com", "ops", "ops-password-123")
    ops = app.test_client()
    assert login(ops, "ops@example.com", "ops-password-123").status_code == 302
    page = ops.get("/dashboard/suppressions").get_data(as_text=True)
    assert f'data-guard="{public_id}"' in page and "Paused by the reputation guard" in page
    path = f"/dashboard/campaigns/{public_id}"
    shown = ops.get(path).get_data(as_text=True)
    assert 'name="note"' in shown and "complaint_rate" in shown

    refused = post_form(ops, f"{path}/resume", {"note": "  "}, token_from=path)
    assert refused.status_code == 302
    assert "write what was checked" in ops.get(path).get_data(as_text=True)
    assert campaign(db, campaign_id).status == CampaignStatus.PAUSED

    note = "List source checked: the 3 complaints came from an old import, removed."
    done = post_form(ops, f"{path}/resume", {"note": note}, token_from=path)
    assert done.status_code == 302
    row = campaign(db, campaign_id)
    assert row.status == CampaignStatus.SENDING and row.pause_reason is None
    assert row.rates_baseline == {"delivered": 30, "hard_bounces": 0, "complaints": 3}
    (entry,) = [e for e in audit_of(db, public_id) if e.action == "campaign.resume"]
    assert entry.detail == {"note": note, "was": "complaint_rate"}
    assert f'data-guard="{public_id}"' not in ops.get("/dashboard/campaigns").get_data(True)
    with db.transaction() as s:
        assert (
            reputation.check_campaigns(s, [campaign_id], reputation.Limits.from_config(app.config))
            == []
        )


def test_manual_pause_resumes_without_a_note(app, db):
    addresses = ["x@example.com"]
    campaign_id = start_campaign(db, addresses)
    with db.transaction() as s:
        row = s.get(type(campaign(db, campaign_id)), campaign_id)
        campaigns.pause(s, row, "test")
        assert row.pause_reason == "manual"
        campaigns.resume(s, row, "test")
        assert row.status == CampaignStatus.SCHEDULED and row.pause_reason is None


POOL = 4  # the worker's SMTP connections
# The worker process's settings (environment values are text): the guard's limits, small
# batches, a short idle wait, the pool.
WORKER_PROCESS = {
    **LIMITS,
    "MAILPREFS_BATCH_SIZE": 10,
    "MAILPREFS_WORKER_IDLE_SECONDS": 0.2,
    "MAILPREFS_SMTP_CONNECTIONS": POOL,
}


@pytest.mark.slow
def test_a_real_worker_process_stops_when_complaints_pause_its_campaign(
    db, database_url, tmp_path, client, ops_key
):
    """`flask mailprefs worker` sends 80 messages to an SMTP server process that takes
    20 ms for each. Once 25 are out, 3 recipients complain through the HTTP endpoint: the
    campaign is paused, and the worker process sends at most the messages it had in hand
    (one per connection of its pool).
    Resumed with a note, it finishes: everyone mailed exactly once."""
    import signal

    from tests.support import processes
    from tests.support.processes import wait_until
    from tests.support.smtp_sink import read_maildir, start_sink_process, stop_sink_process

    maildir = tmp_path / "received"
    sink, port = start_sink_process(maildir)
    addresses = [f"slow20.w{i:02d}@example.com" for i in range(80)]
    campaign_id = start_campaign(db, addresses)
    with db.transaction() as s:  # the scheduler's part: the worker only sends
        campaigns.fire_due(s, clock.now())
    settings = {name: str(value) for name, value in WORKER_PROCESS.items()}
    env = processes.environment(database_url, tmp_path, smtp_port=port, **settings)
    worker = processes.start(["mailprefs", "worker"], env, tmp_path / "worker.log")
    try:
        assert wait_until(lambda: len(sent_to(db, campaign_id)) >= 25, timeout=60)
        reply = report(client, ops_key, [complaint(a) for a in sent_to(db, campaign_id)[:3]])
        assert reply.status_code == 202
        # The pause is committed: what the relay had received by now, plus at most one
        # message per connection of the pool (the one each had on the wire, or had just
        # been cleared by a gate asked a moment before the pause), is all that leaves.
        # Counted at the relay, not in the outbox: a message the relay already took may
        # have its mark committed a moment after the pause.
        at_pause = len(read_maildir(maildir))
        row = campaign(db, campaign_id)
        assert row.status == CampaignStatus.PAUSED and row.pause_reason == "complaint_rate"
        # The worker notices at its next message; give it time to send more if it would.
        assert wait_until(lambda: count_status(db, campaign_id, DeliveryStatus.QUEUED) > 0, 30)
        import time

        time.sleep(1.5)
        # What the relay took is all recorded (the last answers may still be on their way).
        assert wait_until(
            lambda: len(read_maildir(maildir)) == len(sent_to(db, campaign_id)), timeout=30
        )
        after = len(sent_to(db, campaign_id))
        assert after <= at_pause + POOL, "at most the messages on the wire left after the pause"

        with db.transaction() as s:
            paused = s.get(type(row), campaign_id)
            campaigns.resume(s, paused, "user:1", note="checked the list: one old segment")
        assert wait_until(
            lambda: campaign(db, campaign_id).status == CampaignStatus.SENT, timeout=120
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        stop_sink_process(sink)
    got = [str(m["To"]) for m in read_maildir(maildir)]
    assert sorted(got) == sorted(addresses), "everyone once, nobody twice"


def test_the_chart_ends_at_the_campaigns_own_rates(app, client, db, ops_key):
    """The chart's last point is the campaign's cumulative rates, as the stats say."""
    from mailprefs.web.dashboard.reputation import rates_over_time

    addresses = [f"h{i:02d}@example.com" for i in range(20)]
    campaign_id = start_campaign(db, addresses)
    Worker(app).run_due()
    report(client, ops_key, [complaint(addresses[0]), hard_bounce(addresses[1])])
    with db.session(read_only=True) as s:
        row = s.get(type(campaign(db, campaign_id)), campaign_id)
        series = rates_over_time(s, row)
        rates = reputation.campaign_rates(s, campaign_id)
    label, delivered, bounce_rate, complaint_rate = series["points"][-1]
    assert delivered == rates.delivered == 20
    assert (
        (bounce_rate, complaint_rate) == (rates.bounce_rate, rates.complaint_rate) == (0.05, 0.05)
    )


def test_the_jobs_page_resume_of_a_guard_pause_is_refused_with_a_message(app, client, db, ops_key):
    """The Jobs page has no note field: its Resume explains where to resume instead of
    failing, and the campaign stays paused."""
    from mailprefs.domain import users

    campaign_id, public_id = _paused_by_guard(app, client, db, ops_key)
    with db.transaction() as s:
        users.create(s, "ops@example.com", "ops", "ops-password-123")
    ops = app.test_client()
    assert login(ops, "ops@example.com", "ops-password-123").status_code == 302
    reply = post_form(
        ops, f"/dashboard/jobs/campaign:{public_id}/resume", token_from="/dashboard/jobs"
    )
    assert reply.status_code == 302
    assert "write what was checked" in ops.get("/dashboard/jobs").get_data(as_text=True)
    assert campaign(db, campaign_id).status == CampaignStatus.PAUSED
