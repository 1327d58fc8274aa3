"""Topics come from configuration and are mirrored into the database on migrate."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs.domain.errors import Invalid, NotFound
from mailprefs.domain.models import Topic, TopicKind


def sync_topics(session: Session, catalogue: list[dict[str, Any]]) -> list[str]:
    """Make the topics table match the catalogue; returns the slugs it changed.

    A topic that leaves the catalogue is kept (its ledger references it) but inactive.
    A topic may not change kind once mail has been sent under it: that would move
    consent between the two streams.
    """
    existing = {t.slug: t for t in session.scalars(select(Topic))}
    changed: list[str] = []
    for entry in catalogue:
        topic = existing.pop(entry["slug"], None)
        if topic is None:
            topic = Topic(slug=entry["slug"])
            session.add(topic)
        elif topic.kind != TopicKind(entry["kind"]):
            raise Invalid(
                f"topic {entry['slug']!r} is {topic.kind}; changing its kind would move "
                "consent between the marketing and administrative streams"
            )
        values = {
            "name": entry["name"],
            "kind": TopicKind(entry["kind"]),
            "double_opt_in": bool(entry.get("double_opt_in", False)),
            "description": entry.get("description", ""),
            "active": True,
        }
        if any(getattr(topic, k, None) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(topic, key, value)
            changed.append(entry["slug"])
    for topic in existing.values():
        if topic.active:
            topic.active = False
            changed.append(topic.slug)
    session.flush()
    return changed


def list_topics(session: Session) -> list[Topic]:
    return list(session.scalars(select(Topic).where(Topic.active).order_by(Topic.id)))


def get_topic(session: Session, slug: str, field: str = "topic") -> Topic:
    """The active topic with this slug, or Invalid naming the field (it is input)."""
    topic = session.scalar(select(Topic).where(Topic.slug == slug, Topic.active))
    if topic is None:
        raise Invalid.field(field, f"unknown topic {slug!r}")
    return topic


def topic_by_id(session: Session, topic_id: int) -> Topic:
    topic = session.get(Topic, topic_id)
    if topic is None:
        raise NotFound("no such topic")
    return topic
