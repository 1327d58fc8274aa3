"""The send gate: the one place that decides whether a person may be sent a message.

`decide()` answers for one person at the moment of sending; `reason_sql()` is the same
decision as a SQL expression, for audience counts and for expanding a campaign into
the outbox over millions of rows. Both are generated from one ordered rule table, so
they cannot drift apart (and a property test holds them against each other).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Select, and_, bindparam, case, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from mailprefs.domain.models import (
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    Topic,
    TopicKind,
    TopicState,
    TopicSubscription,
)

# The stable reasons the API reports (docs/api.md, "Campaigns"), plus `suppressed_manual`
# for staff-added suppressions.
NO_CONSENT = "no_consent"
PENDING_CONFIRMATION = "pending_confirmation"
OPTED_OUT = "opted_out"
DEACTIVATED = "deactivated"
ERASED = "erased"
SUPPRESSED_BOUNCE = "suppressed_bounce"
SUPPRESSED_COMPLAINT = "suppressed_complaint"
SUPPRESSED_MANUAL = "suppressed_manual"
UNDERAGE = "underage"
UNKNOWN_RECIPIENT = "unknown_recipient"


@dataclass(frozen=True)
class Allowed:
    allowed: ClassVar[bool] = True
    reason: ClassVar[None] = None


@dataclass(frozen=True)
class Blocked:
    reason: str
    allowed: ClassVar[bool] = False


Decision = Allowed | Blocked
ALLOWED = Allowed()


@dataclass(frozen=True)
class Facts:
    """What the gate knows of one person, for one topic."""

    status: SubscriberStatus
    status_reason: str | None
    topic_state: TopicState
    suppression: SuppressionReason | None


@dataclass(frozen=True)
class Rule:
    reason: str
    # Python and SQL forms of the same predicate; both take `marketing: bool`.
    test: Callable[[Facts, bool], bool]
    clause: Callable[[Any, bool], ColumnElement[bool]]


def _status(value: SubscriberStatus, reason: str | None = None, *, negate: bool = False):
    def test(f: Facts, _m: bool) -> bool:
        hit = f.status == value and (reason is None or f.status_reason == reason)
        return not hit if negate else hit

    return test


def _suppressed(value: SuppressionReason, marketing_only: bool = False):
    def test(f: Facts, marketing: bool) -> bool:
        return f.suppression == value and (marketing or not marketing_only)

    def clause(c: Any, marketing: bool) -> ColumnElement[bool]:
        if marketing_only and not marketing:
            return literal(False)
        return c.suppression == value.value

    return test, clause


def _state(value: TopicState):
    def test(f: Facts, marketing: bool) -> bool:
        return marketing and f.topic_state == value

    def clause(c: Any, marketing: bool) -> ColumnElement[bool]:
        if not marketing:
            return literal(False)
        if value == TopicState.NONE:
            return or_(c.state.is_(None), c.state == TopicState.NONE.value)
        return c.state == value.value

    return test, clause


# First match wins. Account status before suppressions before consent: the reason
# stored is the most fundamental one. A complaint stops marketing only; the person
# still hears of their account and of policy changes.
RULES: tuple[Rule, ...] = (
    Rule(
        UNDERAGE,
        lambda f, m: f.status == SubscriberStatus.ERASED and f.status_reason == "underage",
        lambda c, m: and_(c.status == SubscriberStatus.ERASED.value, c.status_reason == "underage"),
    ),
    Rule(
        ERASED,
        lambda f, m: f.status == SubscriberStatus.ERASED,
        lambda c, m: c.status == SubscriberStatus.ERASED.value,
    ),
    Rule(
        DEACTIVATED,
        lambda f, m: f.status == SubscriberStatus.DEACTIVATED,
        lambda c, m: c.status == SubscriberStatus.DEACTIVATED.value,
    ),
    Rule(SUPPRESSED_BOUNCE, *_suppressed(SuppressionReason.BOUNCE)),
    Rule(UNDERAGE, *_suppressed(SuppressionReason.UNDERAGE)),
    Rule(ERASED, *_suppressed(SuppressionReason.ERASED)),
    Rule(SUPPRESSED_MANUAL, *_suppressed(SuppressionReason.MANUAL)),
    Rule(SUPPRESSED_COMPLAINT, *_suppressed(SuppressionReason.COMPLAINT, marketing_only=True)),
    Rule(OPTED_OUT, *_state(TopicState.OPTED_OUT)),
    Rule(PENDING_CONFIRMATION, *_state(TopicState.PENDING)),
    Rule(NO_CONSENT, *_state(TopicState.NONE)),
)

REASONS = (UNKNOWN_RECIPIENT,) + tuple(dict.fromkeys(r.reason for r in RULES))

# The one mail a closed (deactivated) account may be sent: the request to confirm that
# the person asked to join again (domain/reactivation.py). It is the only purpose the
# gate knows; for it the `deactivated` rule is lifted and a complaint blocks as it does
# marketing (whoever complained asked us to stop writing). Everything else holds: an
# erased address, a child, a bounce or a manual suppression still stop it. Only single
# messages carry a purpose, so `reason_sql` (campaign expansion) never needs it.
REACTIVATION = "reactivation"
_REACTIVATION_RULES: tuple[Rule, ...] = tuple(
    Rule(SUPPRESSED_COMPLAINT, *_suppressed(SuppressionReason.COMPLAINT))
    if rule.reason == SUPPRESSED_COMPLAINT
    else rule
    for rule in RULES
    if rule.reason != DEACTIVATED
)


def purpose_of(kind: str, meta: dict[str, Any] | None) -> str | None:
    """The purpose of a campaign for the gate: REACTIVATION for the request to reopen a
    closed account (a confirmation mail whose meta names `reactivate`), else None."""
    if str(kind) == "confirmation" and (meta or {}).get("reactivate"):
        return REACTIVATION
    return None


def decide(
    subscriber: Facts | None,
    topic: Topic | TopicKind | str,
    now: datetime,
    purpose: str | None = None,
) -> Decision:
    """Allowed, or Blocked with the stable reason. `now` is the moment of the decision;
    `purpose` is REACTIVATION for the one mail a closed account may be sent."""
    del now  # no rule depends on time today; the signature keeps the moment explicit
    if subscriber is None:
        return Blocked(UNKNOWN_RECIPIENT)
    marketing = _is_marketing(topic)
    rules = RULES
    if purpose == REACTIVATION and not marketing:
        rules = _REACTIVATION_RULES
    for rule in rules:
        if rule.test(subscriber, marketing):
            return Blocked(rule.reason)
    return ALLOWED


def _is_marketing(topic: Topic | TopicKind | str) -> bool:
    kind = topic.kind if isinstance(topic, Topic) else topic
    return TopicKind(kind) == TopicKind.MARKETING


@dataclass(frozen=True)
class Columns:
    """The SQL columns the rules read (from the joins made by `audience_joins`)."""

    status: Any
    status_reason: Any
    state: Any
    suppression: Any


def reason_sql(columns: Columns, topic: Topic | TopicKind | str) -> ColumnElement[Any]:
    """The gate as one SQL CASE: the reason a row is blocked, or NULL when allowed."""
    marketing = _is_marketing(topic)
    whens = [(rule.clause(columns, marketing), literal(rule.reason)) for rule in RULES]
    return case(*whens, else_=literal(None))


def audience_joins(topic_id: int, ids: tuple[int, int] | None = None):
    """FROM subscribers with the person's state for the topic and any active suppression.

    Returns (select_from, columns) for building INSERT ... SELECT and GROUP BY queries.
    `ids` (after, through) is for a caller that reads one range of subscribers: the
    range is repeated on the state's side of the join, which lets PostgreSQL read just
    that range of the states by their key instead of every state of the topic per batch.
    """
    state = TopicSubscription.__table__.alias("ts")
    suppression = Suppression.__table__.alias("sup")
    subscribers = Subscriber.__table__
    on_state = [state.c.subscriber_id == subscribers.c.id, state.c.topic_id == topic_id]
    if ids is not None:
        on_state += [state.c.subscriber_id > ids[0], state.c.subscriber_id <= ids[1]]
    joined = subscribers.outerjoin(state, and_(*on_state)).outerjoin(
        suppression,
        and_(
            suppression.c.email_hash == subscribers.c.email_hash,
            suppression.c.lifted_at.is_(None),
        ),
    )
    columns = Columns(
        status=subscribers.c.status,
        status_reason=subscribers.c.status_reason,
        state=state.c.state,
        suppression=suppression.c.reason,
    )
    return joined, columns


@dataclass(frozen=True)
class Recipient:
    """A person as the send loop needs them: the gate's facts and what the mail uses."""

    facts: Facts
    public_id: str
    email: str | None
    attributes: dict[str, Any]


