"""POST/GET /api/v1/policies: ops announce, marketing cannot, dates and versions checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain.outbox_models import Campaign, CampaignKind, CampaignStatus, PolicyVersion
from tests.conftest import bearer
from tests.support.factories import person

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def app_config(sink):
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port}


def body(**change):
    return {
        "version": "2026-04-01",
        "title": "Clearer retention periods",
        "summary": "We now say how long we keep each kind of data.",
        "url": "https://example.test/privacy/2026-04-01",
        "effective_at": (T0 + timedelta(days=31)).isoformat(),
        **change,
    }


def post(client, key, payload, headers=None):
    return client.post("/api/v1/policies", json=payload, headers={**bearer(key), **(headers or {})})


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.get_json()


def test_ops_announce_a_policy_201_and_its_notice_is_scheduled_at_announce_at(client, ops_key, db):
    """An ops key announces a version: 201, the version recorded, an administrative
    notice campaign scheduled at announce_at (default now)."""
    clock.freeze(T0)
    response = post(client, ops_key, body())
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert answer["version"] == "2026-04-01" and answer["kind"] == "change"
    assert answer["announce_at"].startswith("2026-03-02T09:00:00")
    assert answer["in_force"] is False
    assert answer["broadcast"]["status"] == "scheduled"
    with db.session(read_only=True) as s:
        policy = s.query(PolicyVersion).filter_by(version="2026-04-01").one()
        campaign = s.get(Campaign, policy.campaign_id)
        assert campaign.kind == CampaignKind.POLICY
        assert campaign.topic.slug == "policy" and campaign.topic.kind.value == "administrative"
        assert campaign.status == CampaignStatus.SCHEDULED and campaign.send_at == T0
        assert campaign.meta["policy_version"] == "2026-04-01"


def test_marketing_keys_cannot_announce_or_read_policies_403(client, marketing_key, db):
    """Marketing keys get 403 on every policy route and nothing is recorded."""
    clock.freeze(T0)
    assert problem(post(client, marketing_key, body()), 403)["status"] == 403
    problem(client.get("/api/v1/policies", headers=bearer(marketing_key)), 403)
    with db.session(read_only=True) as s:
        assert s.query(PolicyVersion).filter_by(version="2026-04-01").count() == 0


def test_marketing_keys_cannot_create_campaigns_on_any_administrative_topic(
    client, marketing_key, db
):
    """No campaign on an administrative topic (account, policy) with a marketing key."""
    for topic in ("account", "policy"):
        response = client.post(
            "/api/v1/campaigns",
            json={"topic": topic, "subject": "Hi", "text": "Hello"},
            headers=bearer(marketing_key),
        )
        problem(response, 403)
    with db.session(read_only=True) as s:
        assert s.query(Campaign).count() == 0


def test_a_known_version_answers_409(client, ops_key):
    """Announcing a version twice is a conflict; the first stays as it was."""
    clock.freeze(T0)
    assert post(client, ops_key, body()).status_code == 201
    again = problem(post(client, ops_key, body(title="Another title")), 409)
    assert "exists" in again["detail"]
    # The version in force since installation is known too.
    problem(post(client, ops_key, body(version="2011-07-06")), 409)


def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer(client, ops_key, db):
    """Idempotency-Key: a retried announcement answers 201 again, one version recorded."""
    clock.freeze(T0)
    headers = {"Idempotency-Key": "announce-2026-04"}
    first = post(client, ops_key, body(), headers)
    again = post(client, ops_key, body(), headers)
    assert first.status_code == again.status_code == 201
    assert first.get_json()["broadcast"]["id"] == again.get_json()["broadcast"]["id"]
    with db.session(read_only=True) as s:
        assert s.query(Campaign).filter_by(kind=CampaignKind.POLICY).count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # Less than 30 days' notice (announce now).
        ({"effective_at": (T0 + timedelta(days=29, hours=23)).isoformat()}, "effective_at"),
        # Less than 30 days between a later announcement and the effective date.
        (
            {
                "announce_at": (T0 + timedelta(days=2)).isoformat(),
                "effective_at": (T0 + timedelta(days=31)).isoformat(),
            },
            "effective_at",
        ),
        # In the past beyond the clients' clock skew (within it, it means now).
        ({"announce_at": (T0 - timedelta(minutes=6)).isoformat()}, "announce_at"),
        ({"effective_at": "2026-05-01T00:00:00"}, "effective_at"),  # no offset
        ({"effective_at": "0001-01-01T00:00:00+01:00"}, "effective_at"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"version": "../etc"}, "version"),
        ({"title": "   "}, "title"),
        ({"title": "Two\nlines"}, "title"),
        ({"summary": "nul\u0000byte"}, "summary"),
        ({"kind": "merger"}, "kind"),
    ],
)
def test_bad_dates_and_fields_answer_422_naming_the_field(client, ops_key, db, change, field):
    """A notice period shorter than MAILPREFS_POLICY_NOTICE_DAYS, an announcement in the
    past, dates without an offset, unsafe URLs or text: 422 naming the field, nothing
    recorded."""
    clock.freeze(T0)
    answer = problem(post(client, ops_key, body(**change)), 422)
    assert field in {e["field"] for e in answer["errors"]}, answer
    with db.session(read_only=True) as s:
        assert s.query(PolicyVersion).filter_by(version="2026-04-01").count() == 0


def test_versions_take_effect_in_order(client, ops_key):
    """A version effective no later than an earlier-announced one is refused (422)."""
    clock.freeze(T0)
    assert post(client, ops_key, body()).status_code == 201
    earlier = body(version="2026-03-30", effective_at=(T0 + timedelta(days=30)).isoformat())
    answer = problem(post(client, ops_key, earlier), 422)
    assert answer["errors"][0]["field"] == "effective_at"


def test_a_withdrawn_version_does_not_hold_back_the_next(client, ops_key, db):
    """A version whose notice was cancelled never takes effect, so a corrected version
    may take effect before the withdrawn one's date (under a new version name)."""
    from mailprefs.domain import campaigns, policies

    clock.freeze(T0)
    assert (
        post(client, ops_key, body(effective_at=(T0 + timedelta(days=60)).isoformat())).status_code
        == 201
    )
    with db.transaction() as s:
        campaigns.cancel(s, policies.get(s, "2026-04-01").campaign, "test")
    corrected = body(version="2026-04-01b", effective_at=(T0 + timedelta(days=40)).isoformat())
    assert post(client, ops_key, corrected).status_code == 201
    assert problem(post(client, ops_key, body()), 409)["status"] == 409


