"""Your account: change the password, two-factor login (TOTP with one-time recovery
codes) on and off, login sessions listed and ended, each audited; the second login step
for those with two-factor on."""

from __future__ import annotations

import re

import pyotp
from sqlalchemy import select

from mailprefs.domain.models import AuditEntry
from tests.dashboard.conftest import OPS, csrf_token, login


def post(client, path: str, data: dict, prefix: str = "", follow: bool = True):
    token = csrf_token(client, "/dashboard/account")
    return client.post(path, data={f"{prefix}csrf_token": token, **data}, follow_redirects=follow)


def change_password(client, current: str, new: str):
    return post(
        client, "/dashboard/account/password", {"pw-current": current, "pw-new": new}, "pw-"
    )


def audited(db, action: str) -> int:
    with db.session(read_only=True) as s:
        return len(s.scalars(select(AuditEntry.id).where(AuditEntry.action == action)).all())


def test_change_the_password_with_the_current_one(app, ops_client, db):
    """Promise: a wrong current password changes nothing; the right one changes it (the
    new one logs in, the old one no longer), audited."""
    wrong = change_password(ops_client, "not-my-password", "a-new-password-99")
    assert "Not changed: that is not your current password." in wrong.get_data(as_text=True)
    done = change_password(ops_client, OPS[1], "a-new-password-99")
    assert "Your password is changed." in done.get_data(as_text=True)
    assert login(app.test_client(), OPS[0], "a-new-password-99").status_code == 302
    assert login(app.test_client(), *OPS).status_code == 200  # the old one: refused
    assert audited(db, "user.password") == 1


def test_sessions_are_listed_and_one_ended_elsewhere_is_logged_out(app, ops_client, db):
    """Promise: each login is a session on the account page; ending another one logs it
    out at its next request; logging out ends one's own."""
    other = app.test_client()
    assert login(other, *OPS).status_code == 302
    page = ops_client.get("/dashboard/account").get_data(as_text=True)
    assert page.count("<tr data-session=") == 2 and 'data-session="current"' in page
    theirs = re.search(
        r'<tr data-session="other">.*?/dashboard/account/sessions/([^/]+)/end', page, re.S
    ).group(1)
    post(ops_client, f"/dashboard/account/sessions/{theirs}/end", {})
    reply = other.get("/dashboard/campaigns")
    assert reply.status_code == 302 and "/dashboard/login" in reply.location
    assert ops_client.get("/dashboard/campaigns").status_code == 200
    assert audited(db, "user.session_revoke") == 1
    page = ops_client.get("/dashboard/account").get_data(as_text=True)
    assert page.count("<tr data-session=") == 1


def enable_two_factor(client) -> tuple[str, list[str]]:
    page = client.get("/dashboard/account").get_data(as_text=True)
    secret = re.search(r"<code class=\"secret\" data-totp-secret>([A-Z2-7]+)</code>", page).group(1)
    wrong = post(client, "/dashboard/account/two-factor/on", {"totp-code": "000000"}, "totp-")
    assert "Not turned on: that code does not match" in wrong.get_data(as_text=True)
    done = post(
        client, "/dashboard/account/two-factor/on", {"totp-code": pyotp.TOTP(secret).now()}, "totp-"
    )
    shown = done.get_data(as_text=True)
    codes = re.findall(r'<li><code class="secret">([0-9a-f]{6}-[0-9a-f]{6})</code></li>', shown)
    assert "Two-factor login is on." in shown and len(codes) == 10
    again = client.get("/dashboard/account").get_data(as_text=True)
    assert codes[0] not in again  # shown once
    return secret, codes


def second_step(client, code: str):
    token = csrf_token(client, "/dashboard/login/second-factor")
    return client.post("/dashboard/login/second-factor", data={"csrf_token": token, "code": code})


def test_two_factor_login_with_the_app_or_a_recovery_code_once(app, ops_client, db):
    """Promise: with two-factor on, the password alone does not log in; the app's code
    does, and a recovery code does exactly once; wrong codes are refused."""
    secret, codes = enable_two_factor(ops_client)
    client = app.test_client()
    first = login(client, *OPS)
    assert first.status_code == 302 and first.location.endswith("/dashboard/login/second-factor")
    assert client.get("/dashboard/campaigns").status_code == 302  # not logged in yet
    wrong = second_step(client, "123456")
    assert "That code did not match" in wrong.get_data(as_text=True)
    right = second_step(client, pyotp.TOTP(secret).now())
    assert right.status_code == 302 and client.get("/dashboard/campaigns").status_code == 200
    for attempt in (1, 2):
        other = app.test_client()
        login(other, *OPS)
        reply = second_step(other, codes[0])
        assert (reply.status_code == 302) is (attempt == 1)
    assert audited(db, "login.recovery_code") == 1 and audited(db, "user.totp_enable") == 1


def test_turning_two_factor_off_needs_the_password(app, ops_client, db):
    """Promise: the password is asked before two-factor login is turned off."""
    enable_two_factor(ops_client)
    refused = post(
        ops_client, "/dashboard/account/two-factor/off", {"off-password": "nope"}, "off-"
    )
    assert "Not turned off" in refused.get_data(as_text=True)
    done = post(ops_client, "/dashboard/account/two-factor/off", {"off-password": OPS[1]}, "off-")
    assert "Two-factor login is off." in done.get_data(as_text=True)
    assert login(app.test_client(), *OPS).location.endswith("/dashboard/campaigns")
    assert audited(db, "user.totp_disable") == 1


def test_the_second_step_without_a_password_first_leads_to_the_login(client, staff):
    """Promise: nobody reaches the second step without the password step."""
    reply = client.get("/dashboard/login/second-factor")
    assert reply.status_code == 302 and reply.location.endswith("/dashboard/login")
