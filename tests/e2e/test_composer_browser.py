"""The composer in a real browser (Debian's chromium through Playwright), driven with
the keyboard only, at 1280 px and at 360 px with screenshots, failing on console errors:
from the Campaigns page to a saved draft, its preview for a sample recipient (the HTML
in a sandboxed frame), a test copy to oneself, and Send now, watched to `sent`."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from mailprefs.delivery.transport import captured_files
from mailprefs.delivery.worker import Worker
from tests.e2e.test_dashboard_walk_browser import EMAIL, admin, log_in
from tests.support.browser import SIZES, app_config, fits
from tests.support.factories import person

__all__ = ["admin", "app_config"]  # fixtures shared with the walk's tests
MAX_TABS = 80


def tab_to(page, name: str) -> None:
    """Press Tab until the focused element is the one named exactly `name` (bounded)."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "(() => { const e = document.activeElement;"
            " return (e.getAttribute('aria-label') || e.labels?.[0]?.textContent"
            " || e.textContent || '').trim(); })()"
        )
        if focused == name:
            return
    raise AssertionError(f"{name!r} is not reachable with Tab")


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_compose_test_and_send_a_campaign_with_the_keyboard_only(
    app, db, page, server, shot, admin, size
):
    """Promise: a person who uses only the keyboard writes a draft (each field reached
    by Tab in reading order), sees its preview, sends a test copy and sends it now."""
    page.set_viewport_size(SIZES[size])
    with db.transaction() as s:
        for i in range(3):
            person(s, f"pro{i}@example.com", opted_in=("offers",), attributes={"plan": "pro"})
        person(s, "free@example.com", opted_in=("offers",), attributes={"plan": "free"})
    log_in(page, server)

    tab_to(page, "Write a campaign")
    page.keyboard.press("Enter")
    expect(page.locator("main h1")).to_have_text("Write a campaign")
    tab_to(page, "Topic")
    expect(page.get_by_label("Topic")).to_be_focused()
    page.keyboard.type("Offers")  # a select chooses the option its letters name
    expect(page.get_by_label("Topic")).to_have_value("offers")
    for label, typed in (  # the fields in reading order, each the next Tab stop
        ("Subject", "Spring for {{ first_name }}"),
        ("Text", "Hello {{ first_name }}, spring is here."),
        ("HTML (optional)", "<p>Hello <b>{{ first_name }}</b></p>"),
        ("Audience (optional)", "plan = pro"),
    ):
        page.keyboard.press("Tab")
        expect(page.get_by_label(label)).to_be_focused()
        page.keyboard.type(typed)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Save the draft")).to_be_focused()
    fits(page, SIZES[size])
    shot(f"composer-{size}")
    page.keyboard.press("Enter")

    expect(page.locator('[role="status"]')).to_contain_text("The draft is saved")
    expect(page.locator('[data-preview="subject"]')).to_have_text("Spring for [first_name]")
    frame = page.frame_locator("iframe.preview-html")
    expect(frame.locator("b")).to_have_text("[first_name]")
    assert page.locator("iframe.preview-html").get_attribute("sandbox") == ""
    expect(page.locator("main")).to_contain_text("It would reach 3 of the 3 people")
    fits(page, SIZES[size])
    shot(f"draft-{size}")

    tab_to(page, "Send a test copy to")
    expect(page.get_by_label("Send a test copy to")).to_have_value(EMAIL)
    tab_to(page, "Send the test copy")
    page.keyboard.press("Enter")
    expect(page.locator('[role="status"]')).to_contain_text(f"Test copy queued for {EMAIL}")
    Worker(app).run_due()  # the worker sends test copies first in line
    assert any(
        EMAIL in p.read_text() for p in captured_files(app.config["MAILPREFS_MAIL_CAPTURE_DIR"])
    )

    questions: list[str] = []

    def accept(dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    tab_to(page, "Send now")
    page.keyboard.press("Enter")
    expect(page.locator('[role="status"]')).to_contain_text("Sending now")
    assert questions and "to 3 people" in questions[0]
    Worker(app).run_due()
    expect(page.locator('.progress [data-field="status"]')).to_have_text("sent", timeout=30_000)
    expect(page.locator('.progress [data-field="sent"]')).to_have_text("3")
    fits(page, SIZES[size])
    shot(f"sent-{size}")
