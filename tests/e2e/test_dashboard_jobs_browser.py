"""The Jobs and Policies pages in a real browser (Debian's chromium through Playwright):
see every job with its next run, pause and resume a scheduled campaign from the jobs
page, announce a policy change through the form (counts first, then confirm) and find
it in the list; screenshots on a laptop and on a 360 px phone, with nothing wider than
the screen."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from mailprefs import clock
from mailprefs.domain import campaigns, consent, subscribers, suppression
from mailprefs.domain.models import SuppressionReason
from mailprefs.domain.topics import get_topic
from mailprefs.scheduling.service import SchedulerService
from tests.support.browser import LAPTOP, PHONE, Staff, app_config, fits
from tests.support.factories import evidence, person

OPS = Staff("ops.jobs@example.com", "ops", "jobs-password-12")

__all__ = ["app_config"]  # the shared fixture, taken by importing it


@pytest.fixture
def ops_login(db) -> None:
    OPS.create(db)


def scheduled_campaign(db, subject: str) -> str:
    with db.transaction() as s:
        for _ in range(3):
            person(s, opted_in=("offers",))
        row = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject=subject,
            text="Hello",
            html=None,
            send_at=clock.now() + timedelta(hours=3),
            audience=None,
            created_by="test",
        )
        return row.public_id


def test_see_jobs_with_next_run_then_pause_and_resume_a_campaign_from_the_jobs_page(
    app, db, page, server, shot, ops_login
):
    """Promise: ops see the scheduled campaign and the recurring jobs with their next
    run, and pause and resume the campaign from the jobs page; readable at 360 px."""
    public_id = scheduled_campaign(db, "Spring offers")
    service = SchedulerService(app, holder="browser-test")  # stores the recurring jobs
    service.step()
    service.shutdown()
    OPS.log_in(page, server)
    page.get_by_role("link", name="Jobs").click()
    expect(page.locator("h1")).to_have_text("Scheduled jobs")
    row = page.locator(f'tr[data-job="campaign:{public_id}"]')
    expect(row).to_contain_text("Spring offers")
    expect(row.locator('[data-field="state"]')).to_have_text("scheduled")
    expect(row.locator('[data-field="next-run"] time')).to_be_visible()
    for job_id in ("fire-due", "policy-broadcasts", "housekeeping"):
        recurring = page.locator(f'tr[data-job="{job_id}"]')
        expect(recurring.locator('[data-field="state"]')).to_have_text("scheduled")
        expect(recurring.locator('[data-field="next-run"] time')).to_be_visible()
    fits(page, LAPTOP, "jobs")
    shot("jobs-laptop")

    row.get_by_role("button", name="Pause: Spring offers").click()
    expect(page.locator('[role="status"]')).to_contain_text("Paused: Spring offers.")
    expect(row.locator('[data-field="state"]')).to_have_text("paused")
    expect(row).to_contain_text("none while paused")
    shot("jobs-paused")
    row.get_by_role("button", name="Resume: Spring offers").click()
    expect(page.locator('[role="status"]')).to_contain_text("Resumed: Spring offers.")
    expect(row.locator('[data-field="state"]')).to_have_text("scheduled")
    expect(row.locator('[data-field="next-run"] time')).to_be_visible()

    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.locator("h1")).to_have_text("Scheduled jobs")
    fits(page, PHONE, "jobs")
    shot("jobs-phone")


def test_announce_a_policy_change_see_its_counts_confirm_and_find_it_listed(
    db, page, server, shot, ops_login
):
    """Promise: ops fill in the announcement form, see who the notice reaches (allowed
    and blocked by reason) before anything is scheduled, confirm, and find the version
    in the list with its notice scheduled; every step readable at 360 px."""
    with db.transaction() as s:
        for _ in range(3):
            person(s)
        out = person(s, opted_in=("offers",))
        consent.opt_out(s, out, get_topic(s, "offers"), evidence("one_click"))
        gone = person(s)
        subscribers.deactivate(s, gone, evidence("preference_page"))
        bounced = person(s)
        suppression.add(s, bounced.email_hash, SuppressionReason.BOUNCE, source="smtp")
    effective = (clock.now() + timedelta(days=45)).strftime("%Y-%m-%dT%H:%M")
    OPS.log_in(page, server)
    for size_name, size in (("laptop", LAPTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.goto(f"{server}/dashboard/policies")
        expect(page.locator("h1")).to_have_text("Policy announcements")
        fits(page, size, "policies")
        shot(f"policies-{size_name}")

    page.set_viewport_size(LAPTOP)
    page.get_by_label("Version").fill("2026-09")
    page.get_by_label("Title").fill("Shorter log retention")
    page.get_by_label("Summary").fill("We now keep server logs for 30 days instead of 90.")
    page.get_by_label("Where the new policy is published").fill("https://example.test/privacy")
    page.get_by_label("Takes effect (UTC)").fill(effective)
    page.get_by_role("button", name="Preview who it reaches").click()

    expect(page.locator("h1")).to_have_text("Announce version 2026-09?")
    expect(page.locator('[data-count="allowed"]')).to_have_text("4")
    expect(page.locator('[data-count="blocked"]')).to_have_text("2")
    expect(page.locator('[data-blocked="deactivated"]')).to_have_text("1")
    expect(page.locator('[data-blocked="suppressed_bounce"]')).to_have_text("1")
    fits(page, LAPTOP, "preview")
    shot("preview-laptop")
    page.set_viewport_size(PHONE)
    fits(page, PHONE, "preview")
    shot("preview-phone")

    page.get_by_role("button", name="Confirm: announce to 4 people").click()
    expect(page).to_have_url(f"{server}/dashboard/policies#policy-2026-09")
    expect(page.locator('[role="status"]')).to_contain_text("Version 2026-09 is announced")
    row = page.locator('tr[data-version="2026-09"]')
    expect(row).to_contain_text("Shorter log retention")
    expect(row.locator('[data-field="status"]')).to_have_text("scheduled")
    expect(row.get_by_role("link", name="Progress of the notice")).to_be_visible()
    fits(page, PHONE, "policies after announcing")
    shot("announced-phone")
    page.set_viewport_size(LAPTOP)
    shot("announced-laptop")

    # The new notice is on the jobs page too, due now: the scheduler starts it next tick.
    page.get_by_role("link", name="Jobs").click()
    notice = page.locator('tr[data-job="policy:2026-09"]')
    expect(notice).to_contain_text("policy notice")
    expect(notice.locator(".due-now")).to_have_text("now")
