"""Issue 13 finding 8: a session cookie copied before logout (or before a password
change) no longer works after it: the server ends every session of the login."""

from __future__ import annotations

from mailprefs.domain import users
from mailprefs.domain.models import User
from tests.dashboard.conftest import OPS, login, post_form


def _copy_of(app, client):
    """Another client holding the same session cookie (as a thief would)."""
    thief = app.test_client()
    cookie = client.get_cookie("session")
    thief.set_cookie(cookie.key, cookie.value)
    assert thief.get("/dashboard/campaigns").status_code == 200
    return thief


def test_a_cookie_copied_before_logout_is_refused_after_it(app, client, staff):
    assert login(client, *OPS).status_code == 302
    thief = _copy_of(app, client)
    reply = post_form(client, "/dashboard/logout", token_from="/dashboard/campaigns")
    assert reply.status_code == 302
    assert thief.get("/dashboard/campaigns").status_code == 302  # to the login page
    assert login(client, *OPS).status_code == 302  # the owner logs in again
    assert client.get("/dashboard/campaigns").status_code == 200


def test_a_password_change_ends_every_session_of_the_login(app, client, staff, db):
    assert login(client, *OPS).status_code == 302
    thief = _copy_of(app, client)
    with db.transaction() as s:
        users.set_password(s, s.get(User, staff["ops"]), "a brand new password")
    assert thief.get("/dashboard/campaigns").status_code == 302
    assert client.get("/dashboard/campaigns").status_code == 302
    assert login(client, OPS[0], "a brand new password").status_code == 302
    assert client.get("/dashboard/campaigns").status_code == 200


def test_a_cookie_naming_an_old_or_malformed_session_is_refused(db, staff):
    with db.transaction() as s:
        user = s.get(User, staff["ops"])
        current = user.get_id()
        users.end_sessions(user)
        for stale in (current, str(user.id), f"{user.id}.x", "x.1", ""):
            assert users.for_session(s, stale) is None
        assert users.for_session(s, user.get_id()) is user
