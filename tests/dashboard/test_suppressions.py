"""Suppression list on the dashboard: search through the hash (the address is never
stored, logged or put in a URL), evidence and history, manual add, lift with a written
reason (audited); erasures cannot be lifted; complaints only by an admin."""

from __future__ import annotations

from sqlalchemy import select

from mailprefs.domain import complaints, subscribers, suppression
from mailprefs.domain.addresses import address_hash
from mailprefs.domain.models import AuditEntry, Suppression, SuppressionReason
from tests.conftest import bearer
from tests.dashboard.conftest import post_form
from tests.support.factories import HASH_KEY, evidence, person

PAGE = "/dashboard/suppressions"


def hashed(address):
    return address_hash(address, HASH_KEY)


def audit_dump(db) -> str:
    with db.session(read_only=True) as s:
        rows = s.scalars(select(AuditEntry)).all()
        return repr([(r.actor, r.action, r.target_type, r.target_id, r.detail) for r in rows])


def search(client, address):
    return post_form(client, f"{PAGE}/search", {"search-email": address}, token_from=PAGE)


def test_search_finds_a_bounce_by_address_with_its_evidence(client, ops_client, db, ops_key):
    """Promise: searching an address matches through the hash and shows reason, evidence
    and bounce history; the address goes to no URL and no audit entry."""
    client.post(
        "/api/v1/events/bounces",
        json={
            "events": [
                {
                    "type": "bounce",
                    "bounce": "hard",
                    "email": "Gone@Example.com",
                    "diagnostic": "550 5.1.1 mailbox unknown",
                }
            ]
        },
        headers=bearer(ops_key),
    )
    reply = search(ops_client, "gone@EXAMPLE.com")
    page = reply.get_data(as_text=True)
    assert reply.status_code == 200
    assert "Suppressed: bounce" in page and "550 5.1.1 mailbox unknown" in page
    assert "gone@example.com" not in page.lower()  # not echoed back either
    dump = audit_dump(db)
    assert "suppression.search" in dump and hashed("gone@example.com") in dump
    assert "gone@" not in dump.lower()
    not_found = search(ops_client, "nobody@example.com").get_data(as_text=True)
    assert "Not suppressed" in not_found and "Never suppressed" in not_found


def test_search_is_a_post_so_the_address_stays_out_of_urls_and_logs(ops_client):
    """Promise: there is no GET search (a GET puts the address in access logs)."""
    assert ops_client.get(f"{PAGE}/search?search-email=a@example.com").status_code == 405
    page = ops_client.get(PAGE).get_data(as_text=True)
    assert f'action="{PAGE}/search"' in page and 'method="post"' in page


def test_adding_an_address_suppresses_it_manually_and_is_audited(ops_client, db, staff):
    """Promise: a manual suppression by hash, its note kept without the address, audited."""
    reply = post_form(
        ops_client,
        f"{PAGE}/add",
        {"add-email": "Pat@Example.com", "add-note": "pat@example.com asked by phone"},
        token_from=PAGE,
    )
    assert reply.status_code == 302
    with db.session(read_only=True) as s:
        row = suppression.active(s, hashed("pat@example.com"))
        assert row.reason == SuppressionReason.MANUAL and row.source == "staff"
        assert row.created_by == f"user:{staff['ops']}"
        assert row.evidence == {"note": "<recipient> asked by phone"}
    assert "suppression.add" in audit_dump(db)
    # Adding it again changes nothing and says so.
    again = post_form(
        ops_client,
        f"{PAGE}/add",
        {"add-email": "pat@example.com", "add-note": "again"},
        token_from=PAGE,
        follow_redirects=True,
    )
    assert "already suppressed" in again.get_data(as_text=True)
    with db.session(read_only=True) as s:
        assert len(s.scalars(select(Suppression)).all()) == 1


def test_an_invalid_address_is_refused_without_storing_anything(ops_client, db):
    """Promise: a bad address stores nothing and says why."""
    reply = post_form(
        ops_client,
        f"{PAGE}/add",
        {"add-email": "not an address", "add-note": "x"},
        token_from=PAGE,
        follow_redirects=True,
    )
    assert "not a valid email address" in reply.get_data(as_text=True)
    with db.session(read_only=True) as s:
        assert s.scalar(select(Suppression.id)) is None


