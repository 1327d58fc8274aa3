"""Applying one batch of subscriber rows: a few bulk statements per batch, never the ORM
per row (a million rows is the normal case).

The rules are those of `consent.change`, applied to plain rows: an event is written only
when it changes the projection, so importing the same file again writes nothing; and an
imported consent never overrides a change recorded after it (someone who opted out
since the list was exported stays out).
"""

from __future__ import annotations

import hashlib
import secrets
from base64 import urlsafe_b64encode
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import confirmations, import_bulk, policies, webhooks
from mailprefs.domain.addresses import address_hash
from mailprefs.domain.consent import transition
from mailprefs.domain.errors import Invalid
from mailprefs.domain.hashed import EXTERNAL_REASONS
from mailprefs.domain.import_context import Context, TopicInfo, check_topics
from mailprefs.domain.import_models import HashedSuppression
from mailprefs.domain.import_read import Record, Row, subscriber_row
from mailprefs.domain.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    Suppression,
    SuppressionReason,
    Topic,
    TopicState,
    TopicSubscription,
)

NEVER_AGAIN = {SuppressionReason.ERASED.value, SuppressionReason.UNDERAGE.value}

_people = Subscriber.__table__
_events = ConsentEvent.__table__
_states = TopicSubscription.__table__
_suppressions = Suppression.__table__


def _upsert(session: Session):
    return (postgresql if import_bulk.is_postgres(session) else sqlite).insert


def known_blocks(session: Session, ctx: Context, rows: list[tuple[Row, str]]) -> dict[str, str]:
    """Active suppressions of these addresses (turning hashed ones into keyed ones)."""
    active = select(Suppression.email_hash, Suppression.reason).where(
        Suppression.lifted_at.is_(None)
    )
    blocked: dict[str, str] = dict(
        import_bulk.lookup(session, active, Suppression.email_hash, {h for _, h in rows})
    )
    if ctx.hashed_suppressions:
        plain = {hashlib.sha256(r.email.encode()).hexdigest(): h for r, h in rows}
        query = select(HashedSuppression.sha256, HashedSuppression.reason)
        for sha, reason in import_bulk.lookup(session, query, HashedSuppression.sha256, plain):
            keyed = plain[sha]
            if keyed not in blocked:
                blocked[keyed] = suppress(session, keyed, reason, ctx)
    return {h: str(getattr(r, "value", r)) for h, r in blocked.items()}


def suppress(session: Session, keyed_hash: str, reason: str, ctx: Context) -> str:
    """Add a keyed suppression from an import (kept if one is already active)."""
    ours = EXTERNAL_REASONS[reason]
    session.execute(
        _upsert(session)(_suppressions)
        .values(
            email_hash=keyed_hash,
            reason=ours.value,
            source="import",
            evidence={"import": ctx.public_id, "sha256": ctx.sha256, "reason": reason},
            created_at=clock.now(),
            created_by=ctx.actor,
        )
        .on_conflict_do_nothing(
            index_elements=["email_hash"], index_where=Suppression.lifted_at.is_(None)
        )
    )
    return ours.value


def apply_batch(session: Session, ctx: Context, records: list[Record]) -> None:
    """Apply one batch; the caller commits it with the checkpoint."""
    now = clock.now()
    rows: list[tuple[Row, str]] = []
    for record in records:
        ctx.counts["rows"] += 1
        if record.values is None:
            ctx.problem(record.line, "row", record.problem or "unreadable row")
            continue
        try:
            row = subscriber_row(record, now)
            check_topics(row, ctx.topics, "topics" if "topics" in record.values else "topic")
        except Invalid as exc:
            where = exc.errors[0]["field"] if exc.errors else "row"
            ctx.problem(record.line, where, exc.detail)
            continue
        rows.append((row, address_hash(row.email, ctx.hash_key)))
    if not rows:
        return
    existing: dict[str, list[Any]] = {}
    query = select(_people.c.id, _people.c.email_hash, _people.c.status, _people.c.attributes)
    for r in import_bulk.lookup(session, query, _people.c.email_hash, {h for _, h in rows}):
        # [id, status, attributes, attributes changed, created by this batch]
        existing[r.email_hash] = [r.id, r.status, dict(r.attributes or {}), False, False]
    blocked = known_blocks(session, ctx, rows)
    kept, new_people = _people_of(ctx, rows, existing, blocked, now)
    ids = _insert_people(session, new_people)
    for h, person_id in ids.items():
        existing[h] = [person_id, "active", new_people[h]["attributes"], False, True]
    _write_consents(session, ctx, kept, existing, now)
    if ctx.open_broadcasts:
        for person_id in ids.values():
            policies.notify_newcomer(session, session.get(Subscriber, person_id))
    for person_id in {existing[h][0] for _, h, _ in kept}:
        ctx.seen.add(person_id)


