"""Issue 13 finding 1: a non-finite number (NaN, Infinity, 1e400) never gets in, and a
row holding one cannot stop audience counts or sending for everyone else."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mailprefs.delivery.worker import Worker
from mailprefs.domain import subscribers
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import ConsentEvent, Subscriber
from mailprefs.domain.outbox_models import Campaign
from tests.conftest import bearer, count
from tests.support.factories import evidence, person

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


@pytest.fixture
def app_config(relay_config):
    return relay_config


def refused_fields(client, key: str, path: str, body: str) -> list[str]:
    """POST `body` as written (`json=` cannot carry NaN): a 422 problem, the fields it names."""
    response = client.post(path, data=body, content_type="application/json", headers=bearer(key))
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return [e["field"] for e in response.get_json()["errors"]]


@pytest.mark.parametrize("number", NON_FINITE)
def test_a_non_finite_attribute_is_refused_with_422_and_nothing_is_stored(
    client, marketing_key, db, number
):
    body = '{"email": "a@example.com", "attributes": {"a": NUMBER}}'.replace("NUMBER", number)
    fields = refused_fields(client, marketing_key, "/api/v1/subscribers", body)
    assert fields == ["attributes.a"]
    assert count(db, Subscriber.id) == 0 and count(db, ConsentEvent.id) == 0


@pytest.mark.parametrize("number", ["NaN", "1e400"])
def test_a_non_finite_audience_value_is_refused_with_422(client, marketing_key, db, number):
    body = (
        '{"topic": "offers", "subject": "S", "text": "T", "audience": {"attributes": {"a": N}}}'
    ).replace("N}", number + "}")
    fields = refused_fields(client, marketing_key, "/api/v1/campaigns", body)
    assert fields == ["audience.attributes.a"]
    assert count(db, Campaign.id) == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1, float("-inf")]])
def test_the_domain_refuses_non_finite_attributes_from_any_door(db, value):
    """Imports and pages register through the domain: it refuses too, naming the field."""
    with db.transaction() as s, pytest.raises(Invalid) as refused:
        subscribers.register(
            s,
            email="a@example.com",
            attributes={"score": value},
            consents=[],
            hash_key="test-hash-key",
            evidence=evidence(),
        )
    assert refused.value.errors[0]["field"].startswith("attributes.score")
    assert count(db, Subscriber.id) == 0


@pytest.mark.sqlite_only
def test_a_nan_row_stored_before_the_fix_is_repaired_and_audiences_and_sending_work(
    client, marketing_key, db, app, sink
):
    """SQLite stored whatever text it was given: a row written before the fix (NaN in its
    attributes) broke every audience query with a condition. Migration 0003s repairs it,
    and then audience counts and the send work for everyone."""
    from alembic import command

    from mailprefs.migrate import alembic_config, upgrade

    with db.transaction() as s:
        person(s, "good@example.com", opted_in=("offers",), attributes={"a": 1})
        bad = person(s, "bad@example.com", opted_in=("offers",))
    command.downgrade(alembic_config(db), "0003s-1")
    with db.transaction() as s:
        s.execute(
            text("UPDATE subscribers SET attributes = :raw WHERE id = :id"),
            {"raw": '{"a": NaN, "b": [Infinity], "c": "kept"}', "id": bad.id},
        )
    upgrade(db)
    with db.session(read_only=True) as s:
        assert s.get(Subscriber, bad.id).attributes == {"a": None, "b": [None], "c": "kept"}
    created = client.post(
        "/api/v1/campaigns",
        json={"topic": "offers", "subject": "S", "text": "T", "audience": {"attributes": {"a": 1}}},
        headers=bearer(marketing_key),
    ).get_json()["id"]
    counted = client.get(f"/api/v1/campaigns/{created}/audience", headers=bearer(marketing_key))
    assert counted.status_code == 200, counted.get_data(as_text=True)
    assert counted.get_json()["allowed"] == 1
    client.post(f"/api/v1/campaigns/{created}/schedule", json={}, headers=bearer(marketing_key))
    Worker(app).run_due()
    assert [r for m in sink.messages for r in m[1]] == ["good@example.com"]


def test_the_json_serializer_refuses_non_finite_numbers_as_a_last_line(db):
    """No code path can store NaN: the engine's serializer refuses it (nothing written)."""
    from sqlalchemy.exc import StatementError

    with pytest.raises((StatementError, ValueError)), db.transaction() as s:
        subscriber = person(s, "a@example.com")
        subscriber.attributes = {"x": float("nan")}
        s.flush()
    assert count(db, Subscriber.id) == 0
