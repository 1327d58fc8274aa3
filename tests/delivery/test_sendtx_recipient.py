"""The send loop reads a person as the gate does: `SendTransactions._recipient` (the
driver's cursor) and `gate.load_recipient` (the ORM) run one query and one reading of its
row; a property test holds their answers equal for any person the database can hold."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailprefs.delivery.sendtx import SendTransactions
from mailprefs.domain import gate
from mailprefs.domain.models import (
    Subscriber,
    Suppression,
    TopicSubscription,
)
from mailprefs.domain.topics import get_topic
from tests.domain.test_gate import person_facts
from tests.support.factories import raw_person

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)

_key = st.text(max_size=5).filter(lambda k: "\x00" not in k)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_key, inner, max_size=3),
    max_leaves=8,
)

# Anyone the gate judges, with any attributes (or none) and an address or none (erased).
people = st.lists(
    st.tuples(person_facts, st.none() | st.dictionaries(_key, _json), st.booleans()),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(population=people)
def test_property_the_send_loop_and_the_gate_read_a_person_alike(db, population):
    """Property: for any person (status, topic state, suppression, attributes, address or
    none), the send loop's fast read and `gate.load_recipient` give equal Recipients."""
    with db.transaction() as s:
        topic_id = get_topic(s, "offers").id
        ids = [
            raw_person(
                s,
                f"{i}-{id(population)}".ljust(64, "x")[:64],
                status,
                state=(topic_id, state),
                suppressed=suppressed,
                attributes=attributes,
                email=has_email,
                at=NOW,
            ).id
            for i, ((status, state, suppressed, _plan), attributes, has_email) in enumerate(
                population
            )
        ]
    with db.session(read_only=True) as s, SendTransactions(db.engine) as tx:
        for subscriber_id in [*ids, 10**12]:  # and someone who does not exist
            slow = gate.load_recipient(s, subscriber_id, topic_id)
            fast = tx._recipient(subscriber_id, topic_id)
            assert fast == slow
            tx.commit()
    with db.transaction() as s:
        s.execute(sa.delete(TopicSubscription).where(TopicSubscription.subscriber_id.in_(ids)))
        s.execute(sa.delete(Suppression))
        s.execute(sa.delete(Subscriber).where(Subscriber.id.in_(ids)))