def _people_of(
    ctx: Context,
    rows: list[tuple[Row, str]],
    existing: dict[str, list[Any]],
    blocked: dict[str, str],
    now: datetime,
) -> tuple[list[tuple[Row, str, bool]], dict[str, dict[str, Any]]]:
    """Decide each row's person (existing or new) and count; returns the rows to apply,
    each with whether it changed an existing person's attributes."""
    kept: list[tuple[Row, str, bool]] = []
    new_people: dict[str, dict[str, Any]] = {}
    in_batch: set[str] = set()
    for row, h in rows:
        reason = blocked.get(h)
        if reason in NEVER_AGAIN:
            ctx.problem(
                row.line,
                "email",
                "this address belonged to a person whose data was erased; it is never "
                "registered again",
                count="erased",
            )
            continue
        person = existing.get(h)
        deactivated = person is not None and person[1] == "deactivated"
        if deactivated and row.status == "opted_in" and row.topics:
            ctx.problem(
                row.line,
                "status",
                "this person opted out entirely; only registering again themselves "
                "opts them in again",
            )
            continue
        dry_seen = ctx.seen.hashes is not None and h in ctx.seen.hashes
        if h in in_batch or dry_seen or (person is not None and ctx.seen.has(person[0])):
            ctx.counts["duplicates"] += 1
        if reason is not None:
            ctx.counts["suppressed"] += 1
        in_batch.add(h)
        if ctx.seen.hashes is not None:
            ctx.seen.hashes.add(h)
        if person is None:
            fresh = new_people.get(h)
            if fresh is None:
                new_people[h] = {
                    "email": row.email,
                    "email_hash": h,
                    "attributes": dict(row.attributes),
                    "status": "active",
                    "created_at": now,
                    "updated_at": now,
                }
                if not dry_seen:
                    ctx.counts["created"] += 1
            else:
                fresh["attributes"].update(row.attributes)
        changed = False
        if person is not None and row.attributes:
            merged = {**person[2], **row.attributes}
            if merged != person[2]:
                person[2], person[3], changed = merged, True, True
        kept.append((row, h, changed))
    return kept, new_people


PEOPLE_COLUMNS = (
    "id",
    "public_id",
    "email",
    "email_hash",
    "attributes",
    "status",
    "created_at",
    "updated_at",
)
EVENT_COLUMNS = (
    "id",
    "subscriber_id",
    "topic_id",
    "action",
    "source",
    "source_detail",
    "ip",
    "user_agent",
    "policy_version",
    "actor",
    "context",
    "occurred_at",
    "recorded_at",
)
STATE_COLUMNS = ("subscriber_id", "topic_id", "state", "changed_at", "event_id")
UPSERT_STATE = (
    "ON CONFLICT (subscriber_id, topic_id) DO UPDATE SET state = excluded.state, "
    "changed_at = excluded.changed_at, event_id = excluded.event_id"
)


def new_public_ids(n: int) -> list[str]:
    """`models.new_public_id()` n times (128 random bits each, URL-safe, no padding), from
    one read of the system's random source instead of n."""
    raw = secrets.token_bytes(16 * n)
    return [urlsafe_b64encode(raw[i : i + 16]).rstrip(b"=").decode() for i in range(0, 16 * n, 16)]


