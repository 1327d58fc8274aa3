"""Issue 13 finding 2: who may act on a campaign depends on its topic's kind, for every
action, not only create (role x action x topic kind)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain import users
from mailprefs.domain.models import AuditEntry
from mailprefs.domain.outbox_models import Campaign
from tests.conftest import _key, bearer

TOPIC = {"marketing": "offers", "administrative": "account"}

# action -> (method, path suffix, body, the status the campaign must be in beforehand)
ACTIONS = {
    "read": ("GET", "", None, "draft"),
    "audience": ("GET", "/audience", None, "draft"),
    "preview": ("GET", "/preview", None, "draft"),
    "test": ("POST", "/test", {"emails": ["staff@example.com"]}, "draft"),
    "schedule": ("POST", "/schedule", {}, "draft"),
    "cancel": ("POST", "/cancel", None, "draft"),
    "pause": ("POST", "/pause", None, "scheduled"),
    "resume": ("POST", "/resume", None, "paused"),
}


def may(role: str, kind: str) -> bool:
    """The rule: marketing keys act on marketing topics only; ops and admin on both."""
    return role in ("ops", "admin") or kind == "marketing"


@pytest.fixture
def app_config(relay_config):
    return relay_config


def _campaign_in(client, ops_key, kind: str, status: str) -> str:
    later = (clock.now() + timedelta(days=1)).isoformat()
    body = {"topic": TOPIC[kind], "subject": "S", "text": "T"}
    if status != "draft":
        body["send_at"] = later
    campaign_id = client.post("/api/v1/campaigns", json=body, headers=bearer(ops_key)).get_json()[
        "id"
    ]
    if status == "paused":
        assert (
            client.post(f"/api/v1/campaigns/{campaign_id}/pause", headers=bearer(ops_key))
        ).status_code == 200
    return campaign_id


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_campaign_action_checks_the_role_against_the_topic_kind(
    client, db, ops_key, sink, action
):
    with db.transaction() as s:
        users.create(s, "staff@example.com", "ops", "a long enough password")
    keys = {role: _key(db, role) for role in ("marketing", "ops", "admin", "transactional")}
    method, suffix, body, before = ACTIONS[action]
    for role, key in keys.items():
        for kind in TOPIC:
            campaign_id = _campaign_in(client, ops_key, kind, before)
            with db.session(read_only=True) as s:
                audits_before = len(s.scalars(select(AuditEntry.id)).all())
            mails_before = len(sink.messages)
            response = client.open(
                f"/api/v1/campaigns/{campaign_id}{suffix}",
                method=method,
                json=body,
                headers=bearer(key),
            )
            case = f"{role} {action} {kind}: {response.get_data(as_text=True)}"
            if role != "transactional" and may(role, kind):
                assert response.status_code == 200, case
                continue
            assert response.status_code == 403, case
            assert response.mimetype == "application/problem+json", case
            # Refused means nothing happened: same status, no mail, no audit entry.
            with db.session(read_only=True) as s:
                campaign = s.scalar(select(Campaign).where(Campaign.public_id == campaign_id))
                assert campaign.status.value == before, case
                assert len(s.scalars(select(AuditEntry.id)).all()) == audits_before, case
            assert len(sink.messages) == mails_before, case
