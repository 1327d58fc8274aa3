"""The consent ledger: append-only events, and topic states as their projection.

Every change of consent is an event (who, which topic, what, when, source, IP, user
agent, policy version in force). `topic_subscriptions` and `subscribers.status` are
projections that `rebuild()` recomputes from the events alone. An event is appended
only when it changes the projection, so asking twice records once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, event, select, update
from sqlalchemy.orm import ORMExecuteState, Session

from mailprefs import clock
from mailprefs.domain import client_time
from mailprefs.domain.addresses import redact
from mailprefs.domain.errors import Conflict, Invalid
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
from mailprefs.domain.outbox_models import Campaign, CampaignStatus, PolicyVersion

# Where a consent came from. The API accepts the first four from clients.
API_SOURCES = ("api", "import", "web_form", "staff")
SOURCES = API_SOURCES + (
    "preference_page",
    "unsubscribe_page",
    "one_click",
    "confirmation",
    "complaint",
    "bounce",
    "registration",
)

ACCOUNT_ACTIONS = {ConsentAction.DEACTIVATE, ConsentAction.REACTIVATE, ConsentAction.ERASE}
ERASABLE_FIELDS = {"ip", "user_agent"}


@dataclass
class Evidence:
    """How a consent event came about. `occurred_at` defaults to now."""

    source: str
    ip: str | None = None
    source_detail: str | None = None
    user_agent: str | None = None
    actor: str | None = None
    occurred_at: datetime | None = None
    context: dict[str, Any] | None = field(default=None)


def transition(state: TopicState, action: ConsentAction, double_opt_in: bool) -> TopicState:
    """The projection's single step: the state of a topic after one event."""
    if action == ConsentAction.OPT_IN:
        if state == TopicState.OPTED_IN:
            return state
        return TopicState.PENDING if double_opt_in else TopicState.OPTED_IN
    if action == ConsentAction.CONFIRM:
        return TopicState.OPTED_IN if state == TopicState.PENDING else state
    if action == ConsentAction.OPT_OUT:
        return TopicState.OPTED_OUT
    raise ValueError(f"{action} is not a topic action")


def account_transition(
    status: SubscriberStatus, reason: str | None, event: Any
) -> tuple[SubscriberStatus, str | None]:
    """The account's status after one account-level event (a ConsentEvent or a row)."""
    if event.action == ConsentAction.DEACTIVATE:
        return SubscriberStatus.DEACTIVATED, (event.context or {}).get("reason", "by_user")
    if event.action == ConsentAction.REACTIVATE:
        return SubscriberStatus.ACTIVE, None
    if event.action == ConsentAction.ERASE:
        return SubscriberStatus.ERASED, (event.context or {}).get("reason", "by_request")
    return status, reason


def policy_version_in_force(session: Session, at: datetime) -> str | None:
    """The latest policy that had taken effect at `at`."""
    return session.scalar(in_force_query(at))


def in_force_query(at: Any) -> Select[tuple[str]]:
    """The version in force at `at` (a value or a bind parameter), as one statement."""
    return _latest_standing().where(PolicyVersion.effective_at <= at)


@functools.cache
def _latest_standing() -> Select[tuple[str]]:
    # Built once: every consent event asks, and building the join costs ten times the
    # `where` added to it.
    return (
        standing(select(PolicyVersion.version)).order_by(PolicyVersion.effective_at.desc()).limit(1)
    )


def standing(query: Select[Any]) -> Select[Any]:
    """`query` over policy versions, without those withdrawn: a version whose notice was
    cancelled never takes effect, as people were not told of it."""
    return query.outerjoin(Campaign, Campaign.id == PolicyVersion.campaign_id).where(
        Campaign.id.is_(None) | (Campaign.status != CampaignStatus.CANCELLED)
    )


def _append(
    session: Session,
    subscriber: Subscriber,
    topic: Topic | None,
    action: ConsentAction,
    evidence: Evidence,
) -> ConsentEvent:
    if evidence.source not in SOURCES:
        raise Invalid.field("source", f"source must be one of {list(SOURCES)}")
    now = clock.now()
    occurred = now
    if evidence.occurred_at is not None:
        occurred = client_time.happened(
            evidence.occurred_at, now, "at", "a consent cannot be given in the future"
        )
    row = ConsentEvent(
        subscriber_id=subscriber.id,
        topic_id=topic.id if topic else None,
        action=action,
        source=evidence.source,
        source_detail=(evidence.source_detail or None) and evidence.source_detail[:1000],
        ip=evidence.ip,
        user_agent=(evidence.user_agent or None) and evidence.user_agent[:512],
        # Found by the INSERT itself (as the one-click path does): no round trip of its own.
        policy_version=in_force_query(occurred).scalar_subquery(),
        actor=evidence.actor,
        context=evidence.context,
        occurred_at=occurred,
        recorded_at=now,
    )
    session.add(row)
    session.flush()
    return row


def state_of(session: Session, subscriber: Subscriber, topic: Topic) -> TopicState:
    row = session.get(TopicSubscription, (subscriber.id, topic.id))
    return row.state if row else TopicState.NONE


