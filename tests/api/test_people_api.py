"""Finding people: `GET /api/v1/subscribers` (ops; filters, cursor pages, audited reads),
`/counts/topics` (numbers for marketing keys), `/exports/subscribers` (streamed CSV,
audited, formula injection neutralised)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain import consent, subscribers
from mailprefs.domain.models import AuditEntry
from mailprefs.domain.topics import get_topic
from tests.conftest import bearer
from tests.support.factories import HASH_KEY, evidence, person


def people(db):
    with db.transaction() as s:
        ann = person(s, "ann@example.com", opted_in=("offers",), attributes={"plan": "=1+1"})
        bob = person(s, "bob@example.com", opted_in=("offers", "newsletter"), confirmed=False)
        cat = person(s, "cat@example.com")
        consent.opt_out(s, bob, get_topic(s, "offers"), evidence("one_click"))
        dan = person(s, "dan@example.com", opted_in=("offers",))
        subscribers.deactivate(s, dan, evidence("preference_page"))
        gone = person(s, "gone@example.com", opted_in=("offers",))
        subscribers.erase(s, gone, hash_key=HASH_KEY, actor="t")
        return {p.email or "gone": p.public_id for p in (ann, bob, cat, dan, gone)}


def ids(reply) -> set[str]:
    return {item["id"] for item in reply.get_json()["items"]}


def listing(client, key, query=""):
    return client.get(f"/api/v1/subscribers{query}", headers=bearer(key))


def test_filters_find_the_right_people_and_never_the_erased(client, db, ops_key):
    """status, topic, topic state, exact address, created range; erased people never show."""
    who = people(db)
    assert ids(listing(client, ops_key)) == {
        who[e] for e in ("ann@example.com", "bob@example.com", "cat@example.com", "dan@example.com")
    }
    assert ids(listing(client, ops_key, "?status=deactivated")) == {who["dan@example.com"]}
    assert ids(listing(client, ops_key, "?topic=offers&state=opted_in")) == {who["ann@example.com"]}
    assert ids(listing(client, ops_key, "?topic=offers&state=opted_out")) == {
        who["bob@example.com"],
        who["dan@example.com"],
    }
    assert ids(listing(client, ops_key, "?topic=newsletter&state=pending")) == {
        who["bob@example.com"]
    }
    assert who["cat@example.com"] in ids(listing(client, ops_key, "?topic=offers&state=none"))
    assert ids(listing(client, ops_key, "?email=BOB@example.com")) == {who["bob@example.com"]}
    later = (clock.now() + timedelta(hours=1)).isoformat()
    assert ids(listing(client, ops_key, f"?created_after={later.replace('+', '%2B')}")) == set()
    item = listing(client, ops_key, "?email=ann@example.com").get_json()["items"][0]
    assert item["email"] == "ann@example.com" and item["topics"]["offers"] == "opted_in"


def test_cursor_pages_cover_everyone_once(client, db, ops_key):
    """limit=2 pages through four people: no one missed, no one twice, last cursor null."""
    people(db)
    seen, cursor, pages = [], "", 0
    while True:
        reply = listing(client, ops_key, f"?limit=2&cursor={cursor}").get_json()
        seen += [i["id"] for i in reply["items"]]
        pages += 1
        cursor = reply["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 4 and pages == 2


def test_every_person_listed_is_an_audited_read(client, db, ops_key):
    who = people(db)
    listing(client, ops_key, "?status=active")
    with db.session(read_only=True) as s:
        reads = s.scalars(select(AuditEntry).where(AuditEntry.action == "subscriber.read")).all()
    assert {r.target_id for r in reads} == {
        who["ann@example.com"],
        who["bob@example.com"],
        who["cat@example.com"],
    }
    assert all(
        r.actor.startswith("key:mp_") and r.detail["filters"] == {"status": "active"} for r in reads
    )


def test_bad_filters_answer_422_naming_the_field(client, ops_key):
    for query, field in [
        ("?status=erased", "status"),
        ("?state=opted_in", "state"),
        ("?topic=nosuch", "topic"),
        ("?topic=off%00ers", "topic"),  # NUL: PostgreSQL would refuse the text itself
        ("?topic=offers&state=maybe", "state"),
        ("?email=not-an-address", "email"),
        ("?created_after=yesterday", "created_after"),
        ("?created_after=2025-01-01T00:00:00", "created_after"),
        ("?limit=0", "limit"),
        ("?limit=many", "limit"),
        ("?created_before=", "created_before"),
        ("?status=", "status"),
        ("?cursor=bogus", "cursor"),
    ]:
        reply = listing(client, ops_key, query)
        assert reply.status_code == 422, query
        assert reply.get_json()["errors"][0]["field"] == field, query


def test_marketing_keys_get_403_on_people_and_numbers_on_counts(client, db, marketing_key, ops_key):
    people(db)
    assert listing(client, marketing_key).status_code == 403
    assert (
        client.get("/api/v1/exports/subscribers", headers=bearer(marketing_key)).status_code == 403
    )
    reply = client.get("/api/v1/counts/topics", headers=bearer(marketing_key))
    assert reply.status_code == 200
    body = reply.get_json()
    assert body["total"] == 4 and body["status"] == {"active": 3, "deactivated": 1}
    assert body["topics"]["offers"] == {"none": 1, "pending": 0, "opted_in": 1, "opted_out": 1}
    assert body["topics"]["newsletter"]["pending"] == 1
    assert "@" not in reply.get_data(as_text=True)


def test_export_streams_a_filtered_csv_with_formulas_neutralised_and_is_audited(
    client, db, ops_key
):
    """The CSV holds the filtered people; a cell starting with = is prefixed with '."""
    who = people(db)
    reply = client.get(
        "/api/v1/exports/subscribers?topic=offers&state=opted_in", headers=bearer(ops_key)
    )
    assert reply.status_code == 200 and reply.mimetype == "text/csv"
    assert reply.is_streamed
    rows = list(csv.DictReader(io.StringIO(reply.get_data(as_text=True))))
    reply.close()  # as a WSGI server does
    assert [r["id"] for r in rows] == [who["ann@example.com"]]
    assert rows[0]["email"] == "ann@example.com" and rows[0]["offers"] == "opted_in"
    assert rows[0]["attributes"] == '{"plan": "=1+1"}'
    with db.session(read_only=True) as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "subscriber.export_list"))
    assert entry.detail == {"filters": {"topic": "offers", "state": "opted_in"}}


def test_neutralise_prefixes_every_formula_start():
    from mailprefs.domain.people import neutralise

    for cell in ("=SUM(A1)", "+1", "-1", "@cmd", "\tx", "\rx"):
        assert neutralise(cell) == "'" + cell
    assert neutralise("plain") == "plain" and neutralise(None) == ""


def test_export_with_a_bad_filter_answers_422_before_any_row(client, ops_key):
    for query in ("?status=erased", "?topic=%00"):
        reply = client.get(f"/api/v1/exports/subscribers{query}", headers=bearer(ops_key))
        assert reply.status_code == 422 and reply.mimetype == "application/problem+json"
