"""Webhook fixtures: a receiver process that verifies signatures, and endpoint helpers."""

from __future__ import annotations

import pytest

from mailprefs.delivery.webhooks import WebhookSender
from mailprefs.extensions import get_db
from tests.conftest import bearer
from tests.support.webhook_receiver import start_receiver, stop_receiver


class Receiver:
    def __init__(self, directory, port):
        self.directory, self.port = directory, port
        self.url = f"http://127.0.0.1:{port}/hook"

    def set(self, name: str, value: str) -> None:
        (self.directory / name).write_text(value)

    def received(self) -> list[dict]:
        from tests.support.webhook_receiver import received

        return received(self.directory)


@pytest.fixture
def receiver(tmp_path):
    proc, port = start_receiver(tmp_path / "receiver")
    yield Receiver(tmp_path / "receiver", port)
    stop_receiver(proc)


@pytest.fixture
def second_receiver(tmp_path):
    proc, port = start_receiver(tmp_path / "receiver2")
    yield Receiver(tmp_path / "receiver2", port)
    stop_receiver(proc)


@pytest.fixture
def app_config() -> dict:
    return {"MAILPREFS_WEBHOOK_TIMEOUT_SECONDS": 1.0, "MAILPREFS_WEBHOOK_RETRY_BASE_SECONDS": 2.0}


def register(client, admin_key, receiver: Receiver, events, include_email=False) -> dict:
    reply = client.post(
        "/api/v1/webhooks",
        json={"url": receiver.url, "events": events, "include_email": include_email},
        headers=bearer(admin_key),
    )
    assert reply.status_code == 201, reply.get_json()
    body = reply.get_json()
    receiver.set("secret", body["secret"])
    return body


def sender(app) -> WebhookSender:
    return WebhookSender.from_config(get_db(app), app.config, "test-sender")
