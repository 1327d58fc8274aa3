"""Bounce tests: a webhook secret, a frozen clock just after the samples were written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailprefs import clock

WEBHOOK_SECRET = "test-webhook-secret-0123456789"
NOW = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


@pytest.fixture
def app_config() -> dict:
    return {
        "MAILPREFS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MAILPREFS_SOFT_BOUNCE_LIMIT": 3,
        "MAILPREFS_SOFT_BOUNCE_DAYS": 7,
    }


@pytest.fixture(autouse=True)
def frozen_clock():
    clock.freeze(NOW)
    yield NOW
    clock.unfreeze()
