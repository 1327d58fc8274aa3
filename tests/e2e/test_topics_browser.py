"""The Topics page in a real browser (Debian's chromium through Playwright), at 1280 px
and at 360 px with screenshots, failing on console errors: an admin creates a topic,
renames it and retires it (after a confirmation), all from the page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.test_dashboard_walk_browser import admin, log_in
from tests.support.browser import SIZES, app_config, fits

__all__ = ["admin", "app_config"]  # fixtures shared with the walk's tests


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_an_admin_manages_a_topic_from_the_page(page, server, shot, admin, size):
    """Promise: create, rename and retire a topic without the API; each shows at once."""
    page.set_viewport_size(SIZES[size])
    log_in(page, server)
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Topics").click()
    expect(page.locator("main h1")).to_have_text("Topics")
    new = page.locator("form", has=page.get_by_role("button", name="Create the topic"))
    new.get_by_label("Slug").fill("events")
    new.get_by_label("Name", exact=True).fill("Events")
    new.get_by_label("Sender").fill("Events <events@example.com>")
    new.get_by_role("button", name="Create the topic").click()
    expect(page.locator('[role="status"]')).to_contain_text("is created")
    row = page.locator("#topic-events")
    expect(row).to_contain_text("Events <events@example.com>")
    fits(page, SIZES[size])
    shot(f"created-{size}")
    page.locator("summary", has_text="events").click()
    edit = page.locator("form", has=page.get_by_role("button", name="Save events"))
    edit.get_by_label("Name", exact=True).fill("Events near you")
    edit.get_by_role("button", name="Save events").click()
    expect(page.locator("#topic-events")).to_contain_text("Events near you")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("summary", has_text="events").click()
    page.get_by_role("button", name="Retire events").click()
    expect(page.locator('[role="status"]')).to_contain_text("is retired")
    expect(page.locator("#topic-events")).to_contain_text("retired")
    fits(page, SIZES[size])
    shot(f"retired-{size}")
