"""The import's plain driver writes (sqlite3 executemany; psycopg COPY and an upsert from
a temporary table on PostgreSQL) store exactly what the ORM would: read back through the
ORM, every column is the value given; known states are updated, new ones inserted, and
a rolled-back batch leaves nothing behind."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from mailprefs.domain import import_bulk
from mailprefs.domain.import_apply import (
    EVENT_COLUMNS,
    PEOPLE_COLUMNS,
    STATE_COLUMNS,
    UPSERT_STATE,
    new_public_ids,
)
from mailprefs.domain.import_context import Context, Seen
from mailprefs.domain.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    SubscriberStatus,
    TopicState,
    TopicSubscription,
)
from mailprefs.domain.topics import get_topic
from tests.imports.support import run_import
from tests.support.factories import person

WHEN = datetime(2025, 1, 2, 10, 0, 0, 123456, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _context() -> Context:
    return Context(
        import_id=1,
        public_id="imp1",
        sha256="ab" * 32,
        actor="import:imp1",
        hash_key="k",
        topics={},
        policies=[],
        seen=Seen(None, dry_run=False),
        counts={},
    )


def _write_person(session, email: str, offers: int) -> tuple[int, int]:
    """One person, one opt-in event and its state, written the import's way."""
    ctx = _context()
    (person_id,) = import_bulk.reserve_ids(session, "subscribers", 1)
    (event_id,) = import_bulk.reserve_ids(session, "consent_events", 1)
    people = [
        (person_id, new_public_ids(1)[0], email, "h-" + email, {"plan": "gold", "n": 3})
        + ("active", NOW, NOW)
    ]
    event = (event_id, person_id, offers, "opt_in", "web_form", "footer form, v2 — “quoted”")
    event += ("198.51.100.1", "Mozilla/5.0", "2024-01", ctx.actor, ctx.event_context(7))
    event += (WHEN, NOW)
    import_bulk.insert_rows(session, "subscribers", PEOPLE_COLUMNS, people)
    import_bulk.insert_rows(session, "consent_events", EVENT_COLUMNS, [event])
    state = [(person_id, offers, "opted_in", WHEN, event_id)]
    import_bulk.insert_rows(session, "topic_subscriptions", STATE_COLUMNS, state)
    return person_id, event_id


def test_bulk_rows_read_back_through_the_orm_as_written(db):
    """Every column written by the driver path reads back through the ORM as the value
    given: aware UTC datetimes (microseconds kept), JSON documents, enums, free text."""
    with db.transaction() as s:
        offers = get_topic(s, "offers").id
        person_id, event_id = _write_person(s, "ann@example.com", offers)
    with db.session(read_only=True) as s:
        ann = s.get(Subscriber, person_id)
        event = s.get(ConsentEvent, event_id)
        state = s.get(TopicSubscription, (person_id, offers))
        assert (ann.email, ann.email_hash, ann.status) == (
            "ann@example.com",
            "h-ann@example.com",
            SubscriberStatus.ACTIVE,
        )
        assert ann.attributes == {"plan": "gold", "n": 3}
        assert ann.created_at == NOW and len(ann.public_id) == 22
        assert event.action == ConsentAction.OPT_IN and event.topic_id == offers
        assert event.source_detail == "footer form, v2 — “quoted”"
        assert (event.ip, event.user_agent, event.policy_version) == (
            "198.51.100.1",
            "Mozilla/5.0",
            "2024-01",
        )
        assert event.context == {"import": "imp1", "sha256": "ab" * 32, "line": 7}
        assert event.occurred_at == WHEN and event.recorded_at == NOW
        assert (state.state, state.changed_at, state.event_id) == (
            TopicState.OPTED_IN,
            WHEN,
            event_id,
        )


def test_known_states_are_upserted_and_new_ones_inserted(db):
    """The upsert path: a person's existing state is replaced, a missing one added; on
    PostgreSQL its temporary table is gone once the batch is written."""
    with db.transaction() as s:
        offers = get_topic(s, "offers").id
        newsletter = get_topic(s, "newsletter").id
        known = person(s, "known@example.com", opted_in=("offers",)).id
    later = datetime(2026, 1, 1, tzinfo=UTC)
    with db.transaction() as s:
        rows = [
            (known, offers, "opted_out", later, 901),
            (known, newsletter, "pending", later, 902),
        ]
        import_bulk.insert_rows(s, "topic_subscriptions", STATE_COLUMNS, rows, upsert=UPSERT_STATE)
        if not db.is_sqlite:
            assert (
                s.scalar(text("SELECT to_regclass('pg_temp.import_topic_subscriptions')")) is None
            )
    with db.session(read_only=True) as s:
        states = s.execute(
            select(TopicSubscription.topic_id, TopicSubscription.state, TopicSubscription.event_id)
            .where(TopicSubscription.subscriber_id == known)
            .order_by(TopicSubscription.topic_id)
        ).all()
    assert sorted(states) == sorted(
        [(offers, TopicState.OPTED_OUT, 901), (newsletter, TopicState.PENDING, 902)]
    )


