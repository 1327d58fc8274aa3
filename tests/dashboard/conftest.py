"""Dashboard fixtures: an ops and an admin login, clients logged in as each, and the
helpers that read a page's CSRF token and post a form with it."""

from __future__ import annotations

import re

import pytest

from mailprefs.domain import users

OPS = ("ops@example.com", "ops-password-123")
ADMIN = ("admin@example.com", "admin-password-123")
TOKEN = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


def csrf_token(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code)
    match = TOKEN.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1) or match.group(2)


def post_form(client, path: str, data: dict | None = None, *, token_from: str, **kw):
    """POST a form the way a browser does: with the token from the page that shows it."""
    token = csrf_token(client, token_from)
    # Forms with a prefix name their token "<prefix>-csrf_token", as a browser sends it.
    tokens = {f"{p}csrf_token": token for p in ("", "search-", "add-", "key-", "user-")}
    return client.post(path, data={**tokens, **(data or {})}, **kw)


def login(client, email: str, password: str):
    return post_form(
        client,
        "/dashboard/login",
        {"email": email, "password": password},
        token_from="/dashboard/login",
    )


@pytest.fixture
def staff(db) -> dict[str, int]:
    with db.transaction() as s:
        ops = users.create(s, OPS[0], "ops", OPS[1])
        admin = users.create(s, ADMIN[0], "admin", ADMIN[1])
        return {"ops": ops.id, "admin": admin.id}


@pytest.fixture
def ops_client(app, staff):
    client = app.test_client()
    reply = login(client, *OPS)
    assert reply.status_code == 302, reply.get_data(as_text=True)
    return client


@pytest.fixture
def admin_client(app, staff):
    client = app.test_client()
    reply = login(client, *ADMIN)
    assert reply.status_code == 302
    return client