def states(session: Session, subscriber: Subscriber) -> dict[str, TopicState]:
    """Every active topic's state for this person, `none` where nothing was recorded."""
    known = {
        slug: state
        for slug, state in session.execute(
            select(Topic.slug, TopicSubscription.state)
            .join(TopicSubscription, TopicSubscription.topic_id == Topic.id)
            .where(TopicSubscription.subscriber_id == subscriber.id)
        )
    }
    return {
        t.slug: known.get(t.slug, TopicState.NONE)
        for t in session.scalars(select(Topic).where(Topic.active).order_by(Topic.id))
    }


def change(
    session: Session,
    subscriber: Subscriber,
    topic: Topic,
    action: ConsentAction,
    evidence: Evidence,
    *,
    no_state_yet: bool = False,
) -> tuple[TopicState, ConsentEvent | None]:
    """Apply one topic action; returns the new state and the event (None if no change).

    `no_state_yet`: the caller knows there is no state to read (a person registered in
    this transaction, this topic not changed since): nothing is read, and the person's
    `updated_at` stays their creation.
    """
    if subscriber.status == SubscriberStatus.ERASED:
        raise Conflict("this person's data has been erased")
    if subscriber.status == SubscriberStatus.DEACTIVATED and action != ConsentAction.OPT_OUT:
        raise Conflict("this account is deactivated; only registering again opts in again")
    if topic.kind == TopicKind.ADMINISTRATIVE:
        raise Invalid.field(
            "topic",
            f"{topic.slug!r} is administrative: it needs no consent and cannot be opted out "
            "of while the person is registered",
        )
    projection = None
    if not no_state_yet:
        projection = session.get(TopicSubscription, (subscriber.id, topic.id))
    before = projection.state if projection is not None else TopicState.NONE
    after = transition(before, action, topic.double_opt_in)
    if after == before:
        return before, None
    row = _append(session, subscriber, topic, action, evidence)
    if projection is None:
        projection = TopicSubscription(subscriber_id=subscriber.id, topic_id=topic.id)
        session.add(projection)
    projection.state = after
    projection.changed_at = row.occurred_at
    projection.event_id = row.id
    if not no_state_yet:
        subscriber.updated_at = clock.now()
    session.flush()
    return after, row


def opt_in(session: Session, subscriber: Subscriber, topic: Topic, evidence: Evidence):
    return change(session, subscriber, topic, ConsentAction.OPT_IN, evidence)


def confirm(session: Session, subscriber: Subscriber, topic: Topic, evidence: Evidence):
    return change(session, subscriber, topic, ConsentAction.CONFIRM, evidence)


def opt_out(session: Session, subscriber: Subscriber, topic: Topic, evidence: Evidence):
    return change(session, subscriber, topic, ConsentAction.OPT_OUT, evidence)


def account_event(
    session: Session, subscriber: Subscriber, action: ConsentAction, evidence: Evidence
) -> ConsentEvent:
    """Record a deactivation, reactivation or erasure and move the status to match."""
    row = _append(session, subscriber, None, action, evidence)
    subscriber.status, subscriber.status_reason = account_transition(
        subscriber.status, subscriber.status_reason, row
    )
    subscriber.updated_at = clock.now()
    session.flush()
    return row


def opt_out_of_all_marketing(
    session: Session, subscriber: Subscriber, evidence: Evidence
) -> list[str]:
    """Opt out of every marketing topic the person was in or pending for."""
    rows = session.execute(
        select(Topic, TopicSubscription.state)
        .join(TopicSubscription, TopicSubscription.topic_id == Topic.id)
        .where(
            TopicSubscription.subscriber_id == subscriber.id,
            Topic.kind == TopicKind.MARKETING,
            TopicSubscription.state.in_([TopicState.OPTED_IN, TopicState.PENDING]),
        )
    ).all()
    for topic, _state in rows:
        opt_out(session, subscriber, topic, evidence)
    return [topic.slug for topic, _ in rows]


def history(session: Session, subscriber: Subscriber) -> list[ConsentEvent]:
    return list(
        session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.subscriber_id == subscriber.id)
            .order_by(ConsentEvent.id)
        )
    )


def blank_personal_fields(session: Session, subscriber_id: int, address: str | None = None) -> None:
    """Erasure's one permitted change to the ledger: forget IP and user agent, and take
    the address out of the evidence's free text (`source_detail`, which an import or a
    form may have filled with it)."""
    session.execute(
        update(ConsentEvent)
        .where(ConsentEvent.subscriber_id == subscriber_id)
        .values(ip=None, user_agent=None)
        .execution_options(ledger_erasure=True, synchronize_session=False)
    )
    if not address:
        return
    details = session.execute(
        select(ConsentEvent.id, ConsentEvent.source_detail).where(
            ConsentEvent.subscriber_id == subscriber_id, ConsentEvent.source_detail.is_not(None)
        )
    ).all()
    for event_id, detail in details:
        redacted = redact(detail, address)
        if redacted != detail:
            session.execute(
                update(ConsentEvent)
                .where(ConsentEvent.id == event_id)
                .values(source_detail=redacted)
                .execution_options(ledger_erasure=True, synchronize_session=False)
            )


