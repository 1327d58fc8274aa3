"""Consent is evidence: an append-only ledger, and states that are its projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain import consent
from mailprefs.domain.consent import Evidence, LedgerViolation, transition
from mailprefs.domain.errors import Conflict, Invalid
from mailprefs.domain.models import ConsentAction, ConsentEvent, TopicState, TopicSubscription
from mailprefs.domain.topics import get_topic
from tests.support.factories import evidence, person
from tests.support.policy_versions import policy_version


@pytest.mark.parametrize(
    ("before", "action", "double", "after"),
    [
        (TopicState.NONE, ConsentAction.OPT_IN, False, TopicState.OPTED_IN),
        (TopicState.NONE, ConsentAction.OPT_IN, True, TopicState.PENDING),
        (TopicState.PENDING, ConsentAction.CONFIRM, True, TopicState.OPTED_IN),
        (TopicState.OPTED_OUT, ConsentAction.CONFIRM, True, TopicState.OPTED_OUT),
        (TopicState.OPTED_IN, ConsentAction.OPT_IN, True, TopicState.OPTED_IN),
        (TopicState.OPTED_OUT, ConsentAction.OPT_IN, True, TopicState.PENDING),
        (TopicState.OPTED_IN, ConsentAction.OPT_OUT, False, TopicState.OPTED_OUT),
        (TopicState.PENDING, ConsentAction.OPT_OUT, True, TopicState.OPTED_OUT),
    ],
)
def test_projection_step(before, action, double, after):
    assert transition(before, action, double) == after


def test_every_change_is_an_event_with_its_evidence(session):
    """Who, what topic, when, source, IP, user agent, policy version in force."""
    subscriber = person(session)
    offers = get_topic(session, "offers")
    given = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    consent.opt_in(
        session,
        subscriber,
        offers,
        Evidence(
            source="web_form",
            ip="198.51.100.9",
            user_agent="Firefox",
            actor="key:mp_x",
            occurred_at=given,
        ),
    )
    session.commit()
    (event,) = consent.history(session, subscriber)
    assert (event.subscriber_id, event.topic_id, event.action) == (
        subscriber.id,
        offers.id,
        ConsentAction.OPT_IN,
    )
    assert (event.source, event.ip, event.user_agent, event.actor) == (
        "web_form",
        "198.51.100.9",
        "Firefox",
        "key:mp_x",
    )
    assert event.occurred_at == given
    assert event.policy_version == "2011-07-06"
    assert consent.state_of(session, subscriber, offers) == TopicState.OPTED_IN


def test_policy_version_is_the_one_in_force_when_consent_was_given(session):
    clock.freeze(datetime(2027, 6, 1, tzinfo=UTC))
    policy_version(
        session, "2027-03", datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    )
    subscriber = person(session)
    offers = get_topic(session, "offers")
    consent.opt_in(
        session, subscriber, offers, evidence(occurred_at=datetime(2027, 2, 1, tzinfo=UTC))
    )
    consent.opt_out(session, subscriber, offers, evidence())
    before, after = consent.history(session, subscriber)
    assert before.policy_version == "2011-07-06"
    assert after.policy_version == "2027-03"


def test_asking_twice_records_once(session):
    subscriber = person(session, opted_in=("offers",))
    offers = get_topic(session, "offers")
    state, event = consent.opt_in(session, subscriber, offers, evidence())
    assert state == TopicState.OPTED_IN and event is None
    consent.opt_out(session, subscriber, offers, evidence())
    _, again = consent.opt_out(session, subscriber, offers, evidence())
    assert again is None
    assert [e.action for e in consent.history(session, subscriber)] == [
        ConsentAction.OPT_IN,
        ConsentAction.OPT_OUT,
    ]


def test_administrative_topics_take_no_consent(session):
    subscriber = person(session)
    with pytest.raises(Invalid, match="administrative"):
        consent.opt_out(session, subscriber, get_topic(session, "policy"), evidence())


def test_consent_cannot_be_given_in_the_future(session):
    subscriber = person(session)
    with pytest.raises(Invalid):
        consent.opt_in(
            session,
            subscriber,
            get_topic(session, "offers"),
            evidence(occurred_at=clock.now() + timedelta(days=1)),
        )


def test_unknown_source_is_refused(session):
    subscriber = person(session)
    with pytest.raises(Invalid, match="source"):
        consent.opt_in(
            session, subscriber, get_topic(session, "offers"), Evidence(source="telepathy")
        )


def test_orm_cannot_update_or_delete_events(session):
    subscriber = person(session, opted_in=("offers",))
    session.commit()
    (event,) = consent.history(session, subscriber)
    event.action = ConsentAction.OPT_OUT
    with pytest.raises(LedgerViolation):
        session.flush()
    session.rollback()
    (event,) = consent.history(session, subscriber)
    session.delete(event)
    with pytest.raises(LedgerViolation):
        session.flush()
    session.rollback()
    with pytest.raises(LedgerViolation):
        session.execute(sa.delete(ConsentEvent))
    session.rollback()
    with pytest.raises(LedgerViolation):
        session.execute(sa.update(ConsentEvent).values(source="staff"))


def test_database_refuses_raw_sql_changes_to_the_ledger(db):
    """The trigger guards the ledger even against code that bypasses the ORM."""
    with db.transaction() as s:
        person(s, opted_in=("offers",), attributes={})
    for statement in (
        "DELETE FROM consent_events",
        "UPDATE consent_events SET action = 'opt_out'",
        "UPDATE consent_events SET ip = '192.0.2.1'",
    ):
        with (
            pytest.raises(sa.exc.DatabaseError, match="append-only"),
            db.engine.begin() as connection,
        ):
            connection.execute(sa.text(statement))
    with db.engine.begin() as connection:
        # Erasure's blanking is the one permitted change.
        connection.execute(sa.text("UPDATE consent_events SET ip = NULL, user_agent = NULL"))


def test_rebuild_check_finds_a_tampered_projection_and_fix_repairs_it(session):
    alice = person(session, opted_in=("offers",))
    person(session, opted_in=("newsletter",), confirmed=False)
    session.commit()
    assert consent.rebuild(session, fix=False) == []
    offers = get_topic(session, "offers")
    row = session.get(TopicSubscription, (alice.id, offers.id))
    row.state = TopicState.NONE  # as if someone edited the table directly
    session.commit()
    (difference,) = consent.rebuild(session, fix=False)
    assert (difference.subscriber, difference.what) == (alice.public_id, "topic offers")
    assert (difference.stored, difference.rebuilt) == (TopicState.NONE, TopicState.OPTED_IN)
    consent.rebuild(session, fix=True)
    session.commit()
    assert consent.rebuild(session, fix=False) == []
    assert session.get(TopicSubscription, (alice.id, offers.id)).state == TopicState.OPTED_IN


def test_rebuild_also_checks_account_status(session):
    from mailprefs.domain import subscribers
    from mailprefs.domain.models import SubscriberStatus

    alice = person(session)
    subscribers.deactivate(session, alice, evidence("preference_page"))
    session.commit()
    assert consent.rebuild(session, fix=False) == []
    alice.status = SubscriberStatus.ACTIVE
    session.commit()
    (difference,) = consent.rebuild(session, fix=False)
    assert difference.what == "status"


def test_erased_and_deactivated_people_cannot_opt_in(session):
    from mailprefs.domain import subscribers

    alice = person(session)
    subscribers.deactivate(session, alice, evidence("preference_page"))
    with pytest.raises(Conflict, match="only registering again"):
        consent.opt_in(session, alice, get_topic(session, "offers"), evidence())


def test_projection_rows_point_at_their_event(session):
    alice = person(session, opted_in=("offers",))
    offers = get_topic(session, "offers")
    row = session.scalar(
        select(TopicSubscription).where(TopicSubscription.subscriber_id == alice.id)
    )
    (event,) = consent.history(session, alice)
    assert (row.topic_id, row.event_id, row.changed_at) == (offers.id, event.id, event.occurred_at)


def test_a_policy_whose_announcement_was_cancelled_never_becomes_the_policy_in_force(session):
    """Consent evidence must name a policy people were told about."""
    from mailprefs.domain.outbox_models import Campaign, CampaignKind, CampaignStatus

    clock.freeze(datetime(2027, 6, 1, tzinfo=UTC))
    cancelled = Campaign(
        kind=CampaignKind.POLICY,
        topic_id=get_topic(session, "policy").id,
        subject="s",
        text_body="t",
        status=CampaignStatus.CANCELLED,
        priority=5,
        created_at=clock.now(),
        expanded_through=0,
        expansion_done=False,
    )
    session.add(cancelled)
    session.flush()
    policy_version(
        session,
        "2027-03",
        datetime(2027, 3, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
        campaign_id=cancelled.id,
    )
    assert consent.policy_version_in_force(session, clock.now()) == "2011-07-06"
    cancelled.status = CampaignStatus.SENT
    session.flush()
    assert consent.policy_version_in_force(session, clock.now()) == "2027-03"
