"""The Import and Subscribers pages in a real browser: upload the documented example
file, watch the import reach `done` with its counts, find a person by topic and by
address, read their consent history with its evidence, export them, mark one under 13;
screenshots at 1280 and 360 px."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from mailprefs.delivery.worker import Worker
from mailprefs.domain.models import AuditEntry, Subscriber
from tests.support.browser import LAPTOP, PHONE, create_staff, fill_login
from tests.support.factories import person

EMAIL, PASSWORD = "ops.people@example.com", "browser-password-2"
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "subscribers.csv"
WAIT_MS = 30_000


@pytest.fixture
def app_config(tmp_path) -> dict:
    return {"MAILPREFS_BASE_URL": "http://127.0.0.1", "MAILPREFS_IMPORT_DIR": str(tmp_path / "up")}


@pytest.fixture
def logged_in(page, server, db):
    create_staff(db, EMAIL, "ops", PASSWORD)
    page.goto(f"{server}/dashboard/imports")
    fill_login(page, EMAIL, PASSWORD)
    expect(page).to_have_url(f"{server}/dashboard/imports")
    return page


def test_import_page_uploads_shows_live_progress_counts_and_errors(
    logged_in, server, app, db, shot
):
    """Upload the example file; the page refreshes itself until the worker has run it and
    shows the counts; a bad file is refused with the line named, nothing queued."""
    page = logged_in
    shot("imports-1280")
    page.set_input_files("input[name=file]", str(EXAMPLE))
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Import queued")).to_be_visible()
    shot("import-queued-1280")
    worker = threading.Thread(target=lambda: Worker(app).run_due())
    worker.start()
    expect(page.get_by_role("heading", name="Import done")).to_be_visible(timeout=WAIT_MS)
    worker.join()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("created5")
    expect(facts).to_contain_text("no evidence1")
    shot("import-done-1280")
    page.set_viewport_size(PHONE)
    shot("import-done-360")
    page.set_viewport_size(LAPTOP)
    page.goto(f"{server}/dashboard/imports")
    page.set_input_files(
        "input[name=file]",
        files=[{"name": "bad.csv", "mimeType": "text/csv", "buffer": b"name\nAnn\n"}],
    )
    page.get_by_role("button", name="Import").click()
    expect(page.locator(".flash")).to_contain_text("no 'email' column")
    page.set_viewport_size(PHONE)
    shot("imports-refused-360")
    with db.session(read_only=True) as s:
        assert s.scalar(select(Subscriber.id).where(Subscriber.email == "lee@example.com"))


def test_subscribers_page_finds_people_shows_evidence_and_marks_under_13(
    logged_in, server, db, shot
):
    """Filter by topic state, search an address (POSTed), open the person: consent
    history with its source detail; every view audited; mark under 13 erases them."""
    with db.transaction() as s:
        person(s, "ann@example.com", opted_in=("offers",))
        person(s, "bob@example.com")
    page = logged_in
    page.goto(f"{server}/dashboard/subscribers")
    page.locator("select[name=topic]").select_option("offers")
    page.locator("select[name=state]").select_option("opted_in")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("table")).to_contain_text("ann@example.com")
    expect(page.locator("table")).not_to_contain_text("bob@example.com")
    shot("subscribers-1280")
    page.get_by_label("Address").fill("BOB@example.com")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table")).to_contain_text("bob@example.com")
    assert "bob" not in page.url
    page.goto(f"{server}/dashboard/subscribers")
    page.get_by_role("link", name="ann@example.com").click()
    expect(page.get_by_role("heading", name="ann@example.com")).to_be_visible()
    expect(page.locator("table").first).to_contain_text("opt_in")
    shot("subscriber-1280")
    page.set_viewport_size(PHONE)
    shot("subscriber-360")
    page.set_viewport_size(LAPTOP)
    with page.expect_download() as download:
        page.get_by_role("link", name="Export everything held (JSON)").click()
    assert "ann@example.com" in Path(download.value.path()).read_text()
    page.get_by_label("They are known to be under 13").check()
    page.get_by_role("button", name="Mark as under 13 (erases)").click()
    expect(page.locator(".flash")).to_contain_text("Erased")
    with db.session(read_only=True) as s:
        reads = s.scalars(
            select(AuditEntry.action).where(AuditEntry.target_type == "subscriber")
        ).all()
        assert s.scalar(select(Subscriber.id).where(Subscriber.email == "ann@example.com")) is None
    assert {"subscriber.read", "subscriber.export", "subscriber.erase"} <= set(reads)
    page.set_viewport_size(PHONE)
    page.goto(f"{server}/dashboard/subscribers")
    shot("subscribers-360")
