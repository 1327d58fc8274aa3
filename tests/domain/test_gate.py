"""The gate: one decision per person, the same in Python (at send) and in SQL (audiences)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailprefs.domain import campaigns, gate, suppression
from mailprefs.domain.gate import Allowed, Blocked, Facts, decide
from mailprefs.domain.models import (
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    TopicKind,
    TopicState,
    TopicSubscription,
)
from mailprefs.domain.topics import get_topic
from tests.support.factories import evidence, person, raw_person

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
ACTIVE = Facts(SubscriberStatus.ACTIVE, None, TopicState.OPTED_IN, None)


def facts(**kw):
    values = {
        "status": SubscriberStatus.ACTIVE,
        "status_reason": None,
        "topic_state": TopicState.OPTED_IN,
        "suppression": None,
        **kw,
    }
    return Facts(**values)


@pytest.mark.parametrize(
    ("given", "kind", "expected"),
    [
        (None, "marketing", "unknown_recipient"),
        (facts(), "marketing", None),
        (facts(topic_state=TopicState.NONE), "marketing", "no_consent"),
        (facts(topic_state=TopicState.PENDING), "marketing", "pending_confirmation"),
        (facts(topic_state=TopicState.OPTED_OUT), "marketing", "opted_out"),
        (facts(topic_state=TopicState.NONE), "administrative", None),
        (facts(topic_state=TopicState.OPTED_OUT), "administrative", None),
        (facts(status=SubscriberStatus.DEACTIVATED), "marketing", "deactivated"),
        (facts(status=SubscriberStatus.DEACTIVATED), "administrative", "deactivated"),
        (
            facts(status=SubscriberStatus.ERASED, status_reason="by_request"),
            "administrative",
            "erased",
        ),
        (facts(status=SubscriberStatus.ERASED, status_reason="underage"), "marketing", "underage"),
        (facts(suppression=SuppressionReason.BOUNCE), "administrative", "suppressed_bounce"),
        (facts(suppression=SuppressionReason.COMPLAINT), "marketing", "suppressed_complaint"),
        (facts(suppression=SuppressionReason.COMPLAINT), "administrative", None),
        (facts(suppression=SuppressionReason.MANUAL), "administrative", "suppressed_manual"),
        (
            facts(suppression=SuppressionReason.BOUNCE, topic_state=TopicState.OPTED_OUT),
            "marketing",
            "suppressed_bounce",
        ),
    ],
)
def test_decide_gives_the_stable_reason(given, kind, expected):
    decision = decide(given, kind, NOW)
    if expected is None:
        assert decision == Allowed() and decision.allowed
    else:
        assert decision == Blocked(expected) and not decision.allowed


def test_reasons_are_the_stable_strings_of_the_contract():
    assert set(gate.REASONS) == {
        "no_consent",
        "pending_confirmation",
        "opted_out",
        "deactivated",
        "erased",
        "suppressed_bounce",
        "suppressed_complaint",
        "suppressed_manual",
        "underage",
        "unknown_recipient",
    }


def test_the_gate_reads_the_current_state_at_the_moment_of_asking(session):
    """An opt-out committed a moment ago blocks the next decision."""
    alice = person(session, opted_in=("offers",))
    offers = get_topic(session, "offers")
    assert gate.decide(gate.load_recipient(session, alice.id, offers.id).facts, offers, NOW).allowed
    from mailprefs.domain import consent

    consent.opt_out(session, alice, offers, evidence("one_click"))
    after = gate.decide(gate.load_recipient(session, alice.id, offers.id).facts, offers, NOW)
    assert after == Blocked("opted_out")


def test_load_recipient_sees_suppression_by_hash(session):
    alice = person(session, opted_in=("offers",))
    suppression.add(session, alice.email_hash, SuppressionReason.BOUNCE, source="smtp")
    offers = get_topic(session, "offers")
    recipient = gate.load_recipient(session, alice.id, offers.id)
    assert recipient.facts.suppression == SuppressionReason.BOUNCE
    assert recipient.email == alice.email


def test_a_lifted_suppression_no_longer_blocks(session):
    alice = person(session, opted_in=("offers",))
    row = suppression.add(session, alice.email_hash, SuppressionReason.MANUAL, source="staff")
    suppression.lift(session, row.id, actor="ops", reason="asked to be mailed again")
    offers = get_topic(session, "offers")
    assert decide(gate.load_recipient(session, alice.id, offers.id).facts, offers, NOW).allowed


# --- SQL and Python agree on random populations -----------------------------------

# One person as the gate sees them: (status, reason), topic state, suppression, plan.
person_facts = st.tuples(
    st.sampled_from(
        [
            (SubscriberStatus.ACTIVE, None),
            (SubscriberStatus.DEACTIVATED, "by_user"),
            (SubscriberStatus.ERASED, "by_request"),
            (SubscriberStatus.ERASED, "underage"),
        ]
    ),
    st.sampled_from([None, TopicState.PENDING, TopicState.OPTED_IN, TopicState.OPTED_OUT]),
    st.sampled_from([None, *SuppressionReason]),
    st.sampled_from(["pro", "free"]),
)
people = st.lists(person_facts, min_size=0, max_size=25)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(population=people)
def test_audience_counts_in_sql_match_the_gate_person_by_person(db, population):
    """Property: for any population, SQL counts == counting decide() over each person."""
    with db.transaction() as s:
        s.execute(sa.delete(TopicSubscription))
        s.execute(sa.delete(Suppression))
        s.execute(sa.text("DELETE FROM subscribers"))
        topics = {t: get_topic(s, t) for t in ("offers", "newsletter", "policy")}
        expected = {slug: {"allowed": 0, "blocked": {}} for slug in topics}
        expected_pro = {"allowed": 0, "blocked": {}}
        for i, ((status, reason), state, suppressed, plan) in enumerate(population):
            raw_person(
                s,
                f"{i:064d}",
                (status, reason),
                state=(topics["offers"].id, state),
                suppressed=suppressed,
                attributes={"plan": plan},
                at=NOW,
            )
            for slug, topic in topics.items():
                topic_state = state if slug == "offers" and state else TopicState.NONE
                decision = decide(Facts(status, reason, topic_state, suppressed), topic, NOW)
                for bucket in [expected[slug]] + (
                    [expected_pro] if slug == "offers" and plan == "pro" else []
                ):
                    if decision.allowed:
                        bucket["allowed"] += 1
                    else:
                        bucket["blocked"][decision.reason] = (
                            bucket["blocked"].get(decision.reason, 0) + 1
                        )
    with db.session(read_only=True) as s:
        for slug in ("offers", "newsletter", "policy"):
            counted = campaigns.audience_counts(s, get_topic(s, slug), None)
            assert counted["total"] == len(population)
            assert counted["allowed"] == expected[slug]["allowed"], slug
            assert counted["blocked"] == expected[slug]["blocked"], slug
        pro = campaigns.audience_counts(s, get_topic(s, "offers"), {"attributes": {"plan": "pro"}})
        assert (pro["allowed"], pro["blocked"]) == (
            expected_pro["allowed"],
            expected_pro["blocked"],
        )


def test_administrative_topics_reach_people_who_opted_out_of_marketing(session):
    alice = person(session, opted_in=("offers",))
    from mailprefs.domain import consent

    consent.opt_out_of_all_marketing(session, alice, evidence("preference_page"))
    policy = get_topic(session, "policy")
    counts = campaigns.audience_counts(session, policy, None)
    assert counts["allowed"] == 1


def test_kind_is_taken_from_the_topic(session):
    assert gate._is_marketing(get_topic(session, "offers"))
    assert not gate._is_marketing(TopicKind.ADMINISTRATIVE)
