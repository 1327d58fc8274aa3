"""An import's consents reach the webhook endpoints as every other change does: one
`subscription.changed` per consent event, in the order of the file for each person,
written in the batch's transaction (rows written in bulk, which the session hook does
not see)."""

from __future__ import annotations

from sqlalchemy import select

from mailprefs.delivery.worker import Worker
from mailprefs.domain.models import ConsentEvent, Subscriber, Topic
from mailprefs.domain.webhook_models import WebhookEvent
from tests.conftest import count
from tests.imports.support import run_import
from tests.webhooks.conftest import register

FILE = (
    "email,topics,consent_at,source,source_detail,confirmed_at,status\n"
    "ann@example.com,offers,2025-01-02T10:00:00Z,web_form,footer form,,\n"
    "bob@example.com,offers;newsletter,2025-01-03T10:00:00Z,web_form,,,\n"
    "ann@example.com,offers,2025-01-05T10:00:00Z,import,old ESP export,,opted_out\n"
    "cat@example.com,newsletter,2025-01-03T10:00:00Z,staff,,2025-01-03T11:00:00Z,\n"
    "dan@example.com,offers,,,,,\n"
)


def _ledger(db) -> list[tuple[str, str, str, str]]:
    """(person's public id, topic slug, action, source) of every consent event, in order."""
    with db.session(read_only=True) as s:
        rows = s.execute(
            select(Subscriber.public_id, Topic.slug, ConsentEvent.action, ConsentEvent.source)
            .join(Subscriber, Subscriber.id == ConsentEvent.subscriber_id)
            .join(Topic, Topic.id == ConsentEvent.topic_id)
            .order_by(ConsentEvent.id)
        )
        return [(p, t, a.value, src) for p, t, a, src in rows]


def test_every_consent_an_import_records_reaches_the_endpoint_in_order(
    app, client, admin_key, db, receiver, tmp_path
):
    register(client, admin_key, receiver, ["subscription.changed"])
    result = run_import(app, tmp_path, FILE)
    assert result["status"] == "done", result
    recorded = _ledger(db)
    assert len(recorded) == 6  # ann in, ann out, bob offers + newsletter, cat in + confirm

    Worker(app).run_due()
    got = [r["event"] for r in receiver.received()]
    assert all(r["verified"] for r in receiver.received())
    sent = [(e["data"]["subscriber"], e["data"]["topic"], e["data"]["action"]) for e in got]
    assert sorted(sent) == sorted((p, t, a) for p, t, a, _ in recorded), "one each, no more"
    by_person: dict[str, list[str]] = {}
    for e in got:
        assert e["type"] == "subscription.changed"
        by_person.setdefault(e["data"]["subscriber"], []).append(
            f"{e['data']['topic']}:{e['data']['state']}"
        )
    states = sorted(by_person.values())
    assert ["newsletter:pending", "newsletter:opted_in"] in states, "cat: pending, confirmed"
    assert ["offers:opted_in", "offers:opted_out"] in states, "ann: in the file's order"
    assert ["offers:opted_in", "newsletter:pending"] in states, "bob"
    assert "@example" not in str(got), "public ids only"

    again = run_import(app, tmp_path, FILE)
    assert again["status"] == "done"
    assert count(db, WebhookEvent.id) == len(got), "the same file again: no new event"


def test_an_import_with_no_endpoint_listening_writes_no_webhook_event(app, db, tmp_path):
    assert run_import(app, tmp_path, FILE)["status"] == "done"
    assert len(_ledger(db)) == 6
    assert count(db, WebhookEvent.id) == 0
