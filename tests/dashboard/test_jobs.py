"""The Jobs page: every scheduled campaign, policy notice and recurring job with its next
run and what it will do; pause, resume, cancel and run now through
`mailprefs.scheduling.view`, each audited once under the logged-in user."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain import policies
from mailprefs.domain.models import AuditEntry
from mailprefs.domain.outbox_models import Campaign, PolicyVersion
from mailprefs.scheduling import view
from mailprefs.scheduling.service import SchedulerService
from tests.dashboard.conftest import post_form
from tests.dashboard.helpers import campaign

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def notice(db, version="2026-05", in_hours=2) -> str:
    """A policy notice scheduled `in_hours` from now; returns the campaign's public id."""
    announce_at = clock.now() + timedelta(hours=in_hours)
    with db.transaction() as s:
        policy = policies.announce(
            s,
            policies.Announcement(
                version=version,
                title="Shorter retention",
                summary="We keep logs for 30 days.",
                url="https://example.test/p",
                effective_at=announce_at + timedelta(days=31),
                announce_at=announce_at,
            ),
            policies.NoticeSettings(30, "Org", "privacy@example.test"),
            "test",
        )
        return policy.campaign.public_id


def start_scheduler_once(app) -> None:
    """What a scheduler stores when it first leads: the recurring jobs and their runs."""
    service = SchedulerService(app, holder="test")
    service.step()
    service.shutdown()


def status_of(db, public_id) -> str:
    with db.session(read_only=True) as s:
        return s.scalar(select(Campaign.status).where(Campaign.public_id == public_id)).value


def row(page: str, job_id: str) -> str:
    """The table row of one job."""
    match = re.search(rf'<tr id="job-{re.escape(job_id)}".*?</tr>', page, re.S)
    assert match, f"no row for {job_id}"
    return match.group(0)


def buttons(page: str, job_id: str) -> list[str]:
    return re.findall(r'/dashboard/jobs/[^"]+/([a-z-]+)"', row(page, job_id))


def act(client, job_id: str, action: str):
    return post_form(client, f"/dashboard/jobs/{job_id}/{action}", token_from="/dashboard/jobs")


def audit_entries(db, target: str) -> list[tuple[str, str]]:
    with db.session(read_only=True) as s:
        return s.execute(
            select(AuditEntry.actor, AuditEntry.action)
            .where(AuditEntry.target_id == target)
            .order_by(AuditEntry.id)
        ).all()


def test_jobs_page_lists_recurring_jobs_campaigns_and_notices_with_next_run(app, ops_client, db):
    """Promise: the page lists every scheduled campaign and policy notice with its kind,
    state, next run and what it will do, linked to its progress page, and every recurring
    job with its next run once a scheduler has stored it."""
    clock.freeze(T0)
    offers = campaign(db, subject="Winter offers", in_minutes=90)
    notice_id = notice(db)
    start_scheduler_once(app)
    page = ops_client.get("/dashboard/jobs").get_data(as_text=True)

    offers_row = row(page, f"campaign:{offers}")
    assert "Winter offers" in offers_row and "campaign" in offers_row
    assert f'href="/dashboard/campaigns/{offers}"' in offers_row
    assert f'datetime="{(T0 + timedelta(minutes=90)).isoformat()}"' in offers_row
    assert "Campaign on topic offers" in offers_row and ">scheduled<" in offers_row

    notice_row = row(page, "policy:2026-05")
    assert "policy notice" in notice_row and "Shorter retention" in notice_row
    assert f'href="/dashboard/campaigns/{notice_id}"' in notice_row
    assert f'datetime="{(T0 + timedelta(hours=2)).isoformat()}"' in notice_row
    assert "Notice of a policy change to every registered person" in notice_row
    # Soonest first, as the scheduler will fire them.
    assert page.index(f"job-campaign:{offers}") < page.index("job-policy:2026-05")

    expected = {"fire-due", "policy-broadcasts", "housekeeping"}
    if db.engine.dialect.name == "postgresql":
        expected.add("compact-erasures")
    for job_id in expected:
        recurring = row(page, job_id)
        assert "recurring" in recurring and ">scheduled<" in recurring
        assert "<time datetime=" in recurring, job_id
    assert "No scheduler has run yet" not in page
    # The navigation links the page now that it exists.
    assert '<a href="/dashboard/jobs" aria-current="page">Jobs</a>' in page