# --- the append-only guard (the database adds triggers of its own; see migrations) ---


class LedgerViolation(RuntimeError):
    pass


@event.listens_for(ConsentEvent, "before_delete")
def _refuse_delete(_mapper: Any, _connection: Any, _target: ConsentEvent) -> None:
    raise LedgerViolation("consent events are append-only: they cannot be deleted")


@event.listens_for(ConsentEvent, "before_update")
def _refuse_update(_mapper: Any, _connection: Any, target: ConsentEvent) -> None:
    from sqlalchemy import inspect

    state = inspect(target)
    for attr in state.attrs:
        history_ = attr.load_history()
        if not history_.has_changes():
            continue
        if attr.key in ERASABLE_FIELDS and history_.added == [None]:
            continue
        raise LedgerViolation(f"consent events are append-only: {attr.key} cannot change")


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk(orm_execute_state: ORMExecuteState) -> None:
    if not (orm_execute_state.is_update or orm_execute_state.is_delete):
        return
    mapper = orm_execute_state.bind_mapper
    if mapper is None or mapper.class_ is not ConsentEvent:
        return
    if orm_execute_state.is_update and orm_execute_state.execution_options.get("ledger_erasure"):
        return
    raise LedgerViolation("consent events are append-only")


# --- rebuilding the projection ---


@dataclass
class Difference:
    subscriber: str
    what: str
    stored: str
    rebuilt: str


def rebuild(session: Session, *, fix: bool, batch: int = 1000) -> list[Difference]:
    """Recompute every projection from the ledger; report (and with `fix`, repair) differences.

    Walks subscribers in keyset batches and reads plain rows, so memory stays flat
    and the caller's session keeps its objects.
    """
    double_opt_in = dict(session.execute(select(Topic.id, Topic.double_opt_in)).all())
    slugs = dict(session.execute(select(Topic.id, Topic.slug)).all())
    differences: list[Difference] = []
    last_id = 0
    while True:
        people = session.execute(
            select(Subscriber.id, Subscriber.public_id, Subscriber.status, Subscriber.status_reason)
            .where(Subscriber.id > last_id)
            .order_by(Subscriber.id)
            .limit(batch)
        ).all()
        if not people:
            return differences
        last_id = people[-1].id
        ids = [p.id for p in people]
        rebuilt: dict[tuple[int, int], tuple[TopicState, Any]] = {}
        status: dict[int, tuple[SubscriberStatus, str | None]] = {
            i: (SubscriberStatus.ACTIVE, None) for i in ids
        }
        for row in session.execute(
            select(
                ConsentEvent.id,
                ConsentEvent.subscriber_id,
                ConsentEvent.topic_id,
                ConsentEvent.action,
                ConsentEvent.context,
                ConsentEvent.occurred_at,
            )
            .where(ConsentEvent.subscriber_id.in_(ids))
            .order_by(ConsentEvent.id)
        ):
            if row.action in ACCOUNT_ACTIONS:
                status[row.subscriber_id] = account_transition(*status[row.subscriber_id], row)
                continue
            key = (row.subscriber_id, row.topic_id)
            before = rebuilt[key][0] if key in rebuilt else TopicState.NONE
            rebuilt[key] = (transition(before, row.action, double_opt_in[row.topic_id]), row)
        stored = {
            (r.subscriber_id, r.topic_id): r.state
            for r in session.execute(
                select(
                    TopicSubscription.subscriber_id,
                    TopicSubscription.topic_id,
                    TopicSubscription.state,
                ).where(TopicSubscription.subscriber_id.in_(ids))
            )
        }
        public = {p.id: p.public_id for p in people}
        for key in sorted(set(rebuilt) | set(stored)):
            want = rebuilt[key][0] if key in rebuilt else TopicState.NONE
            have = stored.get(key, TopicState.NONE)
            if want != have:
                differences.append(Difference(public[key[0]], f"topic {slugs[key[1]]}", have, want))
                if fix:
                    _repair_topic(session, key, rebuilt.get(key))
        for p in people:
            if (p.status, p.status_reason) != status[p.id]:
                differences.append(
                    Difference(p.public_id, "status", str(p.status), str(status[p.id][0]))
                )
                if fix:
                    session.execute(
                        update(Subscriber)
                        .where(Subscriber.id == p.id)
                        .values(status=status[p.id][0], status_reason=status[p.id][1])
                    )
        if fix:
            session.flush()


def _repair_topic(
    session: Session, key: tuple[int, int], want: tuple[TopicState, Any] | None
) -> None:
    projection = session.get(TopicSubscription, key)
    if want is None:
        if projection is not None:
            session.delete(projection)
        return
    if projection is None:
        projection = TopicSubscription(subscriber_id=key[0], topic_id=key[1])
        session.add(projection)
    projection.state, projection.changed_at, projection.event_id = (
        want[0],
        want[1].occurred_at,
        want[1].id,
    )
