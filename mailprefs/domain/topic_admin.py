"""Topics managed in the product (admins, from the dashboard or `POST/PATCH
/api/v1/topics`): create, rename, describe, set double opt-in and a sender, retire and
restore. Every change is audited (`topic.create`, `topic.update`, `topic.retire`,
`topic.restore`) with the fields it changed.

What stays fixed, because consent depends on it (invariant 1): a topic's slug (it is in
every link and in the ledger) and its kind (changing it would move consent between the
marketing and administrative streams). An administrative topic is never double opt-in.
The topics the service itself sends on (`account`: confirmations, `policy`: notices)
cannot be retired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit
from mailprefs.domain.errors import Conflict, Invalid, found
from mailprefs.domain.models import Topic, TopicKind

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
REQUIRED = ("account", "policy")
MAX_NAME = 200
MAX_DESCRIPTION = 2000
UNSET = object()


@dataclass
class TopicChange:
    """The fields a PATCH may change; UNSET leaves one as it is."""

    name: Any = UNSET
    description: Any = UNSET
    double_opt_in: Any = UNSET
    from_addr: Any = UNSET
    active: Any = UNSET


def find(session: Session, slug: str) -> Topic:
    """The topic with this slug, retired ones included; NotFound otherwise."""
    return found(session.scalar(select(Topic).where(Topic.slug == slug)), "no topic with this slug")


def all_topics(session: Session) -> list[Topic]:
    """Every topic, active first, then by creation."""
    return list(session.scalars(select(Topic).order_by(Topic.active.desc(), Topic.id)))


def _name(value: Any) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > MAX_NAME or re.search(r"[\x00-\x1f\x7f]", name):
        raise Invalid.field("name", f"one line of 1 to {MAX_NAME} characters")
    if "{" in name or "}" in name or "%" in name:
        # Names go into mail (footers, confirmation subjects): no template syntax.
        raise Invalid.field("name", "must not contain {, } or %")
    return name


def _description(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > MAX_DESCRIPTION or "\x00" in text:
        raise Invalid.field("description", f"at most {MAX_DESCRIPTION} characters")
    return text


def _from(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    from mailprefs.domain.mailboxes import mailbox

    try:
        mailbox(value.strip(), "from")
    except ValueError as exc:
        raise Invalid.field("from", str(exc)) from None
    return value.strip()


def _double_opt_in(kind: TopicKind, value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid.field("double_opt_in", "must be true or false")
    if value and kind == TopicKind.ADMINISTRATIVE:
        raise Invalid.field("double_opt_in", "an administrative topic needs no opt-in")
    return value


def create(
    session: Session,
    *,
    slug: str,
    name: str,
    kind: str,
    actor: str,
    double_opt_in: bool = False,
    description: str = "",
    from_addr: str | None = None,
) -> Topic:
    if not isinstance(slug, str) or not SLUG.match(slug):
        raise Invalid.field(
            "slug",
            "lower-case letters, digits, - and _ (up to 64), starting with a letter or digit",
        )
    if kind not in {k.value for k in TopicKind}:
        raise Invalid.field("kind", "marketing or administrative")
    topic_kind = TopicKind(kind)
    values = {
        "name": _name(name),
        "description": _description(description),
        "double_opt_in": _double_opt_in(topic_kind, double_opt_in),
        "from_addr": _from(from_addr),
    }
    if session.scalar(select(Topic.id).where(Topic.slug == slug)) is not None:
        raise Conflict(f"a topic {slug!r} exists (retired topics keep their slug)")
    now = clock.now()
    topic = Topic(slug=slug, kind=topic_kind, active=True, edited_at=now, edited_by=actor, **values)
    session.add(topic)
    session.flush()
    audit.record(
        session,
        actor,
        "topic.create",
        target_type="topic",
        target_id=slug,
        detail={"kind": kind, **{k: v for k, v in values.items() if v not in (None, "")}},
    )
    return topic


def update(session: Session, topic: Topic, change: TopicChange, actor: str) -> list[str]:
    """Apply a change; returns the fields that changed (nothing changed: no audit)."""
    wanted: dict[str, Any] = {}
    if change.name is not UNSET:
        wanted["name"] = _name(change.name)
    if change.description is not UNSET:
        wanted["description"] = _description(change.description)
    if change.double_opt_in is not UNSET:
        wanted["double_opt_in"] = _double_opt_in(topic.kind, change.double_opt_in)
    if change.from_addr is not UNSET:
        wanted["from_addr"] = _from(change.from_addr)
    if change.active is not UNSET:
        if not isinstance(change.active, bool):
            raise Invalid.field("active", "must be true or false")
        if not change.active and topic.slug in REQUIRED:
            raise Conflict(f"the {topic.slug!r} topic is needed by the service and stays")
        wanted["active"] = change.active
    changed = [k for k, v in wanted.items() if getattr(topic, k) != v]
    if not changed:
        return []
    before = {k: getattr(topic, k) for k in changed}
    for key in changed:
        setattr(topic, key, wanted[key])
    topic.edited_at = clock.now()
    topic.edited_by = actor
    session.flush()
    action = "topic.update"
    if changed == ["active"]:
        action = "topic.restore" if topic.active else "topic.retire"
    audit.record(
        session,
        actor,
        action,
        target_type="topic",
        target_id=topic.slug,
        detail={k: {"from": before[k], "to": wanted[k]} for k in changed},
    )
    return changed
