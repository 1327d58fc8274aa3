"""The dashboard's interface to the schedule: list, pause, resume, cancel, run now, from
a process with no running scheduler, through the same domain code as the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain import campaigns, policies
from mailprefs.domain.errors import Conflict, NotFound
from mailprefs.domain.models import AuditEntry
from mailprefs.domain.outbox_models import Campaign, CampaignStatus, PolicyVersion
from mailprefs.domain.topics import get_topic
from mailprefs.scheduling import view
from mailprefs.scheduling.service import SchedulerService
from tests.support.factories import NOTICE_SETTINGS, announcement

ACTOR = "user:ops@example.test"


def campaign(db, subject, send_at=None, then=None) -> str:
    with db.transaction() as s:
        row = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject=subject,
            text="Hello",
            html=None,
            send_at=send_at,
            audience=None,
            created_by="test",
        )
        if then:
            then(s, row, "test")
        return row.public_id


def notice(db, announce_at) -> str:
    what = announcement("2026-05", announce_at + timedelta(days=30), announce_at)
    with db.transaction() as s:
        policies.announce(s, what, NOTICE_SETTINGS, "test")
    return "policy:2026-05"


def status_of(db, public_id) -> CampaignStatus:
    with db.session(read_only=True) as s:
        return s.scalar(select(Campaign.status).where(Campaign.public_id == public_id))


def audited(db, action) -> list[tuple[str, str]]:
    with db.session(read_only=True) as s:
        return s.execute(
            select(AuditEntry.actor, AuditEntry.target_id).where(AuditEntry.action == action)
        ).all()


def test_list_jobs_shows_active_campaigns_notices_and_recurring_jobs(app, db):
    """Scheduled, paused and sending campaigns and notices are listed (soonest first) with
    their next run and state; drafts and finished ones are not; recurring jobs show as
    not started until a scheduler has run."""
    now = clock.freeze(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    soon = campaign(db, "Soon", now + timedelta(hours=1))
    held = campaign(db, "Held", now + timedelta(hours=2), then=campaigns.pause)
    campaign(db, "Draft")
    campaign(db, "Dropped", now + timedelta(hours=1), then=campaigns.cancel)
    notice(db, now + timedelta(minutes=30))
    listed = view.list_jobs(app)
    by_id = {j.id: j for j in listed}
    assert [j.id for j in listed if j.kind != "recurring"] == [
        "policy:2026-05",
        f"campaign:{soon}",
        f"campaign:{held}",
    ]
    assert by_id["policy:2026-05"].kind == "policy"
    assert by_id["policy:2026-05"].target == "2026-05"
    assert by_id["policy:2026-05"].next_run == now + timedelta(minutes=30)
    assert by_id[f"campaign:{soon}"].state == "scheduled"
    assert by_id[f"campaign:{held}"].state == "paused"
    assert by_id[f"campaign:{held}"].next_run is None
    recurring = {j.id: j for j in listed if j.kind == "recurring"}
    assert {"fire-due", "policy-broadcasts", "housekeeping"} <= set(recurring)
    assert ("compact-erasures" in recurring) == (db.engine.dialect.name == "postgresql")
    assert all(j.state == "not_started" and j.description for j in recurring.values())


def test_campaign_jobs_are_controlled_through_the_campaign_rules_and_audited(app, db):
    """pause/resume/cancel/run_now on a campaign act like the API's controls: the same
    state machine, the same refusals, the same audit entries (with the actor)."""
    now = clock.freeze(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    public_id = campaign(db, "Later", now + timedelta(days=1))
    job = f"campaign:{public_id}"
    view.pause_job(app, job, ACTOR)
    assert status_of(db, public_id) == CampaignStatus.PAUSED
    with pytest.raises(Conflict):
        view.run_now(app, job, ACTOR)  # a paused campaign must be resumed first
    view.resume_job(app, job, ACTOR)
    assert status_of(db, public_id) == CampaignStatus.SCHEDULED
    view.run_now(app, job, ACTOR)
    with db.session(read_only=True) as s:
        row = s.scalar(select(Campaign).where(Campaign.public_id == public_id))
        assert row.status == CampaignStatus.SCHEDULED and row.send_at == now
    view.cancel_job(app, job, ACTOR)
    assert status_of(db, public_id) == CampaignStatus.CANCELLED
    with pytest.raises(Conflict):
        view.resume_job(app, job, ACTOR)
    for action in ("campaign.pause", "campaign.resume", "campaign.schedule", "campaign.cancel"):
        assert (ACTOR, public_id) in audited(db, action), action
    with pytest.raises(NotFound):
        view.pause_job(app, "campaign:nope", ACTOR)


def test_a_policy_notice_can_be_started_now_paused_resumed_and_cancelled(app, db):
    """run_now moves a notice's announcement earlier (the notice period only grows) and
    records the new announce_at; pause and resume act on its broadcast."""
    now = clock.freeze(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    job = notice(db, now + timedelta(days=2))
    view.run_now(app, job, ACTOR)
    with db.session(read_only=True) as s:
        policy = s.scalar(select(PolicyVersion).where(PolicyVersion.version == "2026-05"))
        assert policy.announce_at == now and policy.campaign.send_at == now
        public_id = policy.campaign.public_id
    view.pause_job(app, job, ACTOR)
    assert status_of(db, public_id) == CampaignStatus.PAUSED
    view.resume_job(app, job, ACTOR)
    assert status_of(db, public_id) == CampaignStatus.SCHEDULED
    view.cancel_job(app, job, ACTOR)
    assert status_of(db, public_id) == CampaignStatus.CANCELLED
    with pytest.raises(NotFound):
        view.pause_job(app, "policy:1999", ACTOR)
    with pytest.raises(NotFound):
        view.pause_job(app, "policy:2011-07-06", ACTOR)  # recorded at install, no notice


def test_recurring_jobs_are_paused_resumed_and_run_now_in_the_job_store(app, db):
    """Recurring jobs change in the job store without a running scheduler; they can be
    paused and resumed and run now, not cancelled; every change is audited."""
    with pytest.raises(Conflict):
        view.pause_job(app, "housekeeping", ACTOR)  # no scheduler has run yet
    service = SchedulerService(app, holder="once")
    service.step()
    service.shutdown()

    def housekeeping():
        return next(j for j in view.list_jobs(app) if j.id == "housekeeping")

    assert housekeeping().state == "scheduled"
    view.pause_job(app, "housekeeping", ACTOR)
    assert housekeeping().state == "paused" and housekeeping().next_run is None
    with pytest.raises(Conflict):
        view.run_now(app, "housekeeping", ACTOR)
    view.resume_job(app, "housekeeping", ACTOR)
    assert housekeeping().state == "scheduled"
    assert housekeeping().next_run > datetime.now(UTC)
    view.run_now(app, "housekeeping", ACTOR)
    assert housekeeping().next_run <= datetime.now(UTC)
    with pytest.raises(Conflict):
        view.cancel_job(app, "housekeeping", ACTOR)
    with pytest.raises(NotFound):
        view.pause_job(app, "no-such-job", ACTOR)
    for action in ("scheduler.pause", "scheduler.resume", "scheduler.run_now"):
        assert audited(db, action) == [(ACTOR, "housekeeping")], action
