"""Topics: seeded from configuration on the first migrate, then managed in the product
(`mailprefs.domain.topic_admin`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs.domain.errors import Invalid, NotFound
from mailprefs.domain.models import Topic, TopicKind


def sync_topics(session: Session, catalogue: list[dict[str, Any]]) -> list[str]:
    """Seed the topics table from the catalogue; returns the slugs it added.

    The catalogue only seeds: a topic it names that the database does not have is
    created; a topic the database has is the product's (renamed, described, given a
    sender or retired in the dashboard or through the API) and the catalogue never
    changes or retires it.
    """
    existing = set(session.scalars(select(Topic.slug)))
    added: list[str] = []
    for entry in catalogue:
        if entry["slug"] in existing:
            continue
        session.add(
            Topic(
                slug=entry["slug"],
                name=entry["name"],
                kind=TopicKind(entry["kind"]),
                double_opt_in=bool(entry.get("double_opt_in", False)),
                description=entry.get("description", ""),
                active=True,
            )
        )
        added.append(entry["slug"])
    session.flush()
    return added


def list_topics(session: Session) -> list[Topic]:
    return list(session.scalars(select(Topic).where(Topic.active).order_by(Topic.id)))


def get_topic(session: Session, slug: str, field: str = "topic") -> Topic:
    """The active topic with this slug, or Invalid naming the field (it is input)."""
    if not isinstance(slug, str) or "\x00" in slug or len(slug) > 200:
        # Not a slug at all (PostgreSQL refuses NUL in text before it could say "unknown").
        raise Invalid.field(field, "not a topic slug")
    topic = session.scalar(select(Topic).where(Topic.slug == slug, Topic.active))
    if topic is None:
        raise Invalid.field(field, f"unknown topic {slug!r}")
    return topic


def topic_by_id(session: Session, topic_id: int) -> Topic:
    topic = session.get(Topic, topic_id)
    if topic is None:
        raise NotFound("no such topic")
    return topic
