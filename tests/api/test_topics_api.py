"""Topics managed in the product through `POST/PATCH /api/v1/topics` (admin keys):
create, rename, describe, double opt-in, a sender of its own, retire and restore, each
audited; slug and kind fixed; the catalogue only seeds topics the database lacks."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.delivery.transport import captured_files
from mailprefs.delivery.worker import Worker
from mailprefs.domain import campaigns
from mailprefs.domain.models import AuditEntry, Topic
from mailprefs.domain.topics import get_topic
from mailprefs.migrate import sync_reference_data
from tests.conftest import bearer
from tests.support.factories import person

NEW = {"slug": "events", "name": "Events near you", "kind": "marketing", "double_opt_in": True}


def actions(db) -> list[tuple[str, str]]:
    with db.session(read_only=True) as s:
        return s.execute(
            select(AuditEntry.action, AuditEntry.target_id)
            .where(AuditEntry.target_type == "topic")
            .order_by(AuditEntry.id)
        ).all()


def test_an_admin_creates_a_topic_that_is_listed_and_audited(client, admin_key, db):
    """Promise: POST creates the topic (201, its fields back), GET lists it, and the
    creation is in the audit log under the key."""
    reply = client.post(
        "/api/v1/topics",
        json={**NEW, "from": "Events <events@example.com>"},
        headers=bearer(admin_key),
    )
    assert reply.status_code == 201, reply.get_json()
    assert reply.get_json() == {
        **NEW,
        "description": "",
        "from": "Events <events@example.com>",
        "active": True,
    }
    listed = client.get("/api/v1/topics", headers=bearer(admin_key)).get_json()
    assert {
        "slug": "events",
        "name": "Events near you",
        "kind": "marketing",
        "double_opt_in": True,
    } in listed
    assert actions(db) == [("topic.create", "events")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**NEW, "slug": "Bad Slug"}, "slug"),
        ({**NEW, "kind": "newsletter"}, "kind"),
        ({**NEW, "kind": "administrative", "double_opt_in": True}, "double_opt_in"),
        ({**NEW, "from": "not an address"}, "from"),
        ({**NEW, "name": "{{ evil }}"}, "name"),
        ({**NEW, "name": ""}, "name"),
    ],
)
def test_invalid_topics_are_refused_naming_the_field(client, admin_key, db, body, field):
    """Promise: bad input is a 422 naming the field; nothing is created or audited."""
    reply = client.post("/api/v1/topics", json=body, headers=bearer(admin_key))
    assert reply.status_code == 422, reply.get_json()
    assert field in {e["field"].split(".")[0] for e in reply.get_json()["errors"]}
    with db.session(read_only=True) as s:
        assert s.scalar(select(Topic.id).where(Topic.slug == body["slug"])) is None
    assert actions(db) == []


def test_only_admin_keys_change_topics_and_slugs_are_unique(
    client, admin_key, ops_key, marketing_key
):
    """Promise: ops and marketing keys get 403; a second topic with a slug is 409."""
    for key in (ops_key, marketing_key):
        assert client.post("/api/v1/topics", json=NEW, headers=bearer(key)).status_code == 403
        assert (
            client.patch(
                "/api/v1/topics/offers", json={"name": "x"}, headers=bearer(key)
            ).status_code
            == 403
        )
    assert client.post("/api/v1/topics", json=NEW, headers=bearer(admin_key)).status_code == 201
    assert client.post("/api/v1/topics", json=NEW, headers=bearer(admin_key)).status_code == 409
    assert (
        client.post(
            "/api/v1/topics", json={**NEW, "slug": "offers"}, headers=bearer(admin_key)
        ).status_code
        == 409
    )


def test_patch_renames_describes_and_retires_then_restores(client, admin_key, db):
    """Promise: PATCH changes only the fields given, audited with before and after; a
    retired topic leaves the list and takes no campaign; restoring brings it back; the
    kind cannot be changed."""
    path = "/api/v1/topics/offers"
    reply = client.patch(
        path, json={"name": "Offers", "description": "Twice a month"}, headers=bearer(admin_key)
    )
    assert reply.status_code == 200
    assert reply.get_json()["name"] == "Offers" and reply.get_json()["kind"] == "marketing"
    assert (
        client.patch(path, json={"kind": "administrative"}, headers=bearer(admin_key)).status_code
        == 422
    )
    assert client.patch(path, json={"active": False}, headers=bearer(admin_key)).status_code == 200
    listed = client.get("/api/v1/topics", headers=bearer(admin_key)).get_json()
    assert "offers" not in {t["slug"] for t in listed}
    with db.session(read_only=True) as s, pytest.raises(Exception, match="unknown topic"):
        get_topic(s, "offers")
    client.patch(path, json={"active": True}, headers=bearer(admin_key))
    assert [a for a, _ in actions(db)] == ["topic.update", "topic.retire", "topic.restore"]
    with db.session(read_only=True) as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "topic.update"))
        assert entry.detail["name"]["to"] == "Offers"


def test_the_topics_the_service_sends_on_cannot_be_retired(client, admin_key):
    """Promise: `account` (confirmations) and `policy` (notices) stay: 409."""
    for slug in ("account", "policy"):
        reply = client.patch(
            f"/api/v1/topics/{slug}", json={"active": False}, headers=bearer(admin_key)
        )
        assert reply.status_code == 409
    assert (
        client.patch(
            "/api/v1/topics/nope", json={"name": "x"}, headers=bearer(admin_key)
        ).status_code
        == 404
    )


def test_the_catalogue_only_seeds_what_the_database_lacks(app, client, admin_key, db):
    """Promise: after a topic is renamed or retired in the product, migrating again with
    the environment's catalogue changes neither; a new slug in it is added."""
    client.patch("/api/v1/topics/offers", json={"name": "Our offers"}, headers=bearer(admin_key))
    client.patch("/api/v1/topics/newsletter", json={"active": False}, headers=bearer(admin_key))
    catalogue = [
        *app.config["MAILPREFS_TOPIC_CATALOGUE"],
        {"slug": "later", "name": "Later", "kind": "marketing"},
    ]
    with db.transaction() as s:
        added = sync_reference_data(s, {**app.config, "MAILPREFS_TOPIC_CATALOGUE": catalogue})
    assert added == ["later"]
    with db.session(read_only=True) as s:
        topics = {t.slug: t for t in s.scalars(select(Topic))}
    assert topics["offers"].name == "Our offers"
    assert topics["newsletter"].active is False
    assert topics["later"].active is True


def test_a_topics_own_sender_is_the_from_of_its_mail(app, client, admin_key, db):
    """Promise: a topic given a sender sends from it (marketing headers unchanged)."""
    client.patch(
        "/api/v1/topics/offers",
        json={"from": "Offers Team <offers@example.com>"},
        headers=bearer(admin_key),
    )
    with db.transaction() as s:
        person(s, "reader@example.com", opted_in=("offers",))
        row = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject="Hi",
            text="Hello",
            html=None,
            send_at=clock.now(),
            audience=None,
            created_by="t",
        )
        assert row.status.value == "scheduled"
    Worker(app).run_due()
    [path] = captured_files(app.config["MAILPREFS_MAIL_CAPTURE_DIR"])
    raw = path.read_text()
    assert "From: Offers Team <offers@example.com>" in raw
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    client.patch("/api/v1/topics/offers", json={"from": None}, headers=bearer(admin_key))
    with db.session(read_only=True) as s:
        assert get_topic(s, "offers").from_addr is None
