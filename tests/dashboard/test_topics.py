"""The Topics page: every staff login reads the topics; an admin creates, renames,
describes, gives a sender, retires and restores them through the API's domain code
(audited); bad input is a message in words and changes nothing."""

from __future__ import annotations

from sqlalchemy import select

from mailprefs.domain.models import AuditEntry, Topic
from tests.dashboard.conftest import csrf_token


def post(client, path: str, data: dict, prefix: str = ""):
    token = csrf_token(client, "/dashboard/topics")
    return client.post(path, data={f"{prefix}csrf_token": token, **data}, follow_redirects=True)


def create(client, **fields: str):
    """The new-topic form, its fields named `new-<name>` on the page."""
    return post(client, "/dashboard/topics", {f"new-{k}": v for k, v in fields.items()}, "new-")


def update(client, slug: str, **fields: str):
    """A topic's own form, its fields named `t-<slug>-<name>` on the page."""
    prefix = f"t-{slug}-"
    data = {prefix + name: value for name, value in fields.items()}
    return post(client, f"/dashboard/topics/{slug}", data, prefix)


def topic(db, slug: str) -> Topic | None:
    with db.session(read_only=True) as s:
        return s.scalar(select(Topic).where(Topic.slug == slug))


def test_an_admin_creates_renames_retires_and_restores_a_topic(admin_client, db, staff):
    """Promise: each change goes through the domain and is audited under the admin."""
    created = create(
        admin_client,
        slug="events",
        kind="marketing",
        name="Events",
        double_opt_in="y",
        sender="Events <events@example.com>",
    )
    assert "Topic “Events” (events) is created." in created.get_data(as_text=True)
    row = topic(db, "events")
    assert row.double_opt_in and row.from_addr == "Events <events@example.com>"
    update(admin_client, "events", name="Events near you", description="Monthly")
    assert topic(db, "events").name == "Events near you"
    assert topic(db, "events").double_opt_in is False  # the box was not ticked
    page = post(admin_client, "/dashboard/topics/events/retire", {})
    assert "is retired" in page.get_data(as_text=True) and topic(db, "events").active is False
    post(admin_client, "/dashboard/topics/events/restore", {})
    assert topic(db, "events").active is True
    with db.session(read_only=True) as s:
        entries = s.execute(
            select(AuditEntry.actor, AuditEntry.action)
            .where(AuditEntry.target_type == "topic")
            .order_by(AuditEntry.id)
        ).all()
    actor = f"user:{staff['admin']}"
    assert entries == [
        (actor, "topic.create"),
        (actor, "topic.update"),
        (actor, "topic.retire"),
        (actor, "topic.restore"),
    ]
    listing = admin_client.get("/dashboard/topics").get_data(as_text=True)
    assert 'data-confirm="Retire “Events near you”?' in listing


def test_bad_input_is_a_message_and_changes_nothing(admin_client, db):
    """Promise: an invalid sender, a taken slug and retiring a required topic are each
    refused in words, with nothing changed or audited."""
    page = update(admin_client, "offers", name="Offers", sender="not an address")
    assert "Not saved: Sender:" in page.get_data(as_text=True)
    assert topic(db, "offers").from_addr is None and topic(db, "offers").name != "Offers"
    taken = create(admin_client, slug="offers", kind="marketing", name="Again")
    assert "exists" in taken.get_data(as_text=True)
    kept = post(admin_client, "/dashboard/topics/account/retire", {})
    assert "is needed by the service" in kept.get_data(as_text=True)
    assert topic(db, "account").active is True
    with db.session(read_only=True) as s:
        assert s.scalar(select(AuditEntry.id).where(AuditEntry.target_type == "topic")) is None


def test_ops_read_topics_but_only_admins_change_them(ops_client, db):
    """Promise: ops see every topic with its kind and state, no form, and a change is
    refused (403)."""
    page = ops_client.get("/dashboard/topics").get_data(as_text=True)
    assert "<code>offers</code>" in page and "Only an admin changes topics." in page
    assert "Create the topic" not in page
    token = csrf_token(ops_client, "/dashboard/topics")
    reply = ops_client.post("/dashboard/topics/offers/retire", data={"csrf_token": token})
    assert reply.status_code == 403 and topic(db, "offers").active is True
