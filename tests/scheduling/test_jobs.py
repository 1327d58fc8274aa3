"""What each scheduled job changes (run as the elected leader, time through the clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import campaigns, policies, subscribers
from mailprefs.domain.models import AuditEntry, IdempotencyRecord
from mailprefs.domain.outbox_models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
)
from mailprefs.domain.topics import get_topic
from mailprefs.scheduling import jobs
from mailprefs.scheduling.housekeeping import COMPACT_ACTION
from mailprefs.scheduling.leader import Leadership
from tests.support.factories import HASH_KEY, person

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Runtime:
    def __init__(self, app, db):
        self.app, self.db = app, db
        self.leadership = Leadership(db, seconds=10**8, holder="test-leader")


@pytest.fixture
def leader(app, db):
    clock.freeze(T0)
    runtime = Runtime(app, db)
    assert runtime.leadership.acquire()
    jobs.install(runtime)
    yield runtime
    jobs.install(None)


def campaign_at(db, send_at, topic="offers") -> int:
    with db.transaction() as s:
        campaign = campaigns.create(
            s,
            topic=get_topic(s, topic),
            subject="Hi",
            text="Hello",
            html=None,
            send_at=send_at,
            audience=None,
            created_by="test",
        )
        return campaign.id


def status(db, campaign_id) -> CampaignStatus:
    with db.session(read_only=True) as s:
        return s.get(Campaign, campaign_id).status


def test_fire_due_starts_due_campaigns_and_notices_once_and_run_due_agrees(app, db, leader):
    """The fire-due job starts what is due (campaigns and policy notices) and nothing
    early; run-due, using the same function, does not start them again."""
    later = campaign_at(db, T0 + timedelta(minutes=10))
    with db.transaction() as s:
        policy = policies.announce(
            s,
            policies.Announcement(
                version="v2",
                title="t",
                summary="s",
                url="https://example.test/p",
                effective_at=T0 + timedelta(days=40),
                announce_at=T0 + timedelta(minutes=5),
            ),
            policies.NoticeSettings(30, "Org", "privacy@example.test"),
            "test",
        )
        notice = policy.campaign_id
    assert jobs.fire_due() == 0
    clock.advance(timedelta(minutes=5))
    assert jobs.fire_due() == 1 and status(db, notice) == CampaignStatus.SENDING
    assert status(db, later) == CampaignStatus.SCHEDULED
    clock.advance(timedelta(minutes=5))
    assert jobs.fire_due() == 1 and jobs.fire_due() == 0
    assert Worker(app).fire_due() == 0, "run-due finds them started already"
    with db.session(read_only=True) as s:
        started = s.scalars(select(Campaign.started_at).where(Campaign.id.in_([notice, later])))
        assert sorted(started) == [T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]


def test_the_policy_broadcasts_job_takes_newcomers_until_effective_then_finishes(app, db, leader):
    """The scheduler keeps a notice expanding (new people get rows) until the policy
    takes effect, then marks the expansion done; fire-due then marks it sent."""
    with db.transaction() as s:
        person(s, "first@example.com")
        notice = policies.announce(
            s,
            policies.Announcement(
                version="v2",
                title="t",
                summary="s",
                url="https://example.test/p",
                effective_at=T0 + timedelta(days=30),
            ),
            policies.NoticeSettings(30, "Org", "privacy@example.test"),
            "test",
        ).campaign_id
    jobs.fire_due()
    assert jobs.policy_broadcasts() == 1
    with db.transaction() as s:
        # Straight into the table, so only the expansion can take them in.
        from mailprefs.domain.models import Subscriber, SubscriberStatus

        s.add(
            Subscriber(
                email="x@example.com",
                email_hash="x-hash",
                attributes={},
                status=SubscriberStatus.ACTIVE,
                created_at=T0,
                updated_at=T0,
            )
        )
    clock.advance(timedelta(days=1))
    assert jobs.policy_broadcasts() == 1
    assert jobs.policy_broadcasts() == 0
    # Nothing queued must hold the notice open: mark the rows sent as a worker would.
    with db.transaction() as s:
        for row in s.scalars(select(Delivery).where(Delivery.campaign_id == notice)):
            row.status = DeliveryStatus.SENT
    jobs.fire_due()
    assert status(db, notice) == CampaignStatus.SENDING, "open until the policy takes effect"
    clock.advance(timedelta(days=29))
    jobs.policy_broadcasts()
    jobs.fire_due()
    assert status(db, notice) == CampaignStatus.SENT


def test_housekeeping_cancels_confirmations_too_stale_to_send_and_prunes_old_keys(app, db, leader):
    """A confirmation mail still queued after its link's lifetime (48 h) is cancelled, a
    fresh one is not; Idempotency-Key answers older than a day are forgotten."""
    with db.transaction() as s:
        person(s, "old@example.com", opted_in=("newsletter",), confirmed=False)
        s.add(
            IdempotencyRecord(
                scope="k",
                endpoint="e",
                key="old",
                request_hash="h",
                status_code=201,
                response={},
                created_at=T0 + timedelta(hours=24),
            )
        )
    clock.advance(timedelta(hours=47))
    with db.transaction() as s:
        person(s, "fresh@example.com", opted_in=("newsletter",), confirmed=False)
        s.add(
            IdempotencyRecord(
                scope="k",
                endpoint="e",
                key="new",
                request_hash="h",
                status_code=201,
                response={},
                created_at=clock.now(),
            )
        )
    assert jobs.housekeeping_job() == (0, 0)
    clock.advance(timedelta(hours=2))
    assert jobs.housekeeping_job() == (1, 1)
    with db.session(read_only=True) as s:
        rows = s.execute(
            select(Campaign.created_at, Campaign.status, Delivery.status)
            .join(Delivery, Delivery.campaign_id == Campaign.id)
            .where(Campaign.kind == CampaignKind.CONFIRMATION)
            .order_by(Campaign.created_at)
        ).all()
        assert [(r[1], r[2]) for r in rows] == [
            (CampaignStatus.CANCELLED, DeliveryStatus.CANCELLED),
            (CampaignStatus.SENDING, DeliveryStatus.QUEUED),
        ]
        assert s.scalars(select(IdempotencyRecord.key)).all() == ["new"]
    # Sending now sends only the fresh one.
    assert Worker(app).run_due().sent == 1


def test_compaction_runs_only_after_erasures_and_remembers_when_it_ran(app, db, leader):
    """The daily compaction rewrites the erasure tables when someone was erased since
    the last one (recorded in the audit log), and does nothing otherwise."""
    assert jobs.compact_erasures() == 0
    with db.transaction() as s:
        gone = person(s, "gone@example.com")
        subscribers.erase(s, gone, hash_key=HASH_KEY, actor="test")
    clock.advance(timedelta(hours=1))
    assert jobs.compact_erasures() == 1
    clock.advance(timedelta(days=1))
    assert jobs.compact_erasures() == 0
    with db.session(read_only=True) as s:
        assert (
            s.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.action == COMPACT_ACTION))
            == 1
        )
