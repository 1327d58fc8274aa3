"""Finding people: filtered, keyset-paginated lists, per-topic counts, and the rows of a
filtered export. Reads only; callers audit what staff see."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from mailprefs.domain.addresses import address_hash, normalise
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import (
    Subscriber,
    SubscriberStatus,
    TopicKind,
    TopicState,
    TopicSubscription,
)
from mailprefs.domain.topics import get_topic, list_topics

MAX_LIMIT = 500
EXPORT_BATCH = 2000
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    topic: str | None = None
    state: str | None = None
    email: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def described(self) -> dict[str, Any]:
        """For the audit log: which filters, never the address itself."""
        values = {k: v for k, v in asdict(self).items() if v is not None and k != "email"}
        if self.email is not None:
            values["email"] = "(an address)"
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"s{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if raw[:1] == "s" and raw[1:].isdigit():
            return int(raw[1:])
    except ValueError:
        pass
    raise Invalid.field("cursor", "not a cursor this API gave out")


def query(session: Session, filters: Filters, hash_key: str) -> Select[Any]:
    """People matching the filters (erased people are never listed), by id."""
    q = select(Subscriber).where(Subscriber.status != SubscriberStatus.ERASED)
    if filters.status is not None:
        if filters.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.DEACTIVATED):
            raise Invalid.field("status", "must be active or deactivated")
        q = q.where(Subscriber.status == filters.status)
    if filters.email is not None:
        hashed = address_hash(normalise(filters.email), hash_key)
        q = q.where(Subscriber.email_hash == hashed)
    if filters.created_after is not None:
        q = q.where(Subscriber.created_at >= filters.created_after)
    if filters.created_before is not None:
        q = q.where(Subscriber.created_at < filters.created_before)
    if filters.state is not None and filters.topic is None:
        raise Invalid.field("state", "give a topic with a state")
    if filters.topic is not None:
        topic = get_topic(session, filters.topic)
        recorded = exists().where(
            TopicSubscription.subscriber_id == Subscriber.id,
            TopicSubscription.topic_id == topic.id,
        )
        if filters.state is None:
            q = q.where(recorded)
        elif filters.state == TopicState.NONE:
            q = q.where(~recorded.where(TopicSubscription.state != TopicState.NONE))
        elif filters.state in {s.value for s in TopicState}:
            q = q.where(recorded.where(TopicSubscription.state == filters.state))
        else:
            raise Invalid.field("state", "must be none, pending, opted_in or opted_out")
    return q.order_by(Subscriber.id)


def topic_states(session: Session, ids: list[int]) -> dict[int, dict[str, str]]:
    """Every active topic's state for these people (`none` where nothing was recorded)."""
    slugs = {topic.id: topic.slug for topic in list_topics(session)}
    states: dict[int, dict[str, str]] = {i: dict.fromkeys(slugs.values(), "none") for i in ids}
    if not ids:
        return states
    for person, topic_id, state in session.execute(
        select(
            TopicSubscription.subscriber_id, TopicSubscription.topic_id, TopicSubscription.state
        ).where(TopicSubscription.subscriber_id.in_(ids))
    ):
        if topic_id in slugs:
            states[person][slugs[topic_id]] = state.value
    return states


def page(
    session: Session, filters: Filters, *, hash_key: str, cursor: str | None, limit: int
) -> tuple[list[Subscriber], dict[int, dict[str, str]], str | None]:
    """One page: the people, their topic states, and the cursor of the next page."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid.field("limit", f"from 1 to {MAX_LIMIT}")
    after = decode_cursor(cursor)
    people = list(
        session.scalars(
            query(session, filters, hash_key).where(Subscriber.id > after).limit(limit + 1)
        )
    )
    more = len(people) > limit
    people = people[:limit]
    next_cursor = encode_cursor(people[-1].id) if more else None
    return people, topic_states(session, [p.id for p in people]), next_cursor


def counts(session: Session) -> dict[str, Any]:
    """Numbers only (what a marketing key may see): people by status, marketing topics by state."""
    by_status = dict(
        session.execute(
            select(Subscriber.status, func.count())
            .where(Subscriber.status != SubscriberStatus.ERASED)
            .group_by(Subscriber.status)
        ).all()
    )
    active = by_status.get(SubscriberStatus.ACTIVE, 0)
    topics: dict[str, dict[str, int]] = {}
    for topic in list_topics(session):
        if topic.kind != TopicKind.MARKETING:
            continue
        rows = dict(
            session.execute(
                select(TopicSubscription.state, func.count())
                .join(Subscriber, Subscriber.id == TopicSubscription.subscriber_id)
                .where(
                    TopicSubscription.topic_id == topic.id,
                    Subscriber.status == SubscriberStatus.ACTIVE,
                )
                .group_by(TopicSubscription.state)
            ).all()
        )
        recorded = {s.value: int(rows.get(s, 0)) for s in TopicState if s != TopicState.NONE}
        topics[topic.slug] = {"none": active - sum(recorded.values()), **recorded}
    return {
        "total": int(sum(by_status.values())),
        "status": {s.value: int(by_status.get(s, 0)) for s in SubscriberStatus if s != "erased"},
        "topics": topics,
    }


def neutralise(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a `'`."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_rows(
    session: Session, filters: Filters, *, hash_key: str
) -> tuple[list[str], Iterator[list[str]]]:
    """The header, and the rows: one per person, read in keyset batches (memory stays
    flat). Bad filters raise here, before any row is produced."""
    slugs = [topic.slug for topic in list_topics(session)]
    base = query(session, filters, hash_key).with_only_columns(
        Subscriber.id,
        Subscriber.public_id,
        Subscriber.email,
        Subscriber.status,
        Subscriber.created_at,
        Subscriber.updated_at,
        Subscriber.attributes,
    )
    header = ["id", "email", "status", "created_at", "updated_at", *slugs, "attributes"]
    return header, _rows(session, base, slugs)


def _rows(session: Session, base: Select[Any], slugs: list[str]) -> Iterator[list[str]]:
    last = 0
    while True:
        people = session.execute(base.where(Subscriber.id > last).limit(EXPORT_BATCH)).all()
        if not people:
            return
        last = people[-1].id
        states = topic_states(session, [p.id for p in people])
        for p in people:
            yield [
                neutralise(v)
                for v in (
                    p.public_id,
                    p.email,
                    p.status.value,
                    p.created_at.isoformat(),
                    p.updated_at.isoformat(),
                    *(states[p.id].get(s, "none") for s in slugs),
                    json.dumps(p.attributes or {}, ensure_ascii=False, sort_keys=True),
                )
            ]