def test_before_any_scheduler_ran_recurring_jobs_show_not_started_without_controls(ops_client, db):
    """Promise: until a scheduler has run, the page says so and offers no recurring
    control that would fail (the view cannot change a job the store does not hold)."""
    page = ops_client.get("/dashboard/jobs").get_data(as_text=True)
    assert "No scheduler has run yet" in page
    housekeeping = row(page, "housekeeping")
    assert "not started" in housekeeping and buttons(page, "housekeeping") == []


def test_controls_match_each_job_kind_and_state(app, admin_client, db):
    """Promise: controls only where they make sense: a scheduled campaign can run now,
    pause or cancel; a paused one resume or cancel; a recurring job never cancel; a job
    that is already due offers no run now and is marked now or overdue."""
    clock.freeze(T0)
    later = campaign(db, subject="Later", in_minutes=120)
    held = campaign(db, subject="Held", in_minutes=120)
    due = campaign(db, subject="Due", in_minutes=1)
    late = campaign(db, subject="Late", in_minutes=1)
    start_scheduler_once(app)
    view.pause_job(app, f"campaign:{held}", "test")
    view.pause_job(app, "housekeeping", "test")
    clock.advance(timedelta(minutes=1, seconds=10))
    page = admin_client.get("/dashboard/jobs").get_data(as_text=True)
    assert buttons(page, f"campaign:{later}") == ["run-now", "pause", "cancel"]
    assert buttons(page, f"campaign:{held}") == ["resume", "cancel"]
    assert "none while paused" in row(page, f"campaign:{held}")
    assert buttons(page, f"campaign:{due}") == ["pause", "cancel"]
    assert 'class="due due-now"' in row(page, f"campaign:{due}")
    assert buttons(page, "fire-due") == ["run-now", "pause"]
    assert buttons(page, "housekeeping") == ["resume"]
    clock.advance(timedelta(minutes=10))
    page = admin_client.get("/dashboard/jobs").get_data(as_text=True)
    assert 'class="due due-overdue"' in row(page, f"campaign:{late}")
    assert "Some jobs are overdue" in page


def test_pause_resume_run_now_cancel_a_campaign_are_audited_once_each(app, ops_client, db, staff):
    """Promise: the controls act on a campaign as the API does (same state machine) and
    each writes exactly one audit entry naming the logged-in user (the view records it;
    the page adds no second one)."""
    clock.freeze(T0)
    public_id = campaign(db, in_minutes=24 * 60)
    job = f"campaign:{public_id}"
    reply = act(ops_client, job, "pause")
    assert reply.status_code == 302 and reply.headers["Location"].startswith("/dashboard/jobs")
    assert status_of(db, public_id) == "paused"
    act(ops_client, job, "resume")
    assert status_of(db, public_id) == "scheduled"
    act(ops_client, job, "run-now")
    with db.session(read_only=True) as s:
        row_ = s.scalar(select(Campaign).where(Campaign.public_id == public_id))
        assert row_.status.value == "scheduled" and row_.send_at == T0
    page = ops_client.get("/dashboard/jobs").get_data(as_text=True)
    assert "Run now: November offers starts within a few seconds." in page
    act(ops_client, job, "cancel")
    assert status_of(db, public_id) == "cancelled"
    user = f"user:{staff['ops']}"
    assert audit_entries(db, public_id) == [
        (user, "campaign.pause"),
        (user, "campaign.resume"),
        (user, "campaign.schedule"),
        (user, "campaign.cancel"),
    ]
    # Gone from the list once cancelled.
    assert f"job-{job}" not in ops_client.get("/dashboard/jobs").get_data(as_text=True)


def test_a_policy_notice_is_paused_resumed_and_started_now_from_the_jobs_page(
    app, ops_client, db, staff
):
    """Promise: a notice's controls act on its broadcast; run now moves the announcement
    earlier (the notice period only grows) and is audited under the user."""
    clock.freeze(T0)
    public_id = notice(db, in_hours=48)
    act(ops_client, "policy:2026-05", "pause")
    assert status_of(db, public_id) == "paused"
    act(ops_client, "policy:2026-05", "resume")
    assert status_of(db, public_id) == "scheduled"
    act(ops_client, "policy:2026-05", "run-now")
    with db.session(read_only=True) as s:
        policy = s.scalar(select(PolicyVersion).where(PolicyVersion.version == "2026-05"))
        assert policy.announce_at == T0 and policy.campaign.send_at == T0
    user = f"user:{staff['ops']}"
    assert [a for a in audit_entries(db, public_id) if a[0] == user] == [
        (user, "campaign.pause"),
        (user, "campaign.resume"),
        (user, "campaign.schedule"),
    ]