@functools.lru_cache(maxsize=64)
def recipient_query(topic_id: int) -> Select:
    """One indexed query for a person (parameter `subscriber_id`): the facts for the gate
    and the data for the message. `load_recipient` runs it through the ORM, the send
    loop (`delivery.sendtx`) on the driver's cursor: one query, one reading of its row."""
    joined, c = audience_joins(topic_id)
    s = Subscriber.__table__.c
    return (
        select(
            c.status,
            c.status_reason,
            c.state.label("state"),
            c.suppression.label("suppression"),
            s.public_id,
            s.email,
            s.attributes,
        )
        .select_from(joined)
        .where(s.id == bindparam("subscriber_id"))
    )


def recipient_of(row: Sequence[Any] | None) -> Recipient | None:
    """The Recipient in a row of `recipient_query`, as SQLAlchemy returns it or as the
    driver does (enums as their strings; SQLite: JSON as text)."""
    if row is None:
        return None
    status, status_reason, state, suppressed, public_id, email, attributes = row
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    return Recipient(
        facts=Facts(
            status=SubscriberStatus(status),
            status_reason=status_reason,
            topic_state=TopicState(state) if state else TopicState.NONE,
            suppression=SuppressionReason(suppressed) if suppressed else None,
        ),
        public_id=public_id,
        email=email,
        attributes=attributes or {},
    )


def load_recipient(session: Session, subscriber_id: int, topic_id: int) -> Recipient | None:
    """The person's facts for the gate and the data for the message, fresh."""
    row = session.execute(recipient_query(topic_id), {"subscriber_id": subscriber_id}).first()
    return recipient_of(row)


def decide_test_copy(address: str, staff_addresses: set[str]) -> Decision:
    """Test copies of a campaign go to staff addresses only, never to the public."""
    return ALLOWED if address in staff_addresses else Blocked("not_staff")
