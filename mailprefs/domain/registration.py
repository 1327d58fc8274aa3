"""What a registration reads before it writes, and the new person's INSERT: the few
statements of `subscribers.register`, the path of every `POST /api/v1/subscribers`
(docs/performance.md, "Creating one subscriber (figures of 2026-12-01)")."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, exists, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailprefs.domain import consent, policies
from mailprefs.domain.hashed import plain_sha256
from mailprefs.domain.import_models import HashedSuppression
from mailprefs.domain.models import (
    Subscriber,
    Suppression,
    SuppressionReason,
    Topic,
    TopicState,
    new_public_id,
)
from mailprefs.domain.outbox_models import Campaign, CampaignKind

# Addresses once erased, or of a child, are never registered again by accident.
NEVER_AGAIN = {SuppressionReason.ERASED, SuppressionReason.UNDERAGE}


@dataclass
class Registration:
    subscriber: Subscriber
    created: bool
    # Every active topic's state afterwards, where known without asking (a new person).
    known_states: dict[str, TopicState] | None = None

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as `(subscriber, created)`, for callers that need no more."""
        return iter((self.subscriber, self.created))

    def states(self, session: Session) -> dict[str, TopicState]:
        """The person's topic states, as `consent.states` answers."""
        if self.known_states is not None:
            return self.known_states
        return consent.states(session, self.subscriber)


_people = Subscriber.__table__
_topics = Topic.__table__


def _statement() -> Any:
    # FROM a one-row table, so that the row comes back even with no person and no topic.
    active = (Suppression.email_hash == bindparam("hash")) & Suppression.lifted_at.is_(None)
    one_row = select(literal(1).label("one")).subquery("one")
    return (
        select(
            Topic,
            Subscriber,
            exists().where(active, Suppression.reason.in_(NEVER_AGAIN)).label("never_again"),
            exists().where(active).label("suppressed"),
            exists().where(HashedSuppression.sha256 == bindparam("sha256")).label("hashed"),
            exists()
            .where(
                Campaign.kind == CampaignKind.POLICY,
                Campaign.status.in_(policies.OPEN),
                Campaign.started_at.is_not(None),
            )
            .label("broadcast"),
        )
        .select_from(
            one_row.outerjoin(_people, _people.c.email_hash == bindparam("hash")).outerjoin(
                _topics, _topics.c.active
            )
        )
        .order_by(Topic.id)
    )


_LOOKUP = _statement()


def lookup(session: Session, address: str, hashed: str) -> list[Row[Any]]:
    """Everything a registration reads, in one round trip: a row per active topic (an ORM
    `Topic`, which the consents and the answer then use), each with the person who has
    this address (or None) and whether the address is suppressed (`suppressed`; by an
    erasure or a child's: `never_again`), whether another sender's hashed suppression
    names it (`hashed`) and whether a policy notice is going out (`broadcast`).

    The topics are read every time rather than cached per process: the few rows cost no
    statement of their own here, and cannot go stale when a topic is edited in the
    dashboard while several web processes or nodes serve the API."""
    return session.execute(_LOOKUP, {"hash": hashed, "sha256": plain_sha256(address)}).all()


def insert_person(session: Session, values: dict[str, Any]) -> Subscriber | None:
    """The new person, or None when someone registered the address a moment ago: one
    statement (INSERT .. ON CONFLICT DO NOTHING RETURNING), no savepoint, no re-read."""
    statement = _insert_statement(session.get_bind().dialect.name)
    rows = session.scalars(statement, [{"public_id": new_public_id(), **values}]).all()
    return rows[0] if rows else None


@functools.cache
def _insert_statement(dialect: str) -> Any:
    # Built once per dialect; the values go as parameters (SQLAlchemy's ORM bulk INSERT,
    # which puts the returned person in the session as if it had been flushed).
    insert = (postgresql if dialect == "postgresql" else sqlite).insert
    return (
        insert(Subscriber)
        .on_conflict_do_nothing(index_elements=[Subscriber.email_hash])
        .returning(Subscriber)
    )