def test_the_notice_period_is_configurable(app, client, ops_key):
    """MAILPREFS_POLICY_NOTICE_DAYS sets the minimum notice."""
    clock.freeze(T0)
    app.config["MAILPREFS_POLICY_NOTICE_DAYS"] = 40
    problem(post(client, ops_key, body()), 422)
    app.config["MAILPREFS_POLICY_NOTICE_DAYS"] = 7
    later = body(effective_at=(T0 + timedelta(days=7)).isoformat())
    assert post(client, ops_key, later).status_code == 201


def test_list_and_get_show_versions_with_progress_counts(app, client, ops_key, db, sink):
    """GET lists every version (latest first) and one version with its notice's progress:
    planned, sent, blocked by reason, failed, pending."""
    clock.freeze(T0)
    with db.transaction() as s:
        person(s, "a@example.com")
        person(s, "b@example.com", opted_in=("offers",))
        gone = person(s, "gone@example.com")
        from mailprefs.domain import subscribers
        from tests.support.factories import evidence

        subscribers.deactivate(s, gone, evidence("preference_page"))
    assert post(client, ops_key, body()).status_code == 201
    Worker(app).run_due()
    listed = client.get("/api/v1/policies", headers=bearer(ops_key)).get_json()
    assert [p["version"] for p in listed] == ["2026-04-01", "2011-07-06"]
    assert listed[1]["in_force"] is True and listed[1]["broadcast"] is None
    one = client.get("/api/v1/policies/2026-04-01", headers=bearer(ops_key)).get_json()
    stats = one["broadcast"]["stats"]
    assert stats["planned"] == 3 and stats["sent"] == 2 and stats["pending"] == 0
    assert stats["blocked"] == {"deactivated": 1} and stats["failed"] == 0
    # Still taking newcomers until the policy takes effect.
    assert one["broadcast"]["status"] == "sending"
    problem(client.get("/api/v1/policies/1999-01-01", headers=bearer(ops_key)), 404)
    # Once in force, the version says so.
    clock.advance(timedelta(days=32))
    Worker(app).run_due()
    one = client.get("/api/v1/policies/2026-04-01", headers=bearer(ops_key)).get_json()
    assert one["in_force"] is True and one["broadcast"]["status"] == "sent"
