"""The import's rules, each with its count: evidence, no evidence, erased, suppressed,
double opt-in, opt-outs, attributes, duplicates, invalid rows; every event carries the
import's id and the file's SHA-256; the same file again changes nothing."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from mailprefs.domain import consent, suppression
from mailprefs.domain.addresses import address_hash
from mailprefs.domain.models import ConsentEvent, Subscriber, SuppressionReason
from mailprefs.domain.subscribers import find_by_address
from mailprefs.domain.topics import get_topic
from tests.imports.support import everything, ledger, run_import
from tests.support.factories import HASH_KEY, evidence, person

HEADER = "email,topics,consent_at,source,source_detail,ip,confirmed_at,status,attr.plan\n"
MIXED = HEADER + (
    "ann@example.com,offers,2025-01-02T10:00:00Z,web_form,footer form v2,198.51.100.1,,,gold\n"
    "bob@example.com,offers,,,,,,,\n"
    "not-an-address,offers,2025-01-02T10:00:00Z,web_form,,,,,\n"
    "ann@example.com,newsletter,2025-01-03T10:00:00Z,web_form,,,,,\n"
    "cat@example.com,newsletter,2025-01-03T10:00:00Z,staff,,,2025-01-03T11:00:00Z,,\n"
    "bounced@example.com,offers,2025-01-02T10:00:00Z,web_form,,,,,\n"
    "erased@example.com,offers,2025-01-02T10:00:00Z,web_form,,,,,\n"
    "dan@example.com,offers;newsletter,2025-01-04T10:00:00Z,import,,,,unsubscribed,\n"
    "eve@example.com,,,,,,,,silver\n"
)


def _states(db, address):
    with db.session(read_only=True) as s:
        person_ = find_by_address(s, address, HASH_KEY)
        return {k: v.value for k, v in consent.states(s, person_).items()}


def _prepare(db):
    with db.transaction() as s:
        suppression.add(
            s, address_hash("bounced@example.com", HASH_KEY), SuppressionReason.BOUNCE, source="t"
        )
        suppression.add(
            s, address_hash("erased@example.com", HASH_KEY), SuppressionReason.ERASED, source="t"
        )


def test_every_rule_has_its_count_and_its_effect(app, db, tmp_path):
    """One file with every case: each count is exact and each person ends as the rules say."""
    _prepare(db)
    result = run_import(app, tmp_path, MIXED)
    assert result["status"] == "done"
    assert result["counts"] == {
        "rows": 9,
        "created": 6,  # ann, bob, cat, bounced, dan, eve: not the erased one
        "updated": 0,
        "consents": 4,  # ann offers, ann newsletter, cat newsletter, bounced offers
        "opt_outs": 2,  # dan's two topics
        "no_evidence": 1,  # bob
        "erased": 1,
        "suppressed": 1,
        "duplicates": 1,  # ann's second row
        "invalid": 1,
    }
    assert _states(db, "ann@example.com")["offers"] == "opted_in"
    assert _states(db, "ann@example.com")["newsletter"] == "pending"  # no confirmed_at
    assert _states(db, "cat@example.com")["newsletter"] == "opted_in"  # confirmed_at given
    assert _states(db, "bob@example.com")["offers"] == "none"  # registered without consent
    assert _states(db, "dan@example.com")["offers"] == "opted_out"
    assert _states(db, "bounced@example.com")["offers"] == "opted_in"
    with db.session(read_only=True) as s:
        assert suppression.active(s, address_hash("bounced@example.com", HASH_KEY)) is not None
        assert find_by_address(s, "erased@example.com", HASH_KEY) is None
        eve = find_by_address(s, "eve@example.com", HASH_KEY)
        assert eve.attributes == {"plan": "silver"}
        ann = find_by_address(s, "ann@example.com", HASH_KEY)
        assert ann.attributes == {"plan": "gold"}
        offers_id = get_topic(s, "offers").id
        offers = s.scalar(
            select(ConsentEvent).where(
                ConsentEvent.subscriber_id == ann.id, ConsentEvent.topic_id == offers_id
            )
        )
    assert offers.source == "web_form" and offers.source_detail == "footer form v2"
    assert offers.ip == "198.51.100.1" and offers.occurred_at.isoformat().startswith(
        "2025-01-02T10"
    )
    errors = {(e["line"], e["field"]) for e in result["errors"]}
    assert errors == {(4, "email"), (8, "email")}


def test_every_event_names_the_import_and_the_file_sha256(app, db, tmp_path):
    """Each consent event an import writes carries the import's id and the file's hash."""
    result = run_import(app, tmp_path, MIXED)
    digest = hashlib.sha256(MIXED.encode()).hexdigest()
    assert result["sha256"] == digest
    with db.session(read_only=True) as s:
        contexts = s.scalars(select(ConsentEvent.context)).all()
    assert contexts and all(c["import"] == result["id"] and c["sha256"] == digest for c in contexts)


def test_the_same_file_again_changes_nothing_and_records_no_event(app, db, tmp_path):
    """A second import of the same file writes no event and changes no one."""
    _prepare(db)
    run_import(app, tmp_path, MIXED)
    before = everything(db)
    again = run_import(app, tmp_path, MIXED)
    assert everything(db) == before
    counts = again["counts"]
    assert counts["created"] == counts["updated"] == counts["consents"] == counts["opt_outs"] == 0
    assert counts["rows"] == 9


def test_an_older_consent_in_a_file_does_not_undo_a_later_opt_out(app, db, tmp_path):
    """Someone who opted out after the list was exported stays out when it is imported."""
    with db.transaction() as s:
        jane = person(s, "jane@example.com", opted_in=("offers",))
        consent.opt_out(s, jane, get_topic(s, "offers"), evidence("one_click"))
    before = ledger(db)
    result = run_import(
        app,
        tmp_path,
        "email,topic,consent_at,source\njane@example.com,offers,2020-01-01T00:00:00Z,web_form\n",
    )
    assert result["counts"]["consents"] == 0
    assert ledger(db) == before
    assert _states(db, "jane@example.com")["offers"] == "opted_out"


def test_the_same_address_twice_is_one_person_with_both_events(app, db, tmp_path):
    """Two rows of one address (in different batches) make one person, both consents, one duplicate."""
    content = (
        "email,topic,consent_at,source\n"
        "Twice@Example.com,offers,2025-01-01T00:00:00Z,api\n"
        "x@example.com,,,\n"
        "twice@example.com,newsletter,2025-01-02T00:00:00Z,api\n"
    )
    result = run_import(app, tmp_path, content, batch_size=1)
    assert result["counts"]["duplicates"] == 1 and result["counts"]["created"] == 2
    assert result["counts"]["consents"] == 2
    with db.session(read_only=True) as s:
        assert s.scalar(select(Subscriber.id).where(Subscriber.email == "twice@example.com"))
    assert _states(db, "twice@example.com") | {"account": "none", "policy": "none"} == {
        "account": "none",
        "policy": "none",
        "newsletter": "pending",
        "offers": "opted_in",
    }


def test_an_existing_person_is_updated_not_duplicated(app, db, tmp_path):
    """A known address gets its attributes merged and its consent added: `updated`."""
    with db.transaction() as s:
        person(s, "known@example.com", attributes={"plan": "basic", "city": "Oslo"})
    result = run_import(
        app,
        tmp_path,
        "email,topic,consent_at,source,attr.plan\n"
        "known@example.com,offers,2025-01-01T00:00:00Z,api,pro\n",
    )
    assert result["counts"]["created"] == 0 and result["counts"]["updated"] == 1
    with db.session(read_only=True) as s:
        known = find_by_address(s, "known@example.com", HASH_KEY)
        assert known.attributes == {"plan": "pro", "city": "Oslo"}


def test_ndjson_rows_follow_the_same_rules(app, db, tmp_path):
    """NDJSON: one object a line, the same fields (attributes as an object, topics a list)."""
    content = (
        '{"email": "nd@example.com", "topics": ["offers"], "consent_at": "2025-01-01T00:00:00Z",'
        ' "source": "api", "attributes": {"plan": "gold"}}\n'
        "[1, 2]\n"
        '{"email": "nd2@example.com", "bogus": 1}\n'
    )
    result = run_import(app, tmp_path, content, fmt="ndjson")
    assert result["counts"]["created"] == 1 and result["counts"]["invalid"] == 2
    assert _states(db, "nd@example.com")["offers"] == "opted_in"


def test_a_dry_run_counts_but_writes_nothing(app, db, tmp_path):
    """dry_run: the same counts and errors, and no person, event or state written."""
    _prepare(db)
    before = everything(db)
    result = run_import(app, tmp_path, MIXED, dry_run=True)
    assert result["status"] == "done" and result["dry_run"] is True
    assert result["counts"]["created"] == 6 and result["counts"]["duplicates"] == 1
    assert result["counts"]["consents"] == 4
    assert everything(db) == before


def test_cancelling_midway_keeps_the_committed_batches_and_writes_nothing_more(app, db, tmp_path):
    """A cancel asked during an import stops it at the next batch: the batches already
    committed stay (people and events complete), nothing after them is written."""
    from mailprefs.domain import imports
    from mailprefs.domain.import_models import Import

    rows = "".join(f"p{i}@example.com,offers,2025-01-01T00:00:00Z,api\n" for i in range(10))

    def cancel_after_first_batch(row):
        with db.transaction() as s:
            imports.cancel(s, s.get(Import, row.id))

    result = run_import(
        app,
        tmp_path,
        "email,topic,consent_at,source\n" + rows,
        batch_size=4,
        on_progress=cancel_after_first_batch,
    )
    assert result["status"] == "cancelled"
    assert result["counts"]["rows"] == 4 and result["counts"]["created"] == 4
    state = everything(db)
    assert len(state["people"]) == 4 and len(state["events"]) == 4 and len(state["states"]) == 4


def test_the_documented_example_file_imports_as_described(app, db, tmp_path):
    """docs/examples/subscribers.csv: no errors; Jane confirmed on both topics, Lee
    registered without consent, the old customer opted out."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "subscribers.csv"
    result = run_import(app, tmp_path, example.read_bytes())
    assert result["errors"] == [] and result["status"] == "done"
    assert result["counts"]["created"] == 5 and result["counts"]["no_evidence"] == 1
    assert result["counts"]["opt_outs"] == 2 and result["counts"]["consents"] == 4
    assert _states(db, "jane.doe@example.com")["newsletter"] == "opted_in"
    assert _states(db, "max@example.com")["newsletter"] == "pending"
    assert _states(db, "old.customer@example.com")["offers"] == "opted_out"
