"""The walk's fixes (issue 14, item 5) in a real browser (Debian's chromium through
Playwright), each at 1280 px and at 360 px with screenshots, failing on console errors:
a campaign page that follows its campaign to `sent` (no Pause left, no reload); the
Access page's key shown once and kept on reload, revoking only after a confirmation; the
skip link and staff-layout errors; captured mail search; the audit log's address search
and date order; the Campaigns banner while the due-job runner is paused; a complaint in
words."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from mailprefs.domain import apikeys
from mailprefs.domain.models import ApiKey
from mailprefs.scheduling.service import SchedulerService
from mailprefs.scheduling.view import pause_job
from tests.conftest import count
from tests.e2e.test_dashboard_browser import scheduled_campaign, sent_campaign
from tests.support.browser import SIZES, app_config, create_staff, fits, worker_running
from tests.support.browser import log_in as log_in_as
from tests.support.complaints import page_complaint

EMAIL, PASSWORD = "walk.admin@example.com", "walk-password-123"
WAIT_MS = 30_000

__all__ = ["app_config"]  # the shared fixture, taken by importing it


@pytest.fixture
def admin(db) -> None:
    create_staff(db, EMAIL, "admin", PASSWORD)


def log_in(page, server) -> None:
    log_in_as(page, server, EMAIL, PASSWORD)


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_campaign_page_drops_pause_when_the_campaign_is_sent_without_a_reload(
    app, db, page, server, shot, admin, size
):
    """Promise: watching a campaign send, the page shows `sent` with no Pause or Cancel
    and no "Next run" once it finishes, without reloading."""
    page.set_viewport_size(SIZES[size])
    public_id = scheduled_campaign(db, audience=5, subject="Live offers")
    log_in(page, server)
    page.goto(f"{server}/dashboard/campaigns/{public_id}")
    expect(page.get_by_text("Next run")).to_be_visible()
    page.get_by_role("button", name="Run now").click()
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    shot(f"before-{size}")
    page.evaluate("window.__noReload = true")
    with worker_running(app):
        expect(page.locator('.progress [data-field="status"]')).to_have_text(
            "sent", timeout=WAIT_MS
        )
    expect(page.get_by_role("button", name="Pause")).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    expect(page.get_by_role("heading", name="Controls")).to_be_hidden()
    expect(page.locator('[data-field="send_label"]')).to_have_text("Send at")
    assert page.evaluate("window.__noReload === true"), "the page reloaded"
    fits(page, SIZES[size])
    shot(f"sent-{size}")


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_access_page_shows_a_new_key_once_and_asks_before_revoking(
    db, page, server, shot, admin, size
):
    """Promise: creating a key shows it once; reloading creates no second key and no
    longer shows it; Revoke asks first, and a "no" revokes nothing."""
    page.set_viewport_size(SIZES[size])
    log_in(page, server)
    page.goto(f"{server}/dashboard/access")
    page.get_by_label("Name").first.fill("newsletter tool")
    page.get_by_role("button", name="Create a key").click()
    secret = page.locator("code.secret")
    expect(secret).to_be_visible()
    expect(page).to_have_url(f"{server}/dashboard/access")
    shot(f"created-{size}")
    page.reload()
    expect(page.locator("code.secret")).to_have_count(0)
    assert count(db, ApiKey.id) == 1
    questions: list[str] = []

    def answer(dialog, accept: bool) -> None:
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.get_by_role("button", name="Revoke").first.click()
    expect(page.get_by_role("button", name="Revoke").first).to_be_visible()
    assert questions and "cannot be undone" in questions[0]
    with db.session(read_only=True) as s:
        assert apikeys.list_keys(s)[0].revoked_at is None
    page.once("dialog", lambda d: answer(d, True))
    page.get_by_role("button", name="Revoke").first.click()
    expect(page.locator('[role="status"]')).to_contain_text("Revoked")
    fits(page, SIZES[size])
    shot(f"revoked-{size}")


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_skip_link_and_errors_in_the_staff_layout(page, server, shot, admin, size):
    """Promise: the first Tab reaches "Skip to content", which moves focus to the page's
    content; a missing page is a 404 in the staff layout with a way back."""
    page.set_viewport_size(SIZES[size])
    log_in(page, server)
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    shot(f"skip-{size}")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    response = page.goto(f"{server}/dashboard/campaigns/no-such-campaign")
    assert response.status == 404
    expect(page.get_by_role("navigation", name="Dashboard")).to_be_visible()
    expect(page.get_by_role("link", name="Back to the dashboard")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("write to us")
    fits(page, SIZES[size])
    shot(f"not-found-{size}")
    page.goto(f"{server}/")
    expect(page).to_have_url(f"{server}/dashboard/campaigns")


@pytest.fixture
def expected_console() -> list[str]:
    # The 404 page of the test above is an answer the browser logs as a failed resource.
    return [r"status of 404"]


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_search_captured_mail_and_the_audit_log_by_address(
    app, db, page, server, shot, admin, size
):
    """Promise: captured mail is found by recipient; the audit log is searched by a
    person's address (it says which id it searched) and refuses From after To."""
    page.set_viewport_size(SIZES[size])
    sent_campaign(app, db, audience=3, subject="Searchable hello")
    log_in(page, server)
    page.get_by_role("link", name="Captured mail").click()
    page.get_by_label("To, From or Subject contains").fill("reader1@")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("main table tbody tr")).to_have_count(1)
    expect(page.locator("main")).to_contain_text("1 message match")
    fits(page, SIZES[size])
    shot(f"mail-search-{size}")

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Target id or address").fill("reader1@example.com")
    page.get_by_role("button", name="Search").click()
    expect(page.locator('[role="status"]')).to_contain_text("searching subscriber")
    page.get_by_label("From").fill("2026-05-02")
    page.get_by_label("To", exact=True).fill("2026-05-01")
    page.get_by_role("button", name="Search").click()
    expect(page.locator('[role="alert"]')).to_contain_text("From is after To")
    fits(page, SIZES[size])
    shot(f"audit-{size}")


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_campaigns_banner_while_paused_and_a_complaint_in_words(
    app, db, page, server, shot, admin, size
):
    """Promise: with the due-job runner paused, Campaigns says nothing scheduled starts;
    a complaint shows sources and the administrative topic in words."""
    page.set_viewport_size(SIZES[size])
    service = SchedulerService(app, holder="test")
    service.step()
    service.shutdown()
    pause_job(app, "fire-due", "test")
    with db.transaction() as s:
        _someone, complaint = page_complaint(s)
        complaint_id = complaint.public_id
    log_in(page, server)
    banner = page.locator('[data-holding="fire-due"]')
    expect(banner).to_contain_text("no scheduled campaign or policy notice starts")
    expect(page.locator("main")).to_contain_text("No campaigns yet")
    fits(page, SIZES[size])
    shot(f"campaigns-paused-{size}")
    page.goto(f"{server}/dashboard/complaints/{complaint_id}")
    main = page.locator("main")
    expect(main).to_contain_text("the preference page")
    expect(main).to_contain_text("receives it (administrative mail")
    expect(main).not_to_contain_text("opt_in")
    fits(page, SIZES[size])
    shot(f"complaint-{size}")
