"""Staff login: every page needs it, a generic message on failure, lockout after repeated
failures, CSRF on every form (a post without its token is refused), logout by POST."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailprefs import clock
from mailprefs.domain.models import AuditEntry, Suppression, User
from tests.conftest import count
from tests.dashboard.conftest import OPS, csrf_token, login, post_form

PAGES = [
    "/dashboard/",
    "/dashboard/campaigns",
    "/dashboard/campaigns/progress.json",
    "/dashboard/suppressions",
    "/dashboard/complaints",
    "/dashboard/audit",
    "/dashboard/jobs",
    "/dashboard/policies",
    "/dashboard/mail",
    "/dashboard/access",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_dashboard_page_requires_a_login(client, path):
    """Promise: without a login no dashboard page (or its JSON) is served."""
    reply = client.get(path)
    if path.endswith(".json"):
        assert reply.status_code == 401
    else:
        assert reply.status_code == 302
        assert reply.headers["Location"].startswith("/dashboard/login")


def test_posts_require_a_login_too(client, staff):
    """Promise: actions are refused without a login (CSRF token or not)."""
    token = csrf_token(client, "/dashboard/login")
    reply = client.post(
        "/dashboard/suppressions/add",
        data={"csrf_token": token, "add-email": "a@example.com", "add-note": "x"},
    )
    assert reply.status_code == 302 and "/dashboard/login" in reply.headers["Location"]


def test_a_right_password_logs_in_and_a_wrong_one_gets_a_generic_message(app, client, staff, db):
    """Promise: wrong password and unknown login answer alike; the right one logs in."""
    wrong = login(client, OPS[0], "not-the-password")
    unknown = login(client, "nobody@example.com", "not-the-password")
    assert wrong.status_code == unknown.status_code == 200
    assert "did not match" in wrong.get_data(as_text=True)
    assert wrong.get_data(as_text=True).count("did not match") == unknown.get_data(
        as_text=True
    ).count("did not match")
    reply = login(client, *OPS)
    assert reply.status_code == 302 and reply.headers["Location"] == "/dashboard/campaigns"
    assert client.get("/dashboard/campaigns").status_code == 200
    with db.session(read_only=True) as s:
        actions = s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
        assert actions == ["login.failed", "login"]  # the unknown address leaves no trace


def test_repeated_failures_lock_the_login_even_against_the_right_password(app, client, staff, db):
    """Promise: after MAILPREFS_LOGIN_MAX_FAILURES failures the login is locked for the
    lockout period; the page says nothing more than for a wrong password."""
    clock.freeze()
    for _ in range(app.config["MAILPREFS_LOGIN_MAX_FAILURES"]):
        login(client, OPS[0], "guess-guess-guess")
    locked = login(client, *OPS)
    assert locked.status_code == 200 and "did not match" in locked.get_data(as_text=True)
    assert client.get("/dashboard/campaigns").status_code == 302
    with db.session(read_only=True) as s:
        assert s.scalar(select(User.locked_until).where(User.id == staff["ops"])) is not None
        assert "login.locked" in s.scalars(select(AuditEntry.action)).all()
    clock.advance(timedelta(seconds=app.config["MAILPREFS_LOGIN_LOCKOUT_SECONDS"] + 1))
    assert login(client, *OPS).status_code == 302


def test_next_only_redirects_inside_the_dashboard(client, staff):
    """Promise: the login's `next` can never send a person to another site."""
    token = csrf_token(client, "/dashboard/login")
    reply = client.post(
        "/dashboard/login?next=//evil.example.com/x",
        data={"csrf_token": token, "email": OPS[0], "password": OPS[1]},
    )
    assert reply.headers["Location"] == "/dashboard/campaigns"


def test_a_form_posted_without_its_csrf_token_is_refused(ops_client, db):
    """Promise: CSRF protection: no token (or a wrong one) -> 400 and nothing changes."""
    data = {"add-email": "target@example.com", "add-note": "forged"}
    assert ops_client.post("/dashboard/suppressions/add", data=data).status_code == 400
    data["csrf_token"] = "forged-token"
    assert ops_client.post("/dashboard/suppressions/add", data=data).status_code == 400
    assert count(db, Suppression.id) == 0
    # The same form with its token works.
    reply = post_form(
        ops_client,
        "/dashboard/suppressions/add",
        {"add-email": "target@example.com", "add-note": "asked by phone"},
        token_from="/dashboard/suppressions",
    )
    assert reply.status_code == 302
    assert count(db, Suppression.id) == 1


