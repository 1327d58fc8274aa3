"""`POST /api/v1/subscribers` in few statements: the bounds below fail a change that
adds a statement to every create (docs/performance.md,
"Creating one subscriber (figures of 2026-12-01)")."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event, select

from mailprefs.domain import consent, subscribers
from mailprefs.domain.consent import Evidence
from mailprefs.domain.models import (
    ConsentEvent,
    Subscriber,
    Topic,
    TopicKind,
    TopicSubscription,
)
from mailprefs.domain.subscribers import ConsentRequest
from tests.conftest import bearer, count

# A new person with one consent: the key's lookup, the registration's lookup, the
# person's INSERT, the event's INSERT, the webhook endpoints (read once per flush that
# wrote events), the state's INSERT; SQLite adds its BEGIN IMMEDIATE. (It was 19 and 18.)
MOST = {"sqlite": 7, "postgresql": 6}
# A double opt-in topic also queues the confirmation mail (administrative topic, the
# campaign of one and its delivery, decided by the gate).
MOST_DOUBLE_OPT_IN = {"sqlite": 12, "postgresql": 11}


@contextmanager
def statements(db):
    seen: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many):
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def body(email: str, topic: str) -> dict:
    return {
        "email": email,
        "attributes": {"first_name": "Ann"},
        "consents": [
            {
                "topic": topic,
                "source": "web_form",
                "source_detail": "footer form",
                "ip": "192.0.2.1",
                "user_agent": "Firefox/130",
            }
        ],
    }


@pytest.mark.parametrize(("topic", "most"), [("offers", MOST), ("newsletter", MOST_DOUBLE_OPT_IN)])
def test_one_create_runs_a_bounded_number_of_statements(client, db, marketing_key, topic, most):
    """Promise: creating a person with one consent runs at most MOST statements, and
    nothing re-reads a row it has just written (no SELECT of the new person, event or
    state): the bound fails any change that adds a statement to the create path."""
    warm = client.post(
        "/api/v1/subscribers", json=body("warm@example.com", topic), headers=bearer(marketing_key)
    )
    assert warm.status_code == 201
    with statements(db) as seen:
        reply = client.post(
            "/api/v1/subscribers",
            json=body("ann@example.com", topic),
            headers=bearer(marketing_key),
        )
    assert reply.status_code == 201, reply.get_json()
    dialect = db.engine.dialect.name
    assert len(seen) <= most[dialect], "\n".join(seen)
    if topic == "offers":  # (the confirmation mail's gate reads the person, by design)
        for table in ("subscribers", "consent_events", "topic_subscriptions"):
            assert not [s for s in seen if s.startswith("SELECT") and f"FROM {table} " in s]
    # And it wrote what it says: the person, the event with its evidence, the state.
    with db.session(read_only=True) as s:
        person = s.scalar(select(Subscriber).where(Subscriber.public_id == reply.get_json()["id"]))
        (row,) = s.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == person.id))
        assert (row.source_detail, row.ip, row.policy_version) == (
            "footer form",
            "192.0.2.1",
            "2011-07-06",
        )
        state = s.get(TopicSubscription, (person.id, row.topic_id))
        assert state.event_id == row.id and state.changed_at == row.occurred_at
        assert person.updated_at == person.created_at


def test_the_answer_has_the_states_a_fresh_read_finds(client, db, ops_key):
    """Promise: the 201's topics, known without reading them back, are exactly what
    `consent.states` reads afterwards: every active topic, a retired one left out."""
    with db.transaction() as s:
        s.add(Topic(slug="events", name="Events", kind=TopicKind.MARKETING, active=False))
    reply = client.post(
        "/api/v1/subscribers",
        json={
            "email": "bo@example.com",
            "consents": [
                {"topic": "offers", "source": "api"},
                {"topic": "newsletter", "source": "api"},
                {"topic": "offers", "source": "api"},  # the same topic twice: one event
            ],
        },
        headers=bearer(ops_key),
    )
    assert reply.status_code == 201, reply.get_json()
    topics = reply.get_json()["topics"]
    assert "events" not in topics
    with db.session(read_only=True) as s:
        person = s.scalar(select(Subscriber).where(Subscriber.public_id == reply.get_json()["id"]))
        assert topics == {k: v.value for k, v in consent.states(s, person).items()}
        assert (
            len(
                s.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == person.id)).all()
            )
            == 2
        )
    assert topics["offers"] == "opted_in" and topics["newsletter"] == "pending"


def test_an_address_registered_a_moment_ago_is_treated_as_existing(db, monkeypatch):
    """Promise: when another request registers the address between the lookup and the
    INSERT (simulated: the lookup misses the person), the INSERT writes nothing and the
    person is updated as an existing one: one person, no error, `created` false."""
    evidence = Evidence(source="api", actor="test")
    with db.transaction() as s:
        first, created = subscribers.register(
            s, email="cy@example.com", attributes={}, consents=[], hash_key="k", evidence=evidence
        )
        assert created
    real = subscribers.lookup
    monkeypatch.setattr(
        subscribers, "lookup", lambda s, address, _hashed: real(s, address, "0" * 64)
    )
    with db.transaction() as s:
        again, created = subscribers.register(
            s,
            email="cy@example.com",
            attributes={"plan": "pro"},
            consents=[ConsentRequest("offers", evidence)],
            hash_key="k",
            evidence=evidence,
        )
        assert not created and again.id == first.id
    assert count(db, Subscriber.id) == 1
    with db.session(read_only=True) as s:
        person = s.get(Subscriber, first.id)
        assert person.attributes == {"plan": "pro"}
        assert consent.states(s, person)["offers"].value == "opted_in"