def _insert_people(session: Session, new_people: dict[str, dict[str, Any]]) -> dict[str, int]:
    ids = import_bulk.reserve_ids(session, "subscribers", len(new_people))
    public_ids = new_public_ids(len(new_people))
    stored = import_bulk.time_as_stored(session)
    rows = []
    for person_id, public_id, values in zip(ids, public_ids, new_people.values(), strict=True):
        values["id"], values["public_id"] = person_id, public_id
        # As the driver takes them (rows in PEOPLE_COLUMNS order): nothing left to convert.
        at = stored(values["created_at"])
        rows.append(
            (person_id, public_id, values["email"], values["email_hash"])
            + (import_bulk.to_json(values["attributes"]), values["status"], at, at)
        )
    # In the order of the hash index (the ids stay in the order of the file): one pass
    # over its pages rather than a jump to a random page for every row.
    rows.sort(key=lambda r: r[3])
    import_bulk.insert_rows(session, "subscribers", PEOPLE_COLUMNS, rows)
    return {values["email_hash"]: values["id"] for values in new_people.values()}


def _write_consents(
    session: Session,
    ctx: Context,
    kept: list[tuple[Row, str, bool]],
    people: dict[str, list[Any]],
    now: datetime,
) -> None:
    # People this batch created have no topic state yet: only the others are looked up.
    known = [p[0] for p in people.values() if not p[4]]
    states: dict[tuple[int, int], tuple[str, datetime | None]] = {}
    query = select(
        _states.c.subscriber_id, _states.c.topic_id, _states.c.state, _states.c.changed_at
    )
    for r in import_bulk.lookup(session, query, _states.c.subscriber_id, known):
        states[(r.subscriber_id, r.topic_id)] = (r.state, r.changed_at)
    events: list[tuple[Any, ...]] = []
    touched: set[int] = set()
    for row, h, attributes_changed in kept:
        person_id, created = people[h][0], people[h][4]
        wrote = attributes_changed
        if row.topics and row.status == "opted_in" and not row.has_evidence:
            ctx.counts["no_evidence"] += 1
        elif row.topics:
            wrote = _plan_row(ctx, row, person_id, states, events, now) or wrote
        if wrote and person_id not in touched:
            touched.add(person_id)
            # Once per person: one created or already seen earlier in this file is not "updated".
            ctx.counts["updated"] += not created and not ctx.seen.has(person_id)
    _flush_events(session, ctx, events, fresh={p[0] for p in people.values() if p[4]})
    changed = [
        {"b_id": p[0], "b_attributes": p[2], "b_now": now}
        for p in people.values()
        if not p[4] and (p[3] or p[0] in touched)
    ]
    if changed:
        session.execute(
            update(_people)
            .where(_people.c.id == bindparam("b_id"))
            .values(
                attributes=bindparam("b_attributes", type_=_people.c.attributes.type),
                updated_at=bindparam("b_now", type_=_people.c.updated_at.type),
            )
            .execution_options(synchronize_session=False),
            changed,
        )


@lru_cache(maxsize=64)
def _transition(before: str, action: ConsentAction, double_opt_in: bool) -> str:
    # `consent.transition` on the stored strings, once per (state, action, kind).
    return transition(TopicState(before), action, double_opt_in).value


def _plan_row(
    ctx: Context,
    row: Row,
    person_id: int,
    states: dict[tuple[int, int], tuple[str, datetime | None]],
    events: list[tuple[Any, ...]],
    now: datetime,
) -> bool:
    """The events of one row's consents (appended to `events`); whether any was new."""
    step = ConsentAction.OPT_OUT if row.status == "opted_out" else ConsentAction.OPT_IN
    wrote = False
    for slug in row.topics:
        topic = ctx.topics[slug]
        plan = [(step, row.consent_at or now)]
        if step == ConsentAction.OPT_IN and topic.double_opt_in and row.confirmed_at:
            plan.append((ConsentAction.CONFIRM, row.confirmed_at))
        for action, at in plan:
            key = (person_id, topic.id)
            before, changed_at = states.get(key, (TopicState.NONE.value, None))
            if changed_at is not None and changed_at > at:
                continue  # a later change was recorded: an older consent does not undo it
            after = _transition(before, action, topic.double_opt_in)
            if after == before:
                continue
            states[key] = (after, at)
            events.append(_event(ctx, row, person_id, topic, action, at, after, now))
            if action == ConsentAction.OPT_OUT:
                ctx.counts["opt_outs"] += 1
            elif action == ConsentAction.OPT_IN:
                ctx.counts["consents"] += 1
            wrote = True
    return wrote


