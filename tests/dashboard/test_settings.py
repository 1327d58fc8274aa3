"""The Settings page (read-only, any staff login) and `make run PORT=...`: links in mail
point at the port the development server listens on, unless MAILPREFS_BASE_URL is set."""

from __future__ import annotations

import pytest

from mailprefs import clock
from mailprefs.delivery.transport import captured_files
from mailprefs.delivery.worker import Worker
from mailprefs.devserver import adopt_address
from mailprefs.domain import campaigns
from tests.dashboard.conftest import csrf_token
from tests.dashboard.helpers import campaign
from tests.support.factories import person


@pytest.fixture
def app_config() -> dict:
    return {
        "MAIL_PASSWORD": "smtp-password-never-shown",
        "MAILPREFS_WEBHOOK_SECRET": "webhook-secret-never-shown",
    }


def test_ops_read_the_settings_with_their_variables_and_no_secret(app, ops_client):
    """Promise: base URL, sender identities, postal address, capture or SMTP, DKIM
    selector and limits are shown beside their variables; secrets are never shown."""
    app.config["MAILPREFS_DKIM_SELECTOR"] = "mp2026"  # shown as the page reads it
    reply = ops_client.get("/dashboard/settings")
    assert reply.status_code == 200
    page = reply.get_data(as_text=True)
    config = app.config
    for name in (
        "MAILPREFS_BASE_URL",
        "MAILPREFS_MARKETING_FROM",
        "MAILPREFS_ADMIN_FROM",
        "MAILPREFS_POSTAL_ADDRESS",
        "MAILPREFS_DKIM_SELECTOR",
        "MAILPREFS_SEND_RATE",
        "MAILPREFS_API_RATE_LIMIT",
    ):
        assert f"<code>{name}</code>" in page, name
    assert config["MAILPREFS_BASE_URL"] in page and "mp2026" in page
    assert "captured" in page and config["MAILPREFS_MAIL_CAPTURE_DIR"] in page
    for secret in (
        "smtp-password-never-shown",
        "webhook-secret-never-shown",
        config["SECRET_KEY"],
        config["MAILPREFS_HASH_KEY"],
    ):
        assert secret not in page
    assert "set (not shown)" in page  # the SMTP password: set, not shown
    assert 'href="/dashboard/settings" aria-current="page"' in page


def test_settings_are_read_only_and_need_a_login(client, ops_client, staff):
    """Promise: no form changes a setting (POST is not allowed); anonymous visitors are
    sent to the login."""
    token = csrf_token(ops_client, "/dashboard/settings")
    assert ops_client.post("/dashboard/settings", data={"csrf_token": token}).status_code == 405
    page = ops_client.get("/dashboard/settings").get_data(as_text=True)
    assert page.count("<form") == 1  # the header's log out, nothing else
    reply = client.get("/dashboard/settings")
    assert reply.status_code == 302 and "/dashboard/login" in reply.location


def test_make_run_on_another_port_puts_that_port_in_every_link(app, db):
    """Promise: `make run PORT=5301` (serve --port 5301) sends mail whose links point at
    5301, when MAILPREFS_BASE_URL is not set."""
    assert adopt_address(app, "127.0.0.1", 5301, environ={}) == "http://127.0.0.1:5301"
    with db.transaction() as s:
        person(s, "porter@example.com", opted_in=("offers",))
    public_id = campaign(db, in_minutes=None)
    with db.transaction() as s:
        campaigns.schedule(s, campaigns.get(s, public_id), clock.now(), "test")
    Worker(app).run_due()
    [path] = captured_files(app.config["MAILPREFS_MAIL_CAPTURE_DIR"])
    raw = path.read_text()
    assert "<http://127.0.0.1:5301/u/" in raw  # List-Unsubscribe
    assert "http://127.0.0.1:5301/preferences/" in raw
    assert ":5000/" not in raw


def test_an_explicit_base_url_wins_over_the_port(app):
    """Promise: a deployment's MAILPREFS_BASE_URL is kept whatever port serve uses, and
    a server on every interface links through the loopback."""
    everywhere = "0.0.0.0"  # noqa: S104 - the address under test, nothing binds to it
    app.config["MAILPREFS_BASE_URL"] = "https://mail.example.org"
    environ = {"MAILPREFS_BASE_URL": "https://mail.example.org"}
    assert adopt_address(app, everywhere, 5301, environ=environ) == "https://mail.example.org"
    assert adopt_address(app, everywhere, 5302, environ={}) == "http://127.0.0.1:5302"
