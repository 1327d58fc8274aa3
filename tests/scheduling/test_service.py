"""The scheduler service in-process with a real APScheduler on the database job store:
standbys run no APScheduler, misfired jobs fire once, a replaced leader stops."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from mailprefs import clock
from mailprefs.domain import campaigns
from mailprefs.domain.outbox_models import Campaign, CampaignStatus, Lease
from mailprefs.domain.topics import get_topic
from mailprefs.scheduling import view
from mailprefs.scheduling.service import SchedulerService


@pytest.fixture
def services(app):
    made: list[SchedulerService] = []

    def make(holder: str) -> SchedulerService:
        service = SchedulerService(app, holder=holder)
        made.append(service)
        return service

    yield make
    for service in made:
        service.shutdown()


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def ran(caplog, name: str, **fields) -> int:
    """How many log events `name` were recorded with (at least) these fields."""
    return sum(
        r.getMessage() == name
        and fields.items() <= (getattr(r, "mailprefs_fields", None) or {}).items()
        for r in caplog.records
    )


def test_only_the_elected_scheduler_runs_apscheduler_and_a_release_hands_over(services, db):
    """Of two schedulers only the leader starts APScheduler; when it shuts down cleanly
    the standby is elected at its next poll (no lease to wait out)."""
    a, b = services("a"), services("b")
    a.step()
    b.step()
    assert a.is_leader and a.scheduler.running
    assert not b.is_leader and b.scheduler is None
    a.shutdown()
    assert not a.is_leader
    b.step()
    assert b.is_leader and b.scheduler.running
    with db.session(read_only=True) as s:
        assert s.get(Lease, "scheduler").holder == "b"


def test_a_job_that_fell_due_while_no_scheduler_ran_fires_once_on_start(services, app, db, caplog):
    """A recurring job that missed several runs while no scheduler ran, and a campaign
    whose time passed meanwhile, each run exactly once when a scheduler starts: not
    zero times (misfire_grace_time=None) and not once per missed run (coalesce)."""
    caplog.set_level(logging.INFO, logger="mailprefs.scheduler")
    first = services("first")
    first.step()
    first.shutdown()
    # The scheduler was down for 35 minutes: housekeeping (every 10) missed 3 runs ...
    store = view._store(app)
    job = store.lookup_job("housekeeping")
    job.next_run_time = datetime.now(UTC) - timedelta(minutes=35)
    store.update_job(job)
    # ... and a campaign fell due.
    clock.freeze(datetime.now(UTC) - timedelta(hours=1))
    with db.transaction() as s:
        campaign = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject="Hi",
            text="Hello",
            html=None,
            send_at=clock.now() + timedelta(minutes=25),
            audience=None,
            created_by="test",
        )
        public_id = campaign.public_id
    clock.unfreeze()

    second = services("second")
    second.step()
    assert second.is_leader
    assert wait_for(lambda: ran(caplog, "job.housekeeping") >= 1)
    assert wait_for(lambda: ran(caplog, "campaign.fired", campaign=public_id) >= 1)
    time.sleep(app.config["MAILPREFS_SCHEDULER_TICK_SECONDS"] + 1)  # another tick or two
    assert ran(caplog, "job.housekeeping") == 1
    assert ran(caplog, "campaign.fired", campaign=public_id) == 1
    next_run = view._store(app).lookup_job("housekeeping").next_run_time
    now = datetime.now(UTC)
    assert now < next_run <= now + timedelta(minutes=10), "back on its interval"
    with db.session(read_only=True) as s:
        assert s.query(Campaign).filter_by(public_id=public_id).one().status == (
            CampaignStatus.SENDING
        )


def test_a_pause_made_from_the_dashboard_survives_a_change_of_leader(services, app):
    """A recurring job paused in the job store stays paused when another scheduler is
    elected (its definition is replaced, its schedule state kept)."""
    a = services("a")
    a.step()
    view.pause_job(app, "housekeeping", "user:ops@example.test")
    a.shutdown()
    b = services("b")
    b.step()
    assert b.scheduler.get_job("housekeeping").next_run_time is None
    states = {j.id: j.state for j in view.list_jobs(app)}
    assert states["housekeeping"] == "paused" and states["fire-due"] == "scheduled"


def test_a_leader_that_finds_itself_replaced_stops_apscheduler_at_once(services, db):
    """When the heartbeat finds another holder (this one was frozen past its lease and
    replaced), APScheduler is shut down and the jobs refuse to run."""
    a = services("a")
    a.step()
    assert a.is_leader
    with db.transaction() as s:
        s.execute(
            update(Lease)
            .where(Lease.name == "scheduler")
            .values(holder="someone-else", fencing_token=Lease.fencing_token + 1)
        )
    a.step()
    assert not a.is_leader and a.scheduler is None
    from mailprefs.scheduling import jobs

    assert jobs.fire_due() is None
