"""The subscriber API (docs/api.md): create, read, consents, erase, export; least access."""

from __future__ import annotations

from sqlalchemy import select

from mailprefs.domain.models import AuditEntry, ConsentEvent, Subscriber
from tests.conftest import bearer, count

NEW = {
    "email": "Jane.Doe@Example.com",
    "attributes": {"first_name": "Jane", "plan": "pro"},
    "consents": [
        {
            "topic": "offers",
            "source": "web_form",
            "ip": "198.51.100.7",
            "user_agent": "Firefox/130",
            "at": "2026-11-01T10:00:00+01:00",
        },
        {"topic": "newsletter", "source": "web_form"},
    ],
}


def create(client, key, body=NEW):
    return client.post("/api/v1/subscribers", json=body, headers=bearer(key))


def counts(db):
    return count(db, Subscriber.id), count(db, ConsentEvent.id)


def test_create_answers_201_then_200_with_states_and_no_personal_data(client, marketing_key):
    first = create(client, marketing_key)
    assert first.status_code == 201
    body = first.get_json()
    assert set(body) == {"id", "status", "topics"}
    assert body["status"] == "active"
    assert body["topics"]["offers"] == "opted_in"
    assert body["topics"]["newsletter"] == "pending"  # double opt-in
    assert body["topics"]["account"] == "none"
    assert "jane" not in first.get_data(as_text=True).lower()
    again = create(client, marketing_key, {"email": "jane.doe@example.com"})
    assert again.status_code == 200 and again.get_json()["id"] == body["id"]


def test_consent_evidence_is_stored_as_given(client, marketing_key, ops_key):
    public_id = create(client, marketing_key).get_json()["id"]
    detail = client.get(f"/api/v1/subscribers/{public_id}", headers=bearer(ops_key)).get_json()
    offers = next(e for e in detail["consent_history"] if e["topic"] == "offers")
    assert offers["ip"] == "198.51.100.7" and offers["user_agent"] == "Firefox/130"
    assert offers["source"] == "web_form" and offers["policy_version"] == "2011-07-06"
    assert offers["at"].startswith("2026-11-01T09:00:00")
    assert offers["actor"].startswith("key:mp_")
    assert detail["email"] == "jane.doe@example.com"


def test_marketing_keys_never_read_personal_data(client, marketing_key):
    public_id = create(client, marketing_key).get_json()["id"]
    for path in (f"/api/v1/subscribers/{public_id}", f"/api/v1/subscribers/{public_id}/export"):
        response = client.get(path, headers=bearer(marketing_key))
        assert response.status_code == 403
        assert response.mimetype == "application/problem+json"
        assert "jane" not in response.get_data(as_text=True).lower()
    changed = client.post(
        f"/api/v1/subscribers/{public_id}/consents",
        headers=bearer(marketing_key),
        json={"topic": "offers", "action": "opt_out", "source": "api"},
    )
    assert changed.status_code == 201
    assert set(changed.get_json()) == {"id", "status", "topics", "changed"}


def test_staff_reads_are_audited(client, marketing_key, ops_key, session):
    public_id = create(client, marketing_key).get_json()["id"]
    client.get(f"/api/v1/subscribers/{public_id}", headers=bearer(ops_key))
    client.get(f"/api/v1/subscribers/{public_id}/export", headers=bearer(ops_key))
    actions = session.scalars(
        select(AuditEntry.action).where(AuditEntry.target_id == public_id)
    ).all()
    assert actions == ["subscriber.read", "subscriber.export"]
    entries = session.scalars(select(AuditEntry)).all()
    assert all("jane" not in repr(e.detail).lower() for e in entries)


def test_consent_change_is_recorded_once(client, marketing_key):
    public_id = create(client, marketing_key).get_json()["id"]
    body = {"topic": "offers", "action": "opt_out", "source": "api"}
    first = client.post(
        f"/api/v1/subscribers/{public_id}/consents", json=body, headers=bearer(marketing_key)
    )
    second = client.post(
        f"/api/v1/subscribers/{public_id}/consents", json=body, headers=bearer(marketing_key)
    )
    assert first.get_json()["changed"] is True and second.get_json()["changed"] is False
    assert second.get_json()["topics"]["offers"] == "opted_out"


def test_opting_out_of_an_administrative_topic_is_refused(client, marketing_key):
    public_id = create(client, marketing_key).get_json()["id"]
    response = client.post(
        f"/api/v1/subscribers/{public_id}/consents",
        headers=bearer(marketing_key),
        json={"topic": "policy", "action": "opt_out", "source": "api"},
    )
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "topic"


def test_erase_then_the_address_answers_409_and_stores_nothing(client, marketing_key, ops_key, db):
    public_id = create(client, marketing_key).get_json()["id"]
    assert (
        client.delete(f"/api/v1/subscribers/{public_id}", headers=bearer(ops_key)).status_code
        == 204
    )
    assert (
        client.delete(f"/api/v1/subscribers/{public_id}", headers=bearer(ops_key)).status_code
        == 204
    )
    before = counts(db)
    again = create(
        client,
        marketing_key,
        {"email": "JANE.DOE@example.com", "consents": [{"topic": "offers", "source": "api"}]},
    )
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"
    assert counts(db) == before
    for path in (f"/api/v1/subscribers/{public_id}", f"/api/v1/subscribers/{public_id}/export"):
        gone = client.get(path, headers=bearer(ops_key))
        assert gone.status_code == 404 and gone.mimetype == "application/problem+json"
        assert "jane" not in gone.get_data(as_text=True).lower()


def test_marking_under_13_erases(client, marketing_key, ops_key):
    public_id = create(client, marketing_key).get_json()["id"]
    assert (
        client.post(
            f"/api/v1/subscribers/{public_id}/underage", headers=bearer(ops_key)
        ).status_code
        == 204
    )
    assert (
        client.get(f"/api/v1/subscribers/{public_id}", headers=bearer(ops_key)).status_code == 404
    )
    again = create(client, marketing_key, {"email": "jane.doe@example.com"})
    assert again.status_code == 409


def test_export_has_everything(client, marketing_key, ops_key):
    public_id = create(client, marketing_key).get_json()["id"]
    export = client.get(
        f"/api/v1/subscribers/{public_id}/export", headers=bearer(ops_key)
    ).get_json()
    assert export["email"] == "jane.doe@example.com"
    assert export["attributes"] == {"first_name": "Jane", "plan": "pro"}
    assert len(export["consent_events"]) == 2
    assert {"messages", "suppressions", "complaints", "bounces"} <= set(export)


def test_unknown_subscriber_is_404_problem(client, ops_key):
    response = client.get("/api/v1/subscribers/doesnotexist", headers=bearer(ops_key))
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_topics_lists_the_catalogue_for_any_role(client, transactional_key):
    topics = client.get("/api/v1/topics", headers=bearer(transactional_key)).get_json()
    kinds = {t["slug"]: (t["kind"], t["double_opt_in"]) for t in topics}
    assert kinds["account"] == ("administrative", False)
    assert kinds["newsletter"] == ("marketing", True)


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"


def test_healthz_reports_an_unreachable_database(tmp_path):
    from mailprefs import create_app

    app = create_app(
        {
            "MAILPREFS_ENV": "testing",
            "SECRET_KEY": "k" * 20,
            "DATABASE_URL": f"sqlite:///{tmp_path}/missing-dir/nope.db",
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"