def test_a_rolled_back_savepoint_leaves_no_row_and_no_temporary_table(db):
    """A dry run writes in a savepoint it rolls back: nothing stays, and the next batch
    of the same transaction can upsert again."""
    with db.transaction() as s:
        offers = get_topic(s, "offers").id
        known = person(s, "k2@example.com", opted_in=("offers",)).id
    with db.transaction() as s:
        savepoint = s.begin_nested()
        _write_person(s, "dry@example.com", offers)
        rows = [(known, offers, "opted_out", NOW, 5)]
        import_bulk.insert_rows(s, "topic_subscriptions", STATE_COLUMNS, rows, upsert=UPSERT_STATE)
        savepoint.rollback()
        import_bulk.insert_rows(s, "topic_subscriptions", STATE_COLUMNS, rows, upsert=UPSERT_STATE)
    with db.session(read_only=True) as s:
        assert s.scalar(select(func.count()).where(Subscriber.email == "dry@example.com")) == 0
        assert s.get(TopicSubscription, (known, offers)).state == TopicState.OPTED_OUT


def test_lookup_finds_every_key_past_one_chunk(db):
    """`lookup` answers for every key given (SQLite: several IN chunks; PostgreSQL: one
    array), and for none when given none."""
    with db.transaction() as s:
        rows = [
            (i, f"pub{i}", f"p{i}@example.com", f"hash{i}", {}, "active", NOW, NOW)
            for i in range(1, 1201)
        ]
        import_bulk.insert_rows(s, "subscribers", PEOPLE_COLUMNS, rows)
    keys = [f"hash{i}" for i in range(1, 1301)]  # 100 of them unknown
    query = select(Subscriber.id, Subscriber.email_hash)
    with db.session(read_only=True) as s:
        found = dict((h, i) for i, h in import_bulk.lookup(s, query, Subscriber.email_hash, keys))
        assert list(import_bulk.lookup(s, query, Subscriber.email_hash, [])) == []
    assert found == {f"hash{i}": i for i in range(1, 1201)}


@pytest.mark.sqlite_only
def test_the_import_connection_gets_its_sqlite_settings_back(app, db, tmp_path):
    """SQLite: the larger page cache and later checkpoints of an import's connection are
    undone before it goes back to the pool; no pooled connection keeps them."""
    run_import(app, tmp_path, "email\na@example.com\nb@example.com\n", batch_size=1)
    with ExitStack() as stack:
        pooled = [
            stack.enter_context(db.engine.connect()) for _ in range(db.engine.pool.checkedin())
        ]
        assert pooled, "the import returned its connection to the pool"
        for connection in pooled:
            raw = connection.connection.driver_connection
            assert raw.execute("PRAGMA cache_size").fetchone()[0] == -2000
            assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000


@pytest.mark.postgres_only
def test_a_lookup_key_with_a_comma_is_refused_not_split(db):
    """PostgreSQL: the keys travel as one comma-joined text, so a key holding a comma
    would be split into two; it is refused instead of looking up the wrong rows."""
    query = select(Subscriber.id)
    with db.session(read_only=True) as s, pytest.raises(ValueError, match="comma"):
        list(import_bulk.lookup(s, query, Subscriber.email_hash, ["a,b"]))


@pytest.mark.postgres_only
def test_batch_commits_without_waiting_for_the_disk_do_not_outlive_the_import(app, db, tmp_path):
    """PostgreSQL: `synchronous_commit = off` holds for a batch's transaction only; every
    pooled connection commits synchronously again once the import is done."""
    run_import(app, tmp_path, "email\na@example.com\nb@example.com\n", batch_size=1)
    with ExitStack() as stack:
        pooled = [
            stack.enter_context(db.engine.connect()) for _ in range(db.engine.pool.checkedin())
        ]
        assert pooled
        for connection in pooled:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_the_cycle_collector_runs_again_after_an_import_even_one_that_failed(
    app, db, tmp_path, monkeypatch
):
    """The collector is paused while a batch is applied and on again afterwards, after a
    good import and after one whose batches all failed."""
    import gc

    from mailprefs.domain import import_runner

    run_import(app, tmp_path, "email\na@example.com\n")
    assert gc.isenabled()

    during: list[bool] = []

    def broken(*args, **kwargs):
        during.append(gc.isenabled())
        raise RuntimeError("a batch that fails")

    monkeypatch.setattr(import_runner, "apply_batch", broken)
    result = run_import(app, tmp_path, "email\nb@example.com\n")
    assert result["status"] == "failed"
    assert during and not any(during)  # paused while each attempt applied its batch
    assert gc.isenabled()
