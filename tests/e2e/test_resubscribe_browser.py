"""Resubscribe in a real browser (Debian's chromium through Playwright), at 1280 px and
at 360 px with screenshots, failing on console errors: unsubscribe with the page's
button, change one's mind, resubscribe."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from mailprefs.extensions import get_tokens
from tests.prefs.support import make_person, states_of
from tests.support.browser import SIZES, app_config, fits

__all__ = ["app_config"]


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_unsubscribe_then_resubscribe(app, db, page, server, shot, size):
    """Promise: the unsubscribed page's Resubscribe button brings the topic back."""
    page.set_viewport_size(SIZES[size])
    who = make_person(db, "mia@example.com", opted_in=("offers",))
    with app.test_request_context():
        token = get_tokens().unsubscribe(who, "offers", None)
    page.goto(f"{server}/u/{token}")
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.locator("h1")).to_have_text("You are unsubscribed")
    fits(page, SIZES[size])
    shot(f"unsubscribed-{size}")
    page.get_by_role("button", name="Resubscribe").click()
    expect(page.locator("h1")).to_have_text("You are subscribed again")
    assert states_of(db, who)["offers"] == "opted_in"
    fits(page, SIZES[size])
    shot(f"resubscribed-{size}")
