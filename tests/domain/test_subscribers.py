"""People: registration, deactivation, erasure with hashed suppression, children, export."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from mailprefs import clock
from mailprefs.db import ERASURE_TABLES
from mailprefs.domain import consent, subscribers, suppression
from mailprefs.domain.addresses import address_hash, normalise
from mailprefs.domain.errors import Conflict, Invalid
from mailprefs.domain.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
    TopicState,
)
from mailprefs.domain.subscribers import ConsentRequest, age_in_years, check_age
from mailprefs.domain.topics import get_topic
from tests.support.factories import HASH_KEY, evidence, person


def register(session, email, **kw):
    return subscribers.register(
        session,
        email=email,
        attributes=kw.pop("attributes", {}),
        consents=kw.pop("consents", []),
        hash_key=HASH_KEY,
        evidence=evidence(),
        **kw,
    )


def test_public_ids_are_random_not_sequential_and_not_from_the_address(session):
    a, _ = register(session, "a@example.com")
    b, _ = register(session, "b@example.com")
    assert a.public_id != b.public_id
    assert len(a.public_id) >= 22
    assert "example" not in a.public_id and not a.public_id.isdigit()
    c, _ = register(session, "c@example.com")
    # Not derived from the address: the same address in another database gets another id.
    assert a.public_id != address_hash("a@example.com", HASH_KEY)[:22]
    assert len({a.public_id, b.public_id, c.public_id}) == 3


def test_addresses_are_normalised_and_deduplicated(session):
    first, created = register(session, "  Jane.Doe@EXAMPLE.com ")
    again, created_again = register(session, "jane.doe@example.com")
    assert created and not created_again
    assert first.id == again.id
    assert first.email == "jane.doe@example.com"


@pytest.mark.parametrize(
    "bad", ["not-an-address", "a@b", "x@example.com\r\nBcc: y@z.com", "a\n@b.com", ""]
)
def test_invalid_addresses_are_refused(bad):
    with pytest.raises(Invalid):
        normalise(bad)


def test_double_opt_in_topic_starts_pending(session):
    alice, _ = register(
        session,
        "alice@example.com",
        consents=[ConsentRequest("newsletter", evidence()), ConsentRequest("offers", evidence())],
    )
    states = consent.states(session, alice)
    assert states["newsletter"] == TopicState.PENDING
    assert states["offers"] == TopicState.OPTED_IN


def test_opting_out_entirely_deactivates_and_only_reregistering_opts_in_again(session):
    alice = person(session, "alice@example.com", opted_in=("offers", "newsletter"))
    subscribers.deactivate(session, alice, evidence("preference_page"))
    assert alice.status == SubscriberStatus.DEACTIVATED
    assert consent.states(session, alice)["offers"] == TopicState.OPTED_OUT
    assert consent.states(session, alice)["newsletter"] == TopicState.OPTED_OUT
    with pytest.raises(Conflict):
        consent.opt_in(session, alice, get_topic(session, "offers"), evidence())
    with pytest.raises(Conflict):  # not by anyone else's registration (issue 13 #13)
        register(session, "alice@example.com")
    again, created = register(
        session,
        "alice@example.com",
        consents=[ConsentRequest("offers", evidence("web_form"))],
        reopen=True,
    )
    assert not created and again.id == alice.id
    assert again.status == SubscriberStatus.ACTIVE
    assert consent.states(session, again)["offers"] == TopicState.OPTED_IN
    assert consent.states(session, again)["newsletter"] == TopicState.OPTED_OUT
    actions = [e.action for e in consent.history(session, again)]
    assert ConsentAction.DEACTIVATE in actions and ConsentAction.REACTIVATE in actions


def test_erasure_keeps_only_a_hash_on_the_suppression_list(session):
    alice = person(
        session, "alice@example.com", opted_in=("offers",), attributes={"first_name": "Alice"}
    )
    hashed = alice.email_hash
    assert subscribers.erase(session, alice, hash_key=HASH_KEY, actor="test")
    session.commit()
    assert (alice.email, alice.email_hash, alice.attributes) == (None, None, {})
    assert alice.status == SubscriberStatus.ERASED
    listed = suppression.active(session, hashed)
    assert listed is not None and listed.reason == SuppressionReason.ERASED
    assert hashed == address_hash("alice@example.com", HASH_KEY)
    assert all(e.ip is None and e.user_agent is None for e in consent.history(session, alice))
    assert not subscribers.erase(session, alice, hash_key=HASH_KEY, actor="test")


def test_an_erased_address_cannot_be_registered_again_and_nothing_is_stored(session):
    alice = person(session, "alice@example.com")
    subscribers.erase(session, alice, hash_key=HASH_KEY, actor="test")
    session.commit()
    people_before = session.query(Subscriber).count()
    events_before = session.query(ConsentEvent).count()
    with pytest.raises(Conflict, match="erased"):
        register(session, "ALICE@example.com", consents=[ConsentRequest("offers", evidence())])
    session.rollback()
    assert session.query(Subscriber).count() == people_before
    assert session.query(ConsentEvent).count() == events_before


def test_erasure_supersedes_a_bounce_suppression(session):
    alice = person(session, "alice@example.com")
    suppression.add(session, alice.email_hash, SuppressionReason.BOUNCE, source="smtp")
    hashed = alice.email_hash
    subscribers.erase(session, alice, hash_key=HASH_KEY, actor="test")
    assert suppression.active(session, hashed).reason == SuppressionReason.ERASED
    assert [s.reason for s in suppression.history(session, hashed)] == [
        SuppressionReason.BOUNCE,
        SuppressionReason.ERASED,
    ]


def test_erasure_cannot_be_lifted(session):
    alice = person(session)
    hashed = alice.email_hash
    subscribers.erase(session, alice, hash_key=HASH_KEY, actor="test")
    with pytest.raises(Conflict):
        suppression.lift(session, suppression.active(session, hashed).id, actor="x", reason="oops")


def _database_bytes(db) -> bytes:
    """The raw bytes of every file that holds the tables (and SQLite's WAL)."""
    if db.is_sqlite:
        path = db.engine.url.database
        return b"".join(
            Path(path + suffix).read_bytes()
            for suffix in ("", "-wal")
            if Path(path + suffix).exists()
        )
    data_dir = Path(os.environ.get("MAILPREFS_TEST_PG_DATA_DIR", "/var/lib/postgresql/15/main"))
    if not os.access(data_dir, os.R_OK):
        pytest.skip(f"cannot read PostgreSQL's data files under {data_dir}")
    blob = b""
    with db.engine.connect() as connection:
        for table in ERASURE_TABLES:
            relations = connection.execute(
                sa.text(
                    "SELECT pg_relation_filepath(c.oid) FROM pg_class c "
                    "WHERE c.oid = CAST(:t AS regclass) OR c.oid IN "
                    "(SELECT indexrelid FROM pg_index WHERE indrelid = CAST(:t AS regclass))"
                ),
                {"t": table},
            ).scalars()
            for relative in relations:
                for segment in data_dir.glob(relative + "*"):
                    blob += segment.read_bytes()
    return blob


def _flush_to_disk(db) -> None:
    """PostgreSQL's shared buffers reach the files at a checkpoint (needs its superuser)."""
    if not db.is_sqlite:
        done = subprocess.run(
            ["su", "postgres", "-c", "psql -qAt -c CHECKPOINT"], check=False, capture_output=True
        )
        if done.returncode != 0:
            pytest.skip("cannot run CHECKPOINT as the postgres user here")


def test_erased_data_is_not_left_in_the_database_files(db):
    """Erasure leaves no readable copy in free pages, indexes or SQLite's write-ahead log
    (on PostgreSQL, once the compaction that follows erasures has run)."""
    secret_address = "zebediah.quarrington@example.org"
    with db.transaction() as s:
        alice = person(
            s,
            secret_address,
            opted_in=("offers",),
            attributes={"first_name": "Zebediah-Unique-Name"},
        )
        for _ in range(3):  # more ledger rows carrying the person's user agent
            consent.opt_out(
                s, alice, get_topic(s, "offers"), evidence(user_agent="Quarrington-Agent/1.0")
            )
            consent.opt_in(
                s, alice, get_topic(s, "offers"), evidence(user_agent="Quarrington-Agent/1.0")
            )
        public_id = alice.public_id
    _flush_to_disk(db)
    before = _database_bytes(db)
    assert secret_address.encode() in before, "guard: the address was readable before"
    with db.transaction() as s:
        alice = subscribers.find_by_public_id(s, public_id)
        subscribers.erase(s, alice, hash_key=HASH_KEY, actor="test")
    db.purge_erased()
    db.compact()
    _flush_to_disk(db)
    blob = _database_bytes(db)
    for needle in (secret_address, "Zebediah-Unique-Name", "Quarrington-Agent"):
        assert needle.encode() not in blob


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"age": 12}, "attributes.age"),
        ({"birth_date": "2020-05-01"}, "attributes.birth_date"),
        ({"date_of_birth": "2014-01-01"}, "attributes.date_of_birth"),
        ({"birth_date": "not a date"}, "attributes.birth_date"),
        ({"age": "twelve"}, "attributes.age"),
    ],
)
def test_intake_showing_an_age_under_13_is_refused_and_nothing_stored(session, attributes, field):
    clock.freeze(datetime(2026, 11, 26, tzinfo=UTC))
    with pytest.raises(Invalid) as refused:
        register(
            session,
            "kid@example.com",
            attributes=attributes,
            consents=[ConsentRequest("offers", evidence())],
        )
    assert refused.value.errors[0]["field"] == field
    session.rollback()
    assert session.scalar(select(Subscriber).where(Subscriber.email == "kid@example.com")) is None


