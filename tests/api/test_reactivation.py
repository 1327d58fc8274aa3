"""Issue 13 finding 13: a person who closed their account is not brought back by a key.

The policy: whoever opted out entirely must re-register themselves. A bare registration
sent with an API key answers 409 and changes nothing; one with consents answers 202 and
changes nothing either (it asks the person, tests/api/test_reactivation_request.py); the
domain reopens an account only for a path that acts for the person."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailprefs.domain import consent, subscribers
from mailprefs.domain.models import ConsentEvent, Subscriber, SubscriberStatus
from tests.conftest import _key, bearer
from tests.support.factories import HASH_KEY, evidence, person


@pytest.mark.parametrize("role", ["marketing", "ops"])
@pytest.mark.parametrize(
    "body",
    [{}, {"consents": [{"topic": "offers", "source": "web_form", "ip": "192.0.2.1"}]}],
    ids=["bare", "with-consent"],
)
def test_a_key_alone_cannot_reactivate_a_closed_account(client, db, role, body):
    """Bare: 409. With consents: 202 `pending_reactivation`. Either way the account stays
    closed and no consent event is recorded."""
    with db.transaction() as s:
        closed = person(s, "closed@example.com", opted_in=("offers",))
        subscribers.deactivate(s, closed, evidence("preference_page"))
        closed_id = closed.id
    with db.session(read_only=True) as s:
        events_before = len(s.scalars(select(ConsentEvent.id)).all())
    response = client.post(
        "/api/v1/subscribers",
        json={"email": "closed@example.com", **body},
        headers=bearer(_key(db, role)),
    )
    if body:
        assert response.status_code == 202, response.get_data(as_text=True)
        assert response.get_json()["status"] == "pending_reactivation"
    else:
        assert response.status_code == 409, response.get_data(as_text=True)
        assert response.mimetype == "application/problem+json"
        assert "closed" in response.get_json()["detail"]
    with db.session(read_only=True) as s:
        assert s.get(Subscriber, closed_id).status == SubscriberStatus.DEACTIVATED
        assert len(s.scalars(select(ConsentEvent.id)).all()) == events_before


def test_the_domain_reopens_only_for_the_person(db):
    """`reopen=True` is for a path that acts for the person themselves (a registration
    they confirmed): then the account is active again, the ledger says so."""
    with db.transaction() as s:
        closed = person(s, "closed@example.com", opted_in=("offers",))
        subscribers.deactivate(s, closed, evidence("preference_page"))
        again, created = subscribers.register(
            s,
            email="closed@example.com",
            attributes={},
            consents=[],
            hash_key=HASH_KEY,
            evidence=evidence("confirmation"),
            reopen=True,
        )
        assert not created and again.status == SubscriberStatus.ACTIVE
        assert [e.action.value for e in consent.history(s, again)][-1] == "reactivate"
