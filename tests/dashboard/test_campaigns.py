"""Campaigns and policy broadcasts on the dashboard: list with next run, progress JSON and
the sends chart, and pause / resume / cancel / run now through the domain (audited)."""

from __future__ import annotations

from sqlalchemy import select

from mailprefs.delivery.worker import Worker
from mailprefs.domain.models import AuditEntry
from mailprefs.domain.outbox_models import Campaign, CampaignKind
from tests.dashboard.conftest import post_form
from tests.dashboard.helpers import campaign, people


def status_of(db, public_id):
    with db.session(read_only=True) as s:
        return s.scalar(select(Campaign.status).where(Campaign.public_id == public_id)).value


def test_the_list_shows_campaigns_and_broadcasts_with_status_and_next_run(ops_client, db):
    """Promise: scheduled campaigns and policy broadcasts are listed with their next run."""
    offers = campaign(db, subject="Winter offers")
    notice = campaign(db, subject="Policy change notice", topic="policy", kind=CampaignKind.POLICY)
    campaign(db, subject="A password reset", topic="account", kind=CampaignKind.TRANSACTIONAL)
    page = ops_client.get("/dashboard/campaigns").get_data(as_text=True)
    assert "Winter offers" in page and "Policy change notice" in page
    assert "A password reset" not in page  # single messages are not campaigns
    assert f'data-campaign="{offers}"' in page and f'data-campaign="{notice}"' in page
    assert "<time datetime=" in page and "scheduled" in page
    only = ops_client.get("/dashboard/campaigns?kind=policy").get_data(as_text=True)
    assert "Policy change notice" in only and "Winter offers" not in only


def control(client, public_id, action):
    return post_form(
        client,
        f"/dashboard/campaigns/{public_id}/{action}",
        token_from=f"/dashboard/campaigns/{public_id}",
        follow_redirects=True,
    )


def test_pause_resume_cancel_act_through_the_domain_and_are_audited(ops_client, db, staff):
    """Promise: the controls move the status as the API does and write audit entries
    naming the logged-in user."""
    public_id = campaign(db)
    assert status_of(db, public_id) == "scheduled"
    control(ops_client, public_id, "pause")
    assert status_of(db, public_id) == "paused"
    control(ops_client, public_id, "resume")
    assert status_of(db, public_id) == "scheduled"
    control(ops_client, public_id, "cancel")
    assert status_of(db, public_id) == "cancelled"
    with db.session(read_only=True) as s:
        entries = s.execute(
            select(
                AuditEntry.actor, AuditEntry.action, AuditEntry.target_id, AuditEntry.ip
            ).order_by(AuditEntry.id)
        ).all()
    mine = [(a, act, ip) for a, act, t, ip in entries if t == public_id]
    actor = f"user:{staff['ops']}"
    # The domain records these; the IP comes from the request being served.
    assert mine == [
        (actor, "campaign.pause", "127.0.0.1"),
        (actor, "campaign.resume", "127.0.0.1"),
        (actor, "campaign.cancel", "127.0.0.1"),
    ]


def test_a_control_the_status_does_not_allow_changes_nothing_and_says_why(ops_client, db):
    """Promise: resuming a scheduled (not paused) campaign is refused with a message in
    words (the status it has now), not the state machine's."""
    public_id = campaign(db)
    page = control(ops_client, public_id, "resume").get_data(as_text=True)
    assert "The campaign is scheduled now, so it cannot be resumed" in page
    assert "cannot become" not in page
    assert status_of(db, public_id) == "scheduled"
    assert ops_client.post(f"/dashboard/campaigns/{public_id}/explode").status_code in (400, 404)


def test_run_now_schedules_a_scheduled_campaign_for_now_and_the_worker_sends_it(
    app, ops_client, db
):
    """Promise: run now = schedule(send_at=now); the next worker pass sends it, and the
    progress JSON and chart then count every message."""
    with db.transaction() as s:
        people(s, 3)
    public_id = campaign(db, in_minutes=24 * 60)
    Worker(app).run_due()
    assert status_of(db, public_id) == "scheduled"  # not due yet
    control(ops_client, public_id, "run-now")
    Worker(app).run_due()
    assert status_of(db, public_id) == "sent"
    data = ops_client.get(f"/dashboard/campaigns/{public_id}/progress.json").json
    assert data["status"] == "sent" and data["final"] is True
    assert data["stats"]["planned"] == data["stats"]["sent"] == 3
    assert data["percent"]["sent"] == 100.0 and data["percent"]["pending"] == 0.0
    assert sum(n for _, n in data["series"]["points"]) == 3
    assert data["series"]["unit"] == "minute"
    with db.session(read_only=True) as s:
        assert "campaign.schedule" in s.scalars(select(AuditEntry.action)).all()
    page = ops_client.get(f"/dashboard/campaigns/{public_id}").get_data(as_text=True)
    assert '<rect class="sent"' in page  # the chart, drawn without JavaScript too


def test_run_now_is_refused_for_a_campaign_that_is_not_scheduled(ops_client, db):
    """Promise: run now never starts a draft (only a scheduled campaign)."""
    public_id = campaign(db, in_minutes=None)
    page = control(ops_client, public_id, "run-now").get_data(as_text=True)
    assert "only a scheduled campaign" in page
    assert status_of(db, public_id) == "draft"


def test_progress_json_reports_blocked_by_reason(app, ops_client, db):
    """Promise: the list's progress JSON counts blocked deliveries by the gate's reason."""
    from mailprefs.domain import consent
    from mailprefs.domain.consent import Evidence
    from mailprefs.domain.topics import get_topic

    with db.transaction() as s:
        _keep, leave = people(s, 2)
        consent.opt_out(s, leave, get_topic(s, "offers"), Evidence(source="api"))
    public_id = campaign(db)
    control(ops_client, public_id, "run-now")
    Worker(app).run_due()
    data = ops_client.get(f"/dashboard/campaigns/progress.json?id={public_id}&id=nope").json
    assert list(data) == [public_id]
    stats = data[public_id]["stats"]
    assert stats["sent"] == 1 and stats["blocked"] == {"opted_out": 1}
    assert data[public_id]["blocked_total"] == 1 and data[public_id]["percent"]["blocked"] == 50.0


def test_the_detail_page_polls_its_json_and_works_without_script(ops_client, db):
    """Promise: progress is in the HTML (static without JS) and the page names the JSON
    it polls; the script is our own file, not from the internet."""
    public_id = campaign(db)
    page = ops_client.get(f"/dashboard/campaigns/{public_id}").get_data(as_text=True)
    assert f'data-progress="/dashboard/campaigns/{public_id}/progress.json"' in page
    assert 'src="/static/dashboard/dashboard.js"' in page
    assert (
        "http://" not in page.replace("http://www.w3.org", "")
        and "https://" not in page.split("<main")[0]
    )
    assert "Next run" in page and "Run now" in page and "Pause" in page


def test_an_unknown_campaign_is_a_404(ops_client):
    """Promise: no page for a campaign that does not exist."""
    assert ops_client.get("/dashboard/campaigns/nope").status_code == 404
    assert ops_client.get("/dashboard/campaigns/nope/progress.json").status_code == 404
