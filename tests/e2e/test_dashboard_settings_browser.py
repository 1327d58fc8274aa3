"""The Settings page in a real browser (Debian's chromium through Playwright), reached
from the navigation, at 1280 px and at 360 px, with screenshots: the values a person
needs (base URL, senders, capture) are on screen, nothing wider than the screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.test_dashboard_walk_browser import admin, log_in
from tests.support.browser import SIZES, app_config, fits

__all__ = ["admin", "app_config"]  # fixtures shared with the walk's tests


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_settings_page_from_the_navigation(app, page, server, shot, admin, size):
    """Promise: staff open Settings from the navigation and read where links point,
    who mail comes from and that mail is captured, on a laptop and on a phone."""
    page.set_viewport_size(SIZES[size])
    log_in(page, server)
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Settings").click()
    expect(page.locator("main h1")).to_have_text("Settings")
    main = page.locator("main")
    expect(main).to_contain_text(app.config["MAILPREFS_BASE_URL"])
    expect(main).to_contain_text(app.config["MAILPREFS_MARKETING_FROM"])
    expect(main).to_contain_text("Mail is captured")
    expect(page.locator("main form")).to_have_count(0)
    fits(page, SIZES[size])
    shot(f"settings-{size}")
