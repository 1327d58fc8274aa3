"""One leader, elected through the database; a replaced leader can do nothing.

Time moves through mailprefs.clock: the lease's expiry is the clock's, not a sleep.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailprefs import clock
from mailprefs.domain import campaigns
from mailprefs.domain.outbox_models import Campaign, CampaignStatus
from mailprefs.domain.topics import get_topic
from mailprefs.scheduling import jobs
from mailprefs.scheduling.leader import Leadership, current

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def candidates(db, n=2, seconds=15):
    return [Leadership(db, seconds=seconds, holder=f"candidate-{i}") for i in range(n)]


def test_of_several_candidates_exactly_one_is_elected(db):
    """Only one candidate wins the lease; the others stand by while it renews."""
    clock.freeze(T0)
    a, b, c = candidates(db, 3)
    assert [a.acquire(), b.acquire(), c.acquire()] == [True, False, False]
    for _ in range(5):
        clock.advance(timedelta(seconds=5))
        assert a.renew()
        assert not b.acquire() and not c.acquire()
    assert current(db).holder == "candidate-0"


def test_a_silent_leader_is_replaced_after_its_lease_and_its_token_is_fenced_off(db):
    """A leader that stops renewing (killed) is replaced once its lease runs out; the new
    leader has a higher fencing token, and the old one can neither renew nor pass the
    guard a job checks in its transaction."""
    clock.freeze(T0)
    a, b = candidates(db)
    assert a.acquire()
    first = a.token
    clock.advance(timedelta(seconds=14))
    assert not b.acquire(), "not before the lease runs out"
    clock.advance(timedelta(seconds=2))
    assert b.acquire() and b.token == first + 1
    with db.transaction() as s:
        assert b.guard(s) and not a.guard(s)
    assert not a.renew() and not a.held
    with db.transaction() as s:
        assert not a.guard(s)


def test_an_expired_lease_fails_the_guard_even_before_anyone_takes_over(db):
    """A leader whose lease ran out (it was paused, say) runs no job until it renews."""
    clock.freeze(T0)
    (a,) = candidates(db, 1)
    assert a.acquire()
    clock.advance(timedelta(seconds=16))
    with db.transaction() as s:
        assert not a.guard(s)
    assert a.renew(), "nobody took over: the same term may go on"
    with db.transaction() as s:
        assert a.guard(s)


def test_release_hands_over_at_once(db):
    """A clean shutdown ends the lease: a standby takes over without waiting it out."""
    clock.freeze(T0)
    a, b = candidates(db)
    assert a.acquire()
    clock.advance(timedelta(seconds=1))
    a.release()
    assert not a.held
    clock.advance(timedelta(milliseconds=1))
    assert b.acquire()


class _Runtime:
    def __init__(self, app, db, leadership):
        self.app, self.db, self.leadership = app, db, leadership


def test_a_replaced_leaders_job_fires_nothing(app, db):
    """The fencing check in the job's own transaction: a job of a replaced leader leaves
    a due campaign alone; the new leader's job fires it, once."""
    clock.freeze(T0)
    with db.transaction() as s:
        campaign = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject="Hi",
            text="Hello",
            html=None,
            send_at=T0 + timedelta(seconds=30),
            audience=None,
            created_by="test",
        )
        campaign_id = campaign.id
    old, new = candidates(db)
    assert old.acquire()
    clock.advance(timedelta(seconds=31))
    assert new.acquire()
    try:
        jobs.install(_Runtime(app, db, old))
        assert jobs.fire_due() is None
        with db.session(read_only=True) as s:
            assert s.get(Campaign, campaign_id).status == CampaignStatus.SCHEDULED
        jobs.install(_Runtime(app, db, new))
        assert jobs.fire_due() == 1
        assert jobs.fire_due() == 0
    finally:
        jobs.install(None)
    with db.session(read_only=True) as s:
        assert s.get(Campaign, campaign_id).status == CampaignStatus.SENDING


def test_without_an_elected_scheduler_in_the_process_jobs_do_nothing(app, db):
    """A job function called in a process that never won the election does nothing."""
    jobs.install(None)
    assert jobs.fire_due() is None and jobs.housekeeping_job() is None