def manual(db, address="lift.me@example.com") -> int:
    with db.transaction() as s:
        return suppression.add(
            s, hashed(address), SuppressionReason.BOUNCE, source="smtp", evidence={"delivery": 1}
        ).id


def test_lifting_needs_a_written_reason_and_is_audited(ops_client, db, staff):
    """Promise: a lift without a reason is refused; with one, the row is lifted and the
    reason is in the audit log under the user's id."""
    row_id = manual(db)
    page = f"{PAGE}/{row_id}"
    assert "Lift this suppression" in ops_client.get(page).get_data(as_text=True)
    refused = post_form(
        ops_client, f"{page}/lift", {"reason": "  "}, token_from=page, follow_redirects=True
    )
    assert "Write why" in refused.get_data(as_text=True)
    with db.session(read_only=True) as s:
        assert s.get(Suppression, row_id).lifted_at is None
    post_form(
        ops_client,
        f"{page}/lift",
        {"reason": "the person fixed their mailbox and wrote to us"},
        token_from=page,
    )
    with db.session(read_only=True) as s:
        row = s.get(Suppression, row_id)
        assert row.lifted_at is not None and row.lifted_by == f"user:{staff['ops']}"
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "suppression.lift"))
        assert entry.actor == f"user:{staff['ops']}" and entry.target_id == str(row_id)
        assert entry.detail["reason"] == "the person fixed their mailbox and wrote to us"


def test_an_erasure_cannot_be_lifted_from_the_dashboard(ops_client, admin_client, db):
    """Promise: erased addresses stay suppressed: no lift form, and a forged lift fails."""
    with db.transaction() as s:
        gone = person(s, "erase.me@example.com")
        subscribers.erase(s, gone, hash_key=HASH_KEY, actor="test")
        row_id = suppression.active(s, hashed("erase.me@example.com")).id
    page = f"{PAGE}/{row_id}"
    html = admin_client.get(page).get_data(as_text=True)
    assert "Lift this suppression" not in html and "cannot be undone" in html
    reply = post_form(
        admin_client, f"{page}/lift", {"reason": "please"}, token_from=page, follow_redirects=True
    )
    assert "cannot be undone" in reply.get_data(as_text=True)
    with db.session(read_only=True) as s:
        assert s.get(Suppression, row_id).lifted_at is None


def test_only_an_admin_may_lift_a_complaint_suppression(ops_client, admin_client, db):
    """Promise: lifting a complaint overrides the person's own report: admin only."""
    with db.transaction() as s:
        who = person(s, "complained@example.com", opted_in=("offers",))
        complaints.report(
            s, subscriber=who, email_hash=None, source="preference_page", evidence=evidence()
        )
        row_id = suppression.active(s, hashed("complained@example.com")).id
    page = f"{PAGE}/{row_id}"
    assert "Lift this suppression" not in ops_client.get(page).get_data(as_text=True)
    forged = post_form(ops_client, f"{page}/lift", {"reason": "I think so"}, token_from=page)
    assert forged.status_code == 403
    post_form(admin_client, f"{page}/lift", {"reason": "confirmed in writing"}, token_from=page)
    with db.session(read_only=True) as s:
        assert s.get(Suppression, row_id).lifted_at is not None


def test_the_list_shows_active_suppressions_by_hash_only(ops_client, db):
    """Promise: the list never shows addresses (there are none to show), and filters."""
    manual(db, "a@example.com")
    with db.transaction() as s:
        suppression.add(s, hashed("b@example.com"), SuppressionReason.MANUAL, source="staff")
    page = ops_client.get(PAGE).get_data(as_text=True)
    assert hashed("a@example.com")[:12] in page and "a@example.com" not in page
    only = ops_client.get(f"{PAGE}?reason=manual").get_data(as_text=True)
    assert hashed("b@example.com")[:12] in only and hashed("a@example.com")[:12] not in only