def test_thirteen_today_is_accepted():
    today = date(2026, 11, 26)
    check_age({"birth_date": "2013-11-26"}, today)
    with pytest.raises(Invalid):
        check_age({"birth_date": "2013-11-27"}, today)
    assert age_in_years(date(2013, 11, 27), today) == 12


def test_marking_a_person_under_13_erases_them(session):
    kid = person(session, "kid@example.com", opted_in=("offers",))
    hashed = kid.email_hash
    subscribers.erase(session, kid, hash_key=HASH_KEY, actor="ops", reason="underage")
    assert kid.status == SubscriberStatus.ERASED and kid.status_reason == "underage"
    assert suppression.active(session, hashed).reason == SuppressionReason.UNDERAGE
    with pytest.raises(Conflict):
        register(session, "kid@example.com")


def test_export_holds_everything_including_consent_events(session):
    alice = person(
        session, "alice@example.com", opted_in=("offers",), attributes={"first_name": "Alice"}
    )
    data = subscribers.export(session, alice)
    assert data["email"] == "alice@example.com"
    assert data["attributes"] == {"first_name": "Alice"}
    assert data["topics"]["offers"] == "opted_in"
    assert [e["action"] for e in data["consent_events"]] == ["opt_in"]
    assert {"messages", "suppressions", "complaints", "bounces"} <= data.keys()