def _event(
    ctx: Context,
    row: Row,
    person_id: int,
    topic: TopicInfo,
    action: ConsentAction,
    at: datetime,
    after: str,
    now: datetime,
) -> tuple[Any, ...]:
    """An event as a row of EVENT_COLUMNS without its id, followed by the state it makes."""
    return (
        person_id,
        topic.id,
        action.value,
        row.source or "import",
        row.source_detail,
        row.ip,
        row.user_agent,
        row.policy_version or ctx.policy_at(at),
        ctx.actor,
        ctx.event_context(row.line),
        at,
        now,
        after,
    )


def _flush_events(
    session: Session, ctx: Context, events: list[tuple[Any, ...]], fresh: set[int]
) -> None:
    """Write the events and the states they make; `fresh`: the people this batch created."""
    if not events:
        return
    ids = import_bulk.reserve_ids(session, "consent_events", len(events))
    stored = import_bulk.time_as_stored(session)
    latest: dict[tuple[int, int], list[Any]] = {}
    rows = []
    for event_id, event in zip(ids, events, strict=True):
        at = stored(event[10])
        rows.append((event_id, *event[:10], at, stored(event[11])))
        # subscriber, topic, state, changed_at (occurred_at), event id
        latest[event[0], event[1]] = [event[0], event[1], event[-1], at, event_id]
    import_bulk.insert_rows(session, "consent_events", EVENT_COLUMNS, rows)
    # A person created by this batch has no state to update: a plain insert (COPY on
    # PostgreSQL); the others' states are upserted.
    new, known = [], []
    for values in latest.values():
        (new if values[0] in fresh else known).append(values)
    import_bulk.insert_rows(session, "topic_subscriptions", STATE_COLUMNS, new)
    import_bulk.insert_rows(
        session, "topic_subscriptions", STATE_COLUMNS, known, upsert=UPSERT_STATE
    )
    _announce(session, ctx, events)
    if ctx.send_confirmations and not ctx.dry_run:
        for (person_id, topic_id), values in latest.items():
            if values[2] == TopicState.PENDING.value:
                confirmations.request(
                    session,
                    session.get(Subscriber, person_id),
                    session.get(Topic, topic_id),
                    ctx.actor,
                )


def _announce(session: Session, ctx: Context, events: list[tuple[Any, ...]]) -> None:
    """A `subscription.changed` webhook event for each consent event, in the batch's
    transaction, when an endpoint wants them: the session hook that writes them for the
    rows the ORM flushes does not see rows written in bulk (docs/reputation.md)."""
    if ctx.dry_run:
        return
    connection = session.connection()
    endpoints = webhooks.subscriptions(connection)
    if not any("subscription.changed" in kinds for _, kinds in endpoints):
        return
    query = select(_people.c.id, _people.c.public_id)
    people = {e[0] for e in events}
    public = {r.id: r.public_id for r in import_bulk.lookup(session, query, _people.c.id, people)}
    topics = {topic.id: topic for topic in ctx.topics.values()}
    for event in events:  # in the order of the file: in order per person
        person, topic, action = public[event[0]], topics[event[1]], event[2]
        state = webhooks.topic_state(action, topic.double_opt_in)
        data = webhooks.change_data(person, action, event[3], event[10], topic.slug, state)
        webhooks.emit(
            connection, "subscription.changed", data, ordering_key=person, endpoints=endpoints
        )
