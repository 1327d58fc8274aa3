"""Expansion into the outbox: set-based, resumable from its checkpoint, one expander."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from mailprefs import clock
from mailprefs.delivery import expand
from mailprefs.domain import campaigns
from mailprefs.domain.outbox_models import Campaign, Delivery
from tests.support.factories import person, started_campaign


def setup_campaign(db, people=23):
    with db.transaction() as s:
        for i in range(people):
            person(s, f"p{i:02d}@example.com", opted_in=("offers",) if i % 3 else ())
        return started_campaign(s, subject="s", text="t")


def run_batch(db, campaign_id, owner, batch=10):
    with db.transaction() as s:
        now = clock.now()
        if not expand.take_lease(s, campaign_id, owner, now, 60):
            return None
        campaign = s.get(Campaign, campaign_id)
        return expand.expand_batch(s, campaign, owner=owner, now=now, batch=batch, lease_seconds=60)


def rows(db, campaign_id):
    with db.session(read_only=True) as s:
        return s.scalar(select(func.count(Delivery.id)).where(Delivery.campaign_id == campaign_id))


def test_expansion_writes_one_row_per_person_in_batches_and_marks_done(db):
    campaign_id = setup_campaign(db)
    assert run_batch(db, campaign_id, "a") == 10 and rows(db, campaign_id) == 10
    assert run_batch(db, campaign_id, "a") == 10
    assert run_batch(db, campaign_id, "a") == 3
    assert run_batch(db, campaign_id, "a") == 0
    with db.session(read_only=True) as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign.expansion_done and campaign.lease_owner is None
        counts = campaigns.audience_counts(s, campaign.topic, None)
        assert campaigns.stats(s, campaign)["pending"] == counts["allowed"] == 15
    assert rows(db, campaign_id) == 23


def test_a_second_process_cannot_expand_while_the_lease_is_held(db):
    campaign_id = setup_campaign(db)
    assert run_batch(db, campaign_id, "first") == 10
    assert run_batch(db, campaign_id, "second") is None


def test_after_a_crash_expansion_resumes_from_the_checkpoint_once_the_lease_expires(db):
    campaign_id = setup_campaign(db)
    clock.freeze()
    run_batch(db, campaign_id, "crashed")  # then the process died
    assert run_batch(db, campaign_id, "other") is None
    clock.advance(timedelta(seconds=61))
    while run_batch(db, campaign_id, "other"):
        pass
    assert rows(db, campaign_id) == 23
    with db.session(read_only=True) as s:
        per_person = s.execute(
            select(Delivery.subscriber_id, func.count()).group_by(Delivery.subscriber_id)
        ).all()
    assert all(count == 1 for _, count in per_person)


def test_a_repeated_batch_adds_nothing(db):
    """If a process dies after inserting but before its commit, nothing is kept; if a batch
    is somehow run twice, the unique constraint keeps one row per person."""
    campaign_id = setup_campaign(db)
    run_batch(db, campaign_id, "a")
    with db.transaction() as s:
        s.get(Campaign, campaign_id).expanded_through = 0  # rewind the checkpoint
    while run_batch(db, campaign_id, "a"):
        pass
    assert rows(db, campaign_id) == 23


def test_people_registered_after_expansion_are_not_added_to_a_finished_campaign(db):
    campaign_id = setup_campaign(db, people=3)
    while run_batch(db, campaign_id, "a"):
        pass
    with db.transaction() as s:
        person(s, "late@example.com", opted_in=("offers",))
    assert run_batch(db, campaign_id, "a") is None  # done: no lease to take
    assert rows(db, campaign_id) == 3
