"""The webhooks page in a real browser: endpoints, a failed delivery among the recent
ones, and replaying it (audited) until the receiver process has it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from mailprefs.domain import links, users
from mailprefs.domain.models import AuditEntry
from mailprefs.domain.webhook_models import WebhookDelivery, WebhookDeliveryStatus
from tests.support.browser import fill_login
from tests.support.factories import evidence, person
from tests.support.webhook_receiver import start_receiver, stop_receiver
from tests.webhooks.conftest import Receiver, register, sender

EMAIL, PASSWORD = "ops.hooks@example.com", "hooks-password-1"


@pytest.fixture
def app_config() -> dict:
    return {"MAILPREFS_BASE_URL": "http://127.0.0.1", "MAILPREFS_WEBHOOK_TIMEOUT_SECONDS": 1.0}


@pytest.fixture
def receiver(tmp_path):
    proc, port = start_receiver(tmp_path / "receiver")
    yield Receiver(tmp_path / "receiver", port)
    stop_receiver(proc)


def test_webhooks_page_lists_a_failure_and_replays_it(
    app, db, client, admin_key, receiver, page, server, shot
):
    with db.transaction() as s:
        ann = person(s, "ann@example.com", opted_in=("offers",)).public_id
        users.create(s, EMAIL, "ops", PASSWORD)
    hook = register(client, admin_key, receiver, ["subscription.changed"])
    receiver.set("mode", "500")
    with db.transaction() as s:
        links.opt_out(s, ann, "offers", evidence("one_click"))
    sender(app).run_once()
    with db.transaction() as s:  # as if 24 hours of retries had passed
        row = s.scalar(select(WebhookDelivery))
        row.status = WebhookDeliveryStatus.FAILED
        delivery_id = row.id

    page.goto(f"{server}/dashboard/login")
    fill_login(page, EMAIL, PASSWORD)
    page.get_by_role("link", name="Webhooks").click()
    expect(page.locator(f'tr[data-endpoint="{hook["id"]}"]')).to_contain_text(receiver.url)
    failed = page.locator(f'table[data-table="failed"] tr[data-delivery="{delivery_id}"]')
    expect(failed).to_contain_text("HTTP 500")
    shot("failed")

    receiver.set("mode", "ok")
    failed.get_by_role("button", name="Replay").click()
    expect(page.locator('[role="status"]')).to_contain_text("will be sent again")
    expect(page.locator('table[data-table="failed"]')).to_contain_text("Nothing failed.")
    sender(app).run_once()
    page.reload()
    recent = page.locator(f'table[data-table="recent"] tr[data-delivery="{delivery_id}"]')
    expect(recent).to_have_attribute("data-status", "delivered")
    shot("replayed")
    page.set_viewport_size({"width": 360, "height": 740})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 361
    shot("phone")
    assert [r["status"] for r in receiver.received()] == [500, 200]
    with db.session(read_only=True) as s:
        assert s.scalar(select(AuditEntry).where(AuditEntry.action == "webhook.replay"))
