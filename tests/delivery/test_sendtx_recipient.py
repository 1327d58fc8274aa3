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
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    TopicState,
    TopicSubscription,
)
from mailprefs.domain.topics import get_topic

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5).filter(lambda k: "\x00" not in k), inner, max_size=3)
    ),
    max_leaves=8,
)

people = st.lists(
    st.tuples(
        st.sampled_from(
            [
                (SubscriberStatus.ACTIVE, None),
                (SubscriberStatus.DEACTIVATED, "by_user"),
                (SubscriberStatus.ERASED, "by_request"),
            ]
        ),
        st.sampled_from([None, *TopicState]),
        st.sampled_from([None, *SuppressionReason]),
        st.none() | st.dictionaries(st.sampled_from(["first_name", "plan", "ü"]), _json),
        st.booleans(),  # erased people have no address left
    ),
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
    ids = []
    with db.transaction() as s:
        offers = get_topic(s, "offers")
        for i, ((status, reason), state, suppressed, attributes, has_email) in enumerate(
            population
        ):
            email_hash = f"{len(ids)}-{i}-{id(population)}".ljust(64, "x")[:64]
            row = Subscriber(
                email=f"p{i}@example.com" if has_email else None,
                email_hash=email_hash,
                attributes=attributes,
                status=status,
                status_reason=reason,
                created_at=NOW,
                updated_at=NOW,
            )
            s.add(row)
            s.flush()
            ids.append(row.id)
            if state is not None:
                s.add(
                    TopicSubscription(
                        subscriber_id=row.id,
                        topic_id=offers.id,
                        state=state,
                        changed_at=NOW,
                        event_id=0,
                    )
                )
            if suppressed is not None:
                s.add(
                    Suppression(
                        email_hash=email_hash, reason=suppressed, source="test", created_at=NOW
                    )
                )
        topic_id = offers.id
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
