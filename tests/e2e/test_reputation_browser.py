"""The reputation guard in a real browser: the banner on every page, the campaign's rates
and chart, and resuming only with a written note."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from mailprefs.delivery.worker import Worker
from mailprefs.domain import bounces, reputation
from mailprefs.domain.outbox_models import Campaign, CampaignStatus
from tests.reputation.support import LIMITS, campaign, start_campaign
from tests.support.browser import create_staff, fill_login
from tests.support.factories import HASH_KEY

EMAIL, PASSWORD = "ops.guard@example.com", "guard-password-1"


@pytest.fixture
def app_config() -> dict:
    return {"MAILPREFS_BASE_URL": "http://127.0.0.1", **LIMITS}


def paused_by_complaints(app, db) -> str:
    """30 delivered, then 3 complaints while it is still sending: paused (10% > 5%)."""
    addresses = [f"b{i:02d}@example.com" for i in range(30)]
    campaign_id = start_campaign(db, addresses, subject="Stale list offers")
    Worker(app).run_due()
    with db.transaction() as s:
        s.get(Campaign, campaign_id).status = CampaignStatus.SENDING
        reputation.ingest(
            s,
            [bounces.Event(type="complaint", email=a) for a in addresses[:3]],
            hash_key=HASH_KEY,
            thresholds=bounces.Thresholds(3, 7),
            actor="test",
            limits=reputation.Limits.from_config(app.config),
        )
    row = campaign(db, campaign_id)
    assert row.pause_reason == "complaint_rate"
    return row.public_id


def test_banner_rates_chart_and_resume_with_a_note(app, db, page, server, shot):
    public_id = paused_by_complaints(app, db)
    create_staff(db, EMAIL, "ops", PASSWORD)
    page.goto(f"{server}/dashboard/login")
    fill_login(page, EMAIL, PASSWORD)

    banner = page.locator(f'.guard-banner[data-guard="{public_id}"]')
    expect(banner).to_contain_text("Paused by the reputation guard")
    expect(banner).to_contain_text("10.00%")
    page.goto(f"{server}/dashboard/suppressions")
    expect(banner).to_be_visible()
    shot("banner")
    banner.get_by_role("link", name="Review it and resume with a note").click()
    expect(page.locator('[data-field="pause_reason"]')).to_contain_text("complaint_rate")
    expect(page.locator('tr[data-row="campaign"] [data-field="complaint_rate"]')).to_have_text(
        "10.00%"
    )
    expect(page.locator("figure.rates-chart polyline.complaint")).to_have_count(1)
    shot("campaign")
    # On a 360 px phone, the banner, the rates and the chart fit (tables scroll inside).
    page.set_viewport_size({"width": 360, "height": 740})
    for path in (page.url, f"{server}/dashboard/campaigns"):
        page.goto(path)
        expect(banner).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 361, path
    shot("campaign-phone")
    page.goto(f"{server}/dashboard/campaigns/{public_id}")

    # The browser itself refuses an empty note (required); a blank one the server refuses.
    note = page.get_by_label("Why it is safe to resume")
    note.fill("   ")
    page.get_by_role("button", name="Resume with this note").click()
    expect(page.locator(".flash.error")).to_contain_text("write what was checked")
    note = page.get_by_label("Why it is safe to resume")
    note.fill("Removed the 2019 import segment that complained.")
    page.get_by_role("button", name="Resume with this note").click()
    expect(page.locator('[role="status"]')).to_contain_text("The campaign is sending")
    expect(page.locator(".guard-banner")).to_have_count(0)
    shot("resumed")
    assert campaign(db, _id(db, public_id)).status == CampaignStatus.SENDING


def _id(db, public_id: str) -> int:
    from sqlalchemy import select

    with db.session(read_only=True) as s:
        return s.scalar(select(Campaign.id).where(Campaign.public_id == public_id))
