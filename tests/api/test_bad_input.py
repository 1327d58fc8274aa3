"""Bad input gets a clear 4xx problem+json and changes nothing; never a 500."""

from __future__ import annotations

import pytest

from mailprefs.domain import apikeys
from mailprefs.domain.models import ConsentEvent, Subscriber
from tests.conftest import bearer, count

URL = "/api/v1/subscribers"


def stored(db):
    return count(db, Subscriber.id), count(db, ConsentEvent.id)


def assert_problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ('{"email": ', 400, "body"),
        ("[1, 2]", 422, "body"),
        ('{"email": 42}', 422, "email"),
        ('{"email": "x@example.com", "attributes": []}', 422, "attributes"),
        ('{"email": "x@example.com", "surprise": true}', 422, "surprise"),
        ('{"email": "not an address"}', 422, "email"),
        ('{"email": "a@example.com\\r\\nBcc: victim@example.org"}', 422, "email"),
        (
            '{"email": "x@example.com", "consents": [{"topic": "nope", "source": "api"}]}',
            422,
            "consents.0.topic",
        ),
        (
            '{"email": "x@example.com", "consents": [{"topic": "offers", "source": "magic"}]}',
            422,
            "consents.0.source",
        ),
        (
            '{"email": "x@example.com", "consents": [{"topic": "offers", "source": "api", "ip": "999.1.1.1"}]}',
            422,
            "consents.0.ip",
        ),
        (
            '{"email": "x@example.com", "consents": [{"topic": "offers", "source": "api", "at": "2026-01-01T00:00:00"}]}',
            422,
            "consents.0.at",
        ),
        (
            '{"email": "x@example.com", "consents": [{"topic": "offers", "source": "api", "user_agent": "a\\nb"}]}',
            422,
            "consents.0.user_agent",
        ),
        ('{"email": "x@example.com", "attributes": {"bad key": 1}}', 422, "attributes.bad key"),
        ('{"email": "x@example.com", "attributes": {"age": 7}}', 422, "attributes.age"),
        (
            '{"email": "x@example.com", "attributes": {"nested": {"a": 1}}}',
            422,
            "attributes.nested",
        ),
        (
            '{"email": "x@example.com", "consents": [{"topic": "offers", "source": "api", "at": "2999-01-01T00:00:00Z"}]}',
            422,
            "at",
        ),
    ],
)
def test_invalid_bodies_are_422_naming_the_field_and_store_nothing(
    client, marketing_key, db, body, status, field
):
    before = stored(db)
    response = client.post(
        URL, data=body, content_type="application/json", headers=bearer(marketing_key)
    )
    problem = assert_problem(response, status)
    assert field in [e["field"] for e in problem.get("errors", [])], problem
    assert stored(db) == before


def test_a_20_mib_body_is_413(client, marketing_key, db):
    before = stored(db)
    blob = b'{"email": "x@example.com", "attributes": {"a": "' + b"x" * (20 * 1024 * 1024) + b'"}}'
    response = client.post(
        URL, data=blob, content_type="application/json", headers=bearer(marketing_key)
    )
    assert_problem(response, 413)
    assert stored(db) == before


def test_a_non_json_body_is_415(client, marketing_key):
    response = client.post(
        URL,
        data="email=x@example.com",
        headers=bearer(marketing_key),
        content_type="application/x-www-form-urlencoded",
    )
    assert_problem(response, 415)


def test_missing_key_is_401_with_a_challenge(client):
    response = client.post(URL, json={"email": "x@example.com"})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer ", "mp_x"])
def test_bad_keys_are_401(client, header, db):
    before = stored(db)
    response = client.post(URL, json={"email": "x@example.com"}, headers={"Authorization": header})
    assert_problem(response, 401)
    assert stored(db) == before


def test_a_revoked_key_is_401(client, db):
    with db.transaction() as s:
        row, secret = apikeys.create(s, "marketing")
    assert client.get("/api/v1/topics", headers=bearer(secret)).status_code == 200
    with db.transaction() as s:
        apikeys.revoke(s, row.prefix)
    before = stored(db)
    assert_problem(client.post(URL, json={"email": "x@example.com"}, headers=bearer(secret)), 401)
    assert stored(db) == before


def test_a_foreign_role_is_403_and_changes_nothing(client, transactional_key, db):
    before = stored(db)
    response = client.post(URL, json={"email": "x@example.com"}, headers=bearer(transactional_key))
    assert_problem(response, 403)
    assert stored(db) == before


def test_unknown_route_and_method_are_problems(client, ops_key):
    assert_problem(client.get("/api/v1/nowhere", headers=bearer(ops_key)), 404)
    response = client.put("/api/v1/topics", headers=bearer(ops_key))
    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_an_unexpected_error_is_a_500_problem_and_rolls_back(
    client, marketing_key, db, monkeypatch
):
    """The last resort: a bug answers problem+json 500 and leaves nothing half-written."""
    from mailprefs.domain import consent

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(consent, "change", broken)
    before = stored(db)
    response = client.post(
        URL,
        headers=bearer(marketing_key),
        json={"email": "x@example.com", "consents": [{"topic": "offers", "source": "api"}]},
    )
    body = assert_problem(response, 500)
    assert "simulated" not in body["detail"]
    assert stored(db) == before


@pytest.mark.parametrize("app_config", [{"MAILPREFS_API_RATE_LIMIT": "3 per minute"}])
def test_rate_limit_is_per_key_with_retry_after(client, marketing_key, ops_key):
    for _ in range(3):
        assert client.get("/api/v1/topics", headers=bearer(marketing_key)).status_code == 200
    limited = client.get("/api/v1/topics", headers=bearer(marketing_key))
    assert_problem(limited, 429)
    assert int(limited.headers["Retry-After"]) > 0
    # Another key has its own budget.
    assert client.get("/api/v1/topics", headers=bearer(ops_key)).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/subscribers", {"email": "x@example.com", "attributes": {"name": "a\u0000b"}}),
        ("/api/v1/campaigns", {"topic": "offers", "subject": "s", "text": "nul\u0000here"}),
        ("/api/v1/messages", {"topic": "account", "to": "ab\u0000cd", "subject": "s", "text": "t"}),
    ],
)
def test_nul_characters_are_refused_not_a_500(client, ops_key, path, body):
    """PostgreSQL cannot store NUL: the API refuses it with 422 on both databases."""
    assert_problem(client.post(path, json=body, headers=bearer(ops_key)), 422)


def test_nul_in_a_path_id_is_404(client, ops_key):
    assert_problem(client.get("/api/v1/subscribers/ab%00cd", headers=bearer(ops_key)), 404)
