"""Your account in a real browser (Debian's chromium through Playwright), at 1280 px and
at 360 px with screenshots, failing on console errors: turn two-factor login on with an
authenticator's code, log out, log in again through the second step, see the sessions."""

from __future__ import annotations

import pyotp
import pytest
from playwright.sync_api import expect

from tests.e2e.test_dashboard_walk_browser import EMAIL, PASSWORD, admin, log_in
from tests.support.browser import SIZES, app_config, fill_login, fits

__all__ = ["admin", "app_config"]  # fixtures shared with the walk's tests


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_two_factor_login_and_sessions_from_the_account_page(page, server, shot, admin, size):
    """Promise: two-factor login is turned on from the page, then asked for at login;
    the account page lists the session in use."""
    page.set_viewport_size(SIZES[size])
    log_in(page, server)
    page.get_by_role("link", name="Your account").click()
    expect(page.locator("main h1")).to_have_text("Your account")
    secret = page.locator("[data-totp-secret]").inner_text().strip()
    page.get_by_label("Code from your app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn two-factor login on").click()
    expect(page.locator('[role="status"]').first).to_contain_text("Two-factor login is on")
    expect(page.locator("ul.codes li")).to_have_count(10)
    fits(page, SIZES[size])
    shot(f"codes-{size}")
    page.get_by_role("button", name="Log out").first.click()
    fill_login(page, EMAIL, PASSWORD)
    expect(page.locator("main h1")).to_have_text("One more step")
    fits(page, SIZES[size])
    shot(f"second-step-{size}")
    page.get_by_label("Code from your app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server}/dashboard/campaigns")
    page.goto(f"{server}/dashboard/account")
    expect(page.locator('tr[data-session="current"]')).to_have_count(1)
    fits(page, SIZES[size])
    shot(f"account-{size}")
