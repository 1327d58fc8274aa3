"""The ops dashboard in a real browser (Debian's chromium through Playwright): log in,
see a scheduled campaign, pause and resume it, run it now and watch its progress reach
`sent` without a reload while a worker sends; lift a suppression; open a captured mail;
and screenshots of every page on a laptop and on a 360 px phone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import campaigns, suppression
from mailprefs.domain.addresses import address_hash
from mailprefs.domain.models import SuppressionReason
from mailprefs.domain.topics import get_topic
from tests.support.browser import (
    LAPTOP,
    PHONE,
    Staff,
    app_config,
    fill_login,
    worker_running,
)
from tests.support.complaints import page_complaint
from tests.support.factories import HASH_KEY, person

ADMIN = Staff("ops.browser@example.com", "admin", "browser-password-1")
WAIT_MS = 30_000

__all__ = ["app_config"]  # the shared fixture, taken by importing it


@pytest.fixture
def login_user(db) -> None:
    ADMIN.create(db)


def log_in(page, server) -> None:
    """From a dashboard page: sent to the login form, then back where one was going."""
    page.goto(f"{server}/dashboard/campaigns")
    expect(page).to_have_url(f"{server}/dashboard/login?next=/dashboard/campaigns")
    fill_login(page, ADMIN.email, ADMIN.password)
    expect(page).to_have_url(f"{server}/dashboard/campaigns")


def scheduled_campaign(db, audience: int, subject: str = "Winter offers") -> str:
    with db.transaction() as s:
        for i in range(audience):
            person(
                s,
                f"reader{i}@example.com",
                opted_in=("offers",),
                attributes={"first_name": f"Reader {i}"},
            )
        row = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject=subject,
            text="Hello {{ first_name }}",
            html="<p>Hello <b>{{ first_name }}</b></p>",
            send_at=clock.now() + timedelta(hours=3),
            audience=None,
            created_by="test",
        )
        return row.public_id


def sent_campaign(app, db, audience: int, subject: str) -> str:
    """A campaign scheduled, then sent now by the worker: its mail is captured."""
    public_id = scheduled_campaign(db, audience, subject)
    with db.transaction() as s:
        campaigns.schedule(s, campaigns.get(s, public_id), clock.now(), "test")
    Worker(app).run_due()
    return public_id


def test_pause_resume_and_watch_a_campaign_reach_sent_without_a_reload(
    app, db, page, server, shot, login_user
):
    """Promise: ops see a scheduled campaign with its next run, pause and resume it, run
    it now, and watch live progress reach `sent` while a worker sends (no reload)."""
    public_id = scheduled_campaign(db, audience=12)
    log_in(page, server)
    row = page.locator(f'tr[data-campaign="{public_id}"]')
    expect(row).to_contain_text("scheduled")
    expect(row.locator("time")).to_be_visible()
    shot("list-scheduled")
    row.get_by_role("link", name="Winter offers").click()
    expect(page.locator("h1")).to_have_text("Winter offers")
    expect(page.get_by_text("Next run")).to_be_visible()

    page.get_by_role("button", name="Pause").click()
    expect(page.locator('[role="status"]')).to_contain_text("The campaign is paused")
    expect(page.locator('.progress [data-field="status"]')).to_have_text("paused")
    shot("paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator('.progress [data-field="status"]')).to_have_text("scheduled")

    page.get_by_role("button", name="Run now").click()
    expect(page.locator('[role="status"]')).to_contain_text("Run now: done")
    page.evaluate("window.__noReload = true")
    with worker_running(app):
        expect(page.locator('.progress [data-field="status"]')).to_have_text(
            "sent", timeout=WAIT_MS
        )
        expect(page.locator('.progress [data-field="sent"]')).to_have_text("12")
        expect(page.locator('.progress [data-field="pending"]')).to_have_text("0")
    assert page.evaluate("window.__noReload === true"), "the page reloaded"
    assert page.locator("figure.chart rect.sent").count() >= 1
    shot("sent")


def test_lift_a_suppression_with_a_reason(db, page, server, shot, login_user):
    """Promise: ops find a bounce suppression, lift it with a written reason."""
    with db.transaction() as s:
        row = suppression.add(
            s,
            address_hash("bounced@example.com", HASH_KEY),
            SuppressionReason.BOUNCE,
            source="dsn",
            evidence={"kind": "hard", "diagnostic": "550 5.1.1 user unknown"},
        )
        row_id = row.id
    log_in(page, server)
    page.get_by_role("link", name="Suppressions").click()
    page.get_by_label("Address").first.fill("Bounced@Example.com")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("h1")).to_have_text("Suppressed: bounce")
    shot("search")
    page.get_by_role("link", name="Open the suppression").click()
    expect(page).to_have_url(f"{server}/dashboard/suppressions/{row_id}")
    page.get_by_label("Why may this address be mailed again?").fill(
        "The person confirmed the mailbox works again"
    )
    page.get_by_role("button", name="Lift").click()
    expect(page.locator('[role="status"]')).to_contain_text("lifted")
    expect(page.locator("h1")).to_contain_text("(lifted)")
    shot("lifted")


def test_open_a_captured_mail_with_its_html_sandboxed(app, db, page, server, shot, login_user):
    """Promise: captured mail is listed and opens; the HTML shows in a sandboxed frame."""
    sent_campaign(app, db, audience=1, subject="Captured hello")
    log_in(page, server)
    page.get_by_role("link", name="Captured mail").click()
    page.get_by_role("link", name="Captured hello").click()
    expect(page.locator("h1")).to_have_text("Captured hello")
    frame = page.locator("iframe.mail-html")
    assert frame.get_attribute("sandbox") == ""
    expect(page.frame_locator("iframe.mail-html").locator("b")).to_have_text("Reader 0")
    expect(page.locator("pre.body")).to_contain_text("Hello Reader 0")
    shot("mail")


def test_every_dashboard_page_on_a_laptop_and_a_phone(app, db, page, server, shot, login_user):
    """Promise: every page renders without console errors (CSP included) and is readable
    at 360 px: nothing wider than the screen except inside scrolling tables."""
    public_id = scheduled_campaign(db, audience=3)
    with db.transaction() as s:
        campaigns.schedule(s, campaigns.get(s, public_id), clock.now(), "test")
        someone, complaint = page_complaint(s)
        complaint_id = complaint.public_id
        sup_id = suppression.active(s, someone.email_hash).id
    Worker(app).run_due()
    from mailprefs.delivery.transport import captured_files

    mail_name = captured_files(app.config["MAILPREFS_MAIL_CAPTURE_DIR"])[-1].name
    pages = {
        "campaigns": "/dashboard/campaigns",
        "campaign": f"/dashboard/campaigns/{public_id}",
        "suppressions": "/dashboard/suppressions",
        "suppression": f"/dashboard/suppressions/{sup_id}",
        "complaints": "/dashboard/complaints",
        "complaint": f"/dashboard/complaints/{complaint_id}",
        "audit": "/dashboard/audit",
        "mail": "/dashboard/mail",
        "mail-view": f"/dashboard/mail/{mail_name}",
        "access": "/dashboard/access",
    }
    page.set_viewport_size(PHONE)
    page.goto(f"{server}/dashboard/login")
    shot("login-phone")
    page.set_viewport_size(LAPTOP)
    shot("login-laptop")
    log_in(page, server)
    for size_name, size in (("laptop", LAPTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        for name, path in pages.items():
            response = page.goto(f"{server}{path}")
            assert response.status == 200, path
            expect(page.locator("main h1")).to_be_visible()
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= size["width"] + 1, f"{path} is {overflow}px wide at {size_name}"
            shot(f"{name}-{size_name}")
