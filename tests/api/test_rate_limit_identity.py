"""Issue 13 finding 5: rate limits count per authenticated key, else per client address;
what a client writes in `Authorization` cannot buy it a fresh budget."""

from __future__ import annotations

import pytest

from tests.conftest import bearer
from tests.dashboard.conftest import csrf_token

LIMITED = [{"MAILPREFS_API_RATE_LIMIT": "3 per minute"}]


@pytest.mark.parametrize("app_config", LIMITED)
def test_rotating_fake_keys_share_the_client_address_budget(client):
    for i in range(3):
        answer = client.get("/api/v1/topics", headers=bearer(f"fake-key-{i}"))
        assert answer.status_code == 401
    limited = client.get("/api/v1/topics", headers=bearer("fake-key-99"))
    assert limited.status_code == 429
    # Without any header the same address is counted in the same bucket.
    assert client.get("/api/v1/topics").status_code == 429


@pytest.mark.parametrize("app_config", LIMITED)
def test_spelling_the_header_differently_does_not_reset_a_keys_budget(client, marketing_key):
    spellings = [
        f"Bearer {marketing_key}",
        f"Bearer  {marketing_key}",
        f"bearer {marketing_key}",
        f"BEARER {marketing_key} ",
    ]
    answers = [
        client.get("/api/v1/topics", headers={"Authorization": h}).status_code for h in spellings
    ]
    assert answers == [200, 200, 200, 429]


@pytest.mark.parametrize("app_config", LIMITED)
def test_a_real_key_has_its_own_budget_apart_from_its_address(client, marketing_key):
    for i in range(3):
        client.get("/api/v1/topics", headers=bearer(f"fake-key-{i}"))
    assert client.get("/api/v1/topics", headers=bearer(marketing_key)).status_code == 200


def test_the_login_limit_is_not_reset_by_a_fake_authorization_header(client):
    """The dashboard allows 20 login attempts a minute per address, headers or not."""
    token = csrf_token(client, "/dashboard/login")
    statuses = [
        client.post(
            "/dashboard/login",
            data={"csrf_token": token, "email": "x@example.com", "password": "wrong password"},
            headers=bearer(f"fake-{i}"),
        ).status_code
        for i in range(21)
    ]
    assert 429 not in statuses[:20] and statuses[20] == 429
