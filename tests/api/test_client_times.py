"""Every time a client sends is judged alike: "now" by its clock (a little behind or ahead
of ours, within the same 5-minute allowance) means now; further off is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailprefs import clock
from mailprefs.domain.models import ConsentEvent
from mailprefs.domain.outbox_models import Campaign, PolicyVersion
from tests.conftest import bearer

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WITHIN = timedelta(minutes=4, seconds=59)
BEYOND = timedelta(minutes=5, seconds=1)


def announce(client, key, announce_at: datetime):
    policy = {"version": "2026-04-05", "title": "Clearer retention periods"}
    policy["summary"] = "We now say how long we keep each kind of data."
    policy["url"] = "https://example.test/privacy/2026-04-05"
    policy["effective_at"] = (T0 + timedelta(days=31)).isoformat()
    policy["announce_at"] = announce_at.isoformat()
    return client.post("/api/v1/policies", headers=bearer(key), json=policy)


def register(client, key, at: datetime):
    consent = {"topic": "offers", "source": "web_form", "at": at.isoformat()}
    person = {"email": "clock@example.com", "consents": [consent]}
    return client.post("/api/v1/subscribers", headers=bearer(key), json=person)


@pytest.mark.parametrize("late", [timedelta(milliseconds=3), WITHIN])
def test_a_policy_announce_at_of_now_by_the_clients_clock_is_announced_now(
    client, ops_key, db, late
):
    """announce_at a few milliseconds (up to the skew) old on arrival: 201, announced
    now, its notice scheduled now; the same allowance as a campaign's send_at."""
    clock.freeze(T0)
    response = announce(client, ops_key, T0 - late)
    assert response.status_code == 201, response.get_json()
    with db.session(read_only=True) as s:
        policy = s.query(PolicyVersion).filter_by(version="2026-04-05").one()
        assert policy.announce_at == T0
        assert s.get(Campaign, policy.campaign_id).send_at == T0


def test_a_policy_announce_at_older_than_the_skew_is_refused_and_nothing_recorded(
    client, ops_key, db
):
    """announce_at beyond the allowance in the past: 422 naming announce_at, nothing stored."""
    clock.freeze(T0)
    response = announce(client, ops_key, T0 - BEYOND)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert [e["field"] for e in response.get_json()["errors"]] == ["announce_at"]
    assert "in the past" in response.get_json()["errors"][0]["detail"]
    with db.session(read_only=True) as s:
        assert s.query(PolicyVersion).filter_by(version="2026-04-05").count() == 0


def test_a_campaign_send_at_is_judged_with_the_same_allowance(client, marketing_key):
    """send_at: just within the allowance is now (201), just beyond is refused (422)."""
    clock.freeze(T0)
    campaign = {"topic": "offers", "subject": "Hello", "text": "Hi"}
    ok = client.post(
        "/api/v1/campaigns",
        headers=bearer(marketing_key),
        json={**campaign, "send_at": (T0 - WITHIN).isoformat()},
    )
    assert ok.status_code == 201, ok.get_json()
    refused = client.post(
        "/api/v1/campaigns",
        headers=bearer(marketing_key),
        json={**campaign, "send_at": (T0 - BEYOND).isoformat()},
    )
    assert refused.status_code == 422
    assert [e["field"] for e in refused.get_json()["errors"]] == ["send_at"]


def test_a_consent_at_from_a_client_clock_running_fast_is_taken_as_now(client, ops_key, db):
    """A consent's `at` a little ahead of our clock (within the allowance) happened now:
    201 and the event is dated now, never in our future."""
    clock.freeze(T0)
    response = register(client, ops_key, T0 + WITHIN)
    assert response.status_code == 201, response.get_json()
    with db.session(read_only=True) as s:
        dates = {e.occurred_at for e in s.query(ConsentEvent).all()}
        assert T0 in dates and max(dates) == T0


def test_a_consent_at_beyond_the_skew_in_the_future_is_refused_and_nothing_stored(
    client, ops_key, db
):
    """A consent dated beyond the allowance ahead: 422, nobody registered."""
    clock.freeze(T0)
    response = register(client, ops_key, T0 + BEYOND)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    with db.session(read_only=True) as s:
        assert s.query(ConsentEvent).count() == 0


@pytest.mark.parametrize(("ahead", "status"), [(WITHIN, 202), (BEYOND, 422)])
def test_a_bounce_event_at_is_judged_with_the_same_allowance(client, ops_key, ahead, status):
    """A bounce event dated ahead of our clock: accepted within the allowance, refused beyond."""
    clock.freeze(T0)
    response = client.post(
        "/api/v1/events/bounces",
        headers=bearer(ops_key),
        json={
            "events": [
                {
                    "type": "bounce",
                    "bounce": "soft",
                    "email": "nobody@example.com",
                    "at": (T0 + ahead).isoformat(),
                }
            ]
        },
    )
    assert response.status_code == status, response.get_json()
