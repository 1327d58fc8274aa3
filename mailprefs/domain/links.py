"""What the signed links in our mail act on: the person and the topic a link names, and
the opt-out behind the unsubscribe link.

The opt-out is the one request mailbox providers send in bulk (RFC 8058 one-click, right
after a campaign), so its usual case runs as few statements as the databases allow, on
the DBAPI cursor. It writes exactly what `consent.opt_out` writes (a test holds them
equal); whatever its lookup does not find goes through `consent.opt_out` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, true, update
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.db import FastStatement, UTCDateTime
from mailprefs.domain import client_time, consent, webhooks
from mailprefs.domain.consent import Evidence
from mailprefs.domain.errors import Gone, Invalid, NotFound
from mailprefs.domain.models import (
    ConsentAction,
    ConsentEvent,
    Subscriber,
    SubscriberStatus,
    Topic,
    TopicKind,
    TopicState,
    TopicSubscription,
)

ERASED_DETAIL = "this person's data was erased; only the hash of the address is kept"


def find_person(session: Session, public_id: str, *, for_update: bool = False) -> Subscriber:
    """The person a link names; NotFound if unknown, Gone if erased.

    `for_update` locks the row (PostgreSQL) until the transaction ends, so two requests
    changing one person's consent at once run one after the other; SQLite needs no lock,
    its write transactions already do.
    """
    query = select(Subscriber).where(Subscriber.public_id == public_id)
    subscriber = session.scalar(query.with_for_update() if for_update else query)
    if subscriber is None:
        raise NotFound("no subscriber with this id")
    if subscriber.status == SubscriberStatus.ERASED:
        raise Gone(ERASED_DETAIL)
    return subscriber


def marketing_topic(session: Session, slug: str, *, active_only: bool = False) -> Topic:
    """The marketing topic a link names. A retired topic can still be left, not joined."""
    query = select(Topic).where(Topic.slug == slug, Topic.kind == TopicKind.MARKETING)
    topic = session.scalar(query.where(Topic.active) if active_only else query)
    if topic is None:
        raise NotFound("this link names no topic of ours")
    return topic


@dataclass(frozen=True)
class Unsubscribed:
    changed: bool  # False when the person was already opted out (nothing recorded)
    topic_name: str
    email: str | None


def opt_out(
    session: Session | Connection, public_id: str, slug: str, evidence: Evidence
) -> Unsubscribed:
    """The unsubscribe link (one-click or the page's button): opt the person out of the
    topic the mail came from. Idempotent: an opted-out person records nothing more.

    Takes a session or, cheaper, a connection in a transaction; the caller commits.
    """
    if evidence.source not in consent.SOURCES:
        raise Invalid.field("source", f"source must be one of {list(consent.SOURCES)}")
    now = clock.now()
    occurred = now
    if evidence.occurred_at is not None:
        occurred = client_time.happened(
            evidence.occurred_at, now, "at", "a consent cannot be given in the future"
        )
    connection = session.connection() if isinstance(session, Session) else session
    values = {
        "public_id": public_id,
        "slug": slug,
        "v_action": ConsentAction.OPT_OUT,
        "v_source": evidence.source,
        "v_source_detail": evidence.source_detail,
        "v_ip": evidence.ip,
        "v_user_agent": (evidence.user_agent or None) and evidence.user_agent[:512],
        "v_actor": evidence.actor,
        "v_context": evidence.context,
        "v_occurred_at": occurred,
        "v_recorded_at": now,
        "policy_at": occurred,
        "v_state": TopicState.OPTED_OUT,
        "v_changed_at": occurred,
        "v_updated_at": now,
    }
    sql = _prepared(connection.dialect)
    # SQLAlchemy's per-execution bookkeeping is a large part of this request's cost; the
    # statements run on the driver's cursor, in the connection's transaction.
    dbapi = connection.connection
    if "all" in sql:  # PostgreSQL: one round trip
        row = sql["all"].execute(dbapi, values).fetchone()
    else:
        row = sql["lookup"].execute(dbapi, values).fetchone()
        if row is not None:
            event = None
            if row[1] != SubscriberStatus.ERASED and row[5] != TopicState.OPTED_OUT:
                values.update(person=row[0], topic=row[3])
                (event,) = sql["event"].execute(dbapi, values).fetchone()
                sql["state"].execute(dbapi, {**values, "event": event})
                sql["person"].execute(dbapi, values)
            row = (*row, event)
    if row is None:
        return _opt_out_slowly(connection, public_id, slug, evidence)
    _person, status, email, _topic, topic_name, _state, event = row
    if status == SubscriberStatus.ERASED:
        raise Gone(ERASED_DETAIL)
    # Written on the cursor: no session hook saw it. Most sites have no endpoint for it.
    if event is not None and webhooks.listened(connection, "subscription.changed"):
        data = webhooks.change_data(
            public_id, "opt_out", evidence.source, occurred, slug, "opted_out"
        )
        webhooks.emit(connection, "subscription.changed", data, ordering_key=public_id)
    return Unsubscribed(event is not None, topic_name, email)


def _opt_out_slowly(
    connection: Connection, public_id: str, slug: str, evidence: Evidence
) -> Unsubscribed:
    """Everything the lookup did not find (no state for the topic yet, an unknown person
    or topic): through the ORM and `consent.opt_out`, in the caller's transaction."""
    session = Session(bind=connection, join_transaction_mode="rollback_only")
    try:
        subscriber = find_person(session, public_id, for_update=True)
        topic = marketing_topic(session, slug)
        _state, event = consent.opt_out(session, subscriber, topic, evidence)
        session.flush()
        return Unsubscribed(event is not None, topic.name, subscriber.email)
    finally:
        session.close()


# --- the statements ---------------------------------------------------------------------

_people = Subscriber.__table__
_topics = Topic.__table__
_states = TopicSubscription.__table__
_events = ConsentEvent.__table__


def _value(column: Any) -> Any:
    """A parameter for a column's new value (`v_` + its name), typed as the column."""
    return bindparam(f"v_{column.name}", type_=column.type)


# The one indexed lookup: the person (unique public id), the topic (unique slug) and the
# person's state for it (primary key). On PostgreSQL the person's row and the state's
# row are locked until the commit: of two clicks at once the second waits and then sees
# the first's opt-out (after a wait PostgreSQL re-reads the rows it locks, and only
# those, so the state's row must be one of them); and a preference-page change, which
# locks the person (`find_person(for_update=True)`), is serialised with it too (the
# event's foreign key would take a share lock on the person anyway; this does not
# depend on it).
_LOOKUP = (
    select(
        _people.c.id,
        _people.c.status,
        _people.c.email,
        _topics.c.id.label("topic_id"),
        _topics.c.name,
        _states.c.state,
    )
    .select_from(
        _people.join(
            _topics,
            and_(_topics.c.slug == bindparam("slug"), _topics.c.kind == TopicKind.MARKETING),
        ).join(
            _states,
            and_(_states.c.subscriber_id == _people.c.id, _states.c.topic_id == _topics.c.id),
        )
    )
    .where(_people.c.public_id == bindparam("public_id"))
    .with_for_update(of=[_people, _states])
)
# The policy version in force, found by the statement that writes the event.
_POLICY = consent.in_force_query(bindparam("policy_at", type_=UTCDateTime())).scalar_subquery()
_EVENT_VALUES = {
    name: _value(_events.c[name])
    for name in ("action", "source", "source_detail", "ip", "user_agent", "actor", "context")
    + ("occurred_at", "recorded_at")
}
_STATE_VALUES = {name: _value(_states.c[name]) for name in ("state", "changed_at")}

# SQLite (in-process, no round trips): the lookup, the event, the state, the person.
_INSERT_EVENT = (
    insert(_events)
    .values(
        subscriber_id=bindparam("person", type_=_events.c.subscriber_id.type),
        topic_id=bindparam("topic", type_=_events.c.topic_id.type),
        policy_version=_POLICY,
        **_EVENT_VALUES,
    )
    .returning(_events.c.id)
)
_UPDATE_STATE = (
    update(_states)
    .where(_states.c.subscriber_id == bindparam("person"), _states.c.topic_id == bindparam("topic"))
    .values(event_id=bindparam("event"), **_STATE_VALUES)
)
# A consent change touches the person, as `consent.change` does.
_PERSON_VALUES = {"updated_at": _value(_people.c.updated_at)}
_TOUCH_PERSON = update(_people).where(_people.c.id == bindparam("person")).values(**_PERSON_VALUES)


def _all_in_one() -> Any:
    """PostgreSQL: lookup, event and state in one statement, one round trip (the network
    dominates there). The event and the new state are written only where the lookup
    found an active person not yet opted out; the answer says what it found."""
    found = _LOOKUP.cte("found")
    event = (
        insert(_events)
        .from_select(
            ["subscriber_id", "topic_id", "policy_version", *_EVENT_VALUES],
            select(found.c.id, found.c.topic_id, _POLICY, *_EVENT_VALUES.values()).where(
                found.c.status != SubscriberStatus.ERASED.value,
                found.c.state != TopicState.OPTED_OUT.value,
            ),
        )
        .returning(_events.c.id, _events.c.subscriber_id, _events.c.topic_id)
        .cte("event")
    )
    state = (
        update(_states)
        .where(
            _states.c.subscriber_id == event.c.subscriber_id,
            _states.c.topic_id == event.c.topic_id,
        )
        .values(event_id=event.c.id, **_STATE_VALUES)
        .returning(_states.c.event_id)
        .cte("state")
    )
    person = (
        update(_people)
        .where(_people.c.id == event.c.subscriber_id)
        .values(**_PERSON_VALUES)
        .returning(_people.c.id)
        .cte("person")
    )
    return select(
        found.c.id,
        found.c.status,
        found.c.email,
        found.c.topic_id,
        found.c.name,
        found.c.state,
        state.c.event_id,
    ).select_from(found.outerjoin(state, true()).outerjoin(person, true()))


_compiled: dict[tuple[str, str], dict[str, FastStatement]] = {}


def _prepared(dialect: Any) -> dict[str, FastStatement]:
    """The statements for this kind of database and driver, compiled on first use."""
    key = (dialect.name, dialect.driver)
    statements = _compiled.get(key)
    if statements is None:
        if dialect.name == "postgresql":
            statements = {"all": FastStatement(_all_in_one(), dialect)}
        else:
            statements = {
                "lookup": FastStatement(_LOOKUP, dialect),
                "event": FastStatement(_INSERT_EVENT, dialect),
                "state": FastStatement(_UPDATE_STATE, dialect),
                "person": FastStatement(_TOUCH_PERSON, dialect),
            }
        _compiled[key] = statements
    return statements
