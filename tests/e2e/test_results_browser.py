"""Results and the Overview in a real browser (Debian's chromium through Playwright), at
1280 px and at 360 px with screenshots, failing on console errors: a sent campaign's
results with a bounce attributed to it, and the Overview's charts and rates."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.dashboard.test_results import hard_bounce, ingest, sent_campaign
from tests.e2e.test_dashboard_walk_browser import admin, log_in
from tests.support.browser import SIZES, app_config, fits

__all__ = ["admin", "app_config"]  # fixtures shared with the walk's tests


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_results_and_overview_on_screen(app, db, page, server, shot, admin, size):
    """Promise: the Overview shows people by state, opt-outs and rates per stream as
    charts and tables; the campaign page shows its results in words."""
    page.set_viewport_size(SIZES[size])
    public_id, ids = sent_campaign(app, db)
    with db.transaction() as s:
        ingest(s, [hard_bounce(db, public_id, ids)])
    log_in(page, server)
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Overview").click()
    expect(page.locator("main h1")).to_have_text("Overview")
    expect(page.locator('[data-overview="active"]')).to_have_text("5")
    expect(page.locator('tr[data-stream="marketing"]')).to_contain_text("25.0%")
    assert page.locator("figure.chart rect").count() >= 1
    fits(page, SIZES[size])
    shot(f"overview-{size}")
    page.goto(f"{server}/dashboard/campaigns/{public_id}")
    results = page.locator("section.results")
    expect(results.locator('[data-result="bounces"]')).to_have_text("1")
    expect(results).to_contain_text("1 opted out")
    fits(page, SIZES[size])
    shot(f"results-{size}")