def test_an_admin_pauses_resumes_and_runs_a_recurring_job_each_audited_once(
    app, admin_client, db, staff
):
    """Promise: recurring jobs are paused, resumed and run now in the job store from the
    page; each change is audited once under the admin; a recurring job cannot be
    cancelled (refused with a message, nothing changes)."""
    start_scheduler_once(app)

    def housekeeping():
        return next(j for j in view.list_jobs(app) if j.id == "housekeeping")

    act(admin_client, "housekeeping", "pause")
    assert housekeeping().state == "paused" and housekeeping().next_run is None
    act(admin_client, "fire-due", "pause")
    page = admin_client.get("/dashboard/jobs").get_data(as_text=True)
    assert "is paused: no scheduled campaign or policy notice starts" in page
    act(admin_client, "fire-due", "resume")
    act(admin_client, "housekeeping", "resume")
    assert housekeeping().state == "scheduled"
    assert housekeeping().next_run > datetime.now(UTC)
    act(admin_client, "housekeeping", "run-now")
    assert housekeeping().next_run <= datetime.now(UTC)
    refused = post_form(
        admin_client,
        "/dashboard/jobs/housekeeping/cancel",
        token_from="/dashboard/jobs",
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "cannot be cancelled" in refused
    assert housekeeping().state == "scheduled"
    user = f"user:{staff['admin']}"
    assert audit_entries(db, "housekeeping") == [
        (user, "scheduler.pause"),
        (user, "scheduler.resume"),
        (user, "scheduler.run_now"),
    ]


def test_ops_may_not_pause_a_recurring_job_but_may_resume_and_run_it(app, ops_client, db):
    """Promise: pausing a service-wide job is admin-only: ops get no button and a 403,
    and nothing changes; resuming and running now stay open to ops."""
    start_scheduler_once(app)
    page = ops_client.get("/dashboard/jobs").get_data(as_text=True)
    assert buttons(page, "fire-due") == ["run-now"]
    assert "Pausing a recurring job is for admins" in page
    assert act(ops_client, "fire-due", "pause").status_code == 403
    assert next(j for j in view.list_jobs(app) if j.id == "fire-due").state == "scheduled"
    assert audit_entries(db, "fire-due") == []
    view.pause_job(app, "housekeeping", "test")
    act(ops_client, "housekeeping", "resume")
    assert next(j for j in view.list_jobs(app) if j.id == "housekeeping").state == "scheduled"


def test_a_control_posted_without_its_csrf_token_is_refused_and_changes_nothing(ops_client, db):
    """Promise: CSRF: a control without its token (or with a forged one) is 400 and the
    campaign stays scheduled, with no audit entry."""
    public_id = campaign(db)
    path = f"/dashboard/jobs/campaign:{public_id}/pause"
    assert ops_client.post(path).status_code == 400
    assert ops_client.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert status_of(db, public_id) == "scheduled"
    assert audit_entries(db, public_id) == []


def test_jobs_need_a_login_and_unknown_jobs_or_actions_are_404(client, ops_client, db):
    """Promise: no login, no page and no control; an unknown job or action is 404."""
    public_id = campaign(db)
    reply = client.get("/dashboard/jobs")
    assert reply.status_code == 302 and "/dashboard/login" in reply.headers["Location"]
    assert act(ops_client, "campaign:nope", "pause").status_code == 404
    assert act(ops_client, "no-such-job", "resume").status_code == 404
    assert act(ops_client, f"campaign:{public_id}", "explode").status_code == 404
    assert status_of(db, public_id) == "scheduled"


@pytest.mark.parametrize("action", ["resume", "run-now"])
def test_a_control_the_state_does_not_allow_says_why_and_changes_nothing(ops_client, db, action):
    """Promise: refusals of the state machine come back as a message on the page (a
    scheduled campaign cannot be resumed; a paused one cannot run now) and change nothing."""
    public_id = campaign(db)
    job = f"campaign:{public_id}"
    if action == "run-now":
        act(ops_client, job, "pause")
    before = status_of(db, public_id)
    page = post_form(
        ops_client,
        f"/dashboard/jobs/{job}/{action}",
        token_from="/dashboard/jobs",
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "cannot become" in page and 'class="flash error"' in page
    assert status_of(db, public_id) == before