def test_the_login_form_itself_needs_its_token(client, staff):
    """Promise: login CSRF: a login posted from elsewhere is refused."""
    reply = client.post("/dashboard/login", data={"email": OPS[0], "password": OPS[1]})
    assert reply.status_code == 400
    assert client.get("/dashboard/campaigns").status_code == 302


def test_logout_is_a_post_with_a_token_and_ends_the_session(ops_client):
    """Promise: logout ends the session; a GET or a tokenless POST does not log out."""
    assert ops_client.get("/dashboard/logout").status_code == 405
    assert ops_client.post("/dashboard/logout").status_code == 400
    assert ops_client.get("/dashboard/campaigns").status_code == 200
    reply = post_form(ops_client, "/dashboard/logout", token_from="/dashboard/campaigns")
    assert reply.status_code == 302
    assert ops_client.get("/dashboard/campaigns").status_code == 302


def test_session_cookie_is_httponly_samesite_and_secure_on_https(app, client, staff):
    """Promise: the session cookie is HttpOnly, SameSite=Lax, Secure when served over https."""
    login(client, *OPS)
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert cookie.http_only and cookie.same_site == "Lax"
    assert cookie.secure is app.config["MAILPREFS_BASE_URL"].startswith("https://") is True


def test_dashboard_pages_carry_a_strict_content_security_policy(ops_client):
    """Promise: pages load only their own scripts and styles and cannot be framed."""
    reply = ops_client.get("/dashboard/campaigns")
    policy = reply.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert reply.headers["Cache-Control"] == "no-store"


def test_a_deactivated_login_is_logged_out_at_its_next_request(ops_client, db, staff):
    """Promise: deactivating a login takes effect at once, not at the next login."""
    with db.transaction() as s:
        s.get(User, staff["ops"]).active = False
    assert ops_client.get("/dashboard/campaigns").status_code == 302


def test_only_admins_see_and_use_the_access_page(ops_client, admin_client):
    """Promise: managing keys and logins is admin-only."""
    assert ops_client.get("/dashboard/access").status_code == 403
    assert admin_client.get("/dashboard/access").status_code == 200
    assert "Access" not in ops_client.get("/dashboard/campaigns").get_data(as_text=True)
    token = csrf_token(ops_client, "/dashboard/campaigns")
    reply = ops_client.post(
        "/dashboard/access/keys", data={"csrf_token": token, "key-role": "admin", "key-name": "x"}
    )
    assert reply.status_code == 403


def test_admin_creates_a_key_shown_once_and_revokes_it_audited(admin_client, db):
    """Promise: a new key is shown once and stored hashed; create and revoke are audited.
    Post/redirect/get: the answer to the POST is a redirect, so reloading the page that
    shows the key creates no second one."""
    from mailprefs.domain.models import ApiKey

    reply = post_form(
        admin_client,
        "/dashboard/access/keys",
        {"key-role": "marketing", "key-name": "newsletter tool"},
        token_from="/dashboard/access",
    )
    assert reply.status_code == 302 and reply.location.endswith("/dashboard/access")
    shown = admin_client.get(reply.location)
    page = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "shown once" in page
    assert 'data-confirm="Revoke key' in page  # revoking asks first
    with db.session(read_only=True) as s:
        key = s.scalar(select(ApiKey))
        assert s.scalar(select(func.count(ApiKey.id))) == 1
        assert key.prefix in page and key.key_hash not in page
    # Shown once: the access page lists the prefix, never the secret again.
    again = admin_client.get("/dashboard/access").get_data(as_text=True)
    secret = page.split('class="secret">')[1].split("<")[0]
    assert key.prefix in again and secret not in again
    post_form(
        admin_client, f"/dashboard/access/keys/{key.prefix}/revoke", token_from="/dashboard/access"
    )
    with db.session(read_only=True) as s:
        assert s.get(ApiKey, key.id).revoked_at is not None
        actions = s.scalars(
            select(AuditEntry.action).where(AuditEntry.action.like("api_key%"))
        ).all()
        assert sorted(actions) == ["api_key.create", "api_key.revoke"]


def test_admin_creates_a_login_that_can_then_log_in(app, admin_client, db):
    """Promise: an admin adds a login from the dashboard (audited), which works."""
    reply = post_form(
        admin_client,
        "/dashboard/access/logins",
        {
            "user-email": "new.ops@example.com",
            "user-role": "ops",
            "user-password": "a-long-password-1",
        },
        token_from="/dashboard/access",
    )
    assert reply.status_code == 302
    assert login(app.test_client(), "new.ops@example.com", "a-long-password-1").status_code == 302
    with db.session(read_only=True) as s:
        assert "user.create" in s.scalars(select(AuditEntry.action)).all()
