"""What every batch of one import shares: the topics, the policy versions, the counts,
the rows refused so far, and who the file already touched."""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs.domain.consent import standing
from mailprefs.domain.errors import Invalid
from mailprefs.domain.import_bulk import to_json
from mailprefs.domain.import_read import Row
from mailprefs.domain.models import Topic, TopicKind
from mailprefs.domain.outbox_models import PolicyVersion


@dataclass(frozen=True)
class TopicInfo:
    id: int
    slug: str
    double_opt_in: bool


class Seen:
    """Who this file already touched: a bitmap of subscriber ids (an eighth of a byte per
    person, so memory stays flat), saved with each checkpoint. A dry run writes no ids
    that last, so it remembers address hashes instead."""

    def __init__(self, saved: bytes | None, dry_run: bool) -> None:
        self.bits = bytearray(zlib.decompress(saved)) if saved else bytearray()
        self.hashes: set[str] | None = set() if dry_run else None

    def has(self, person_id: int) -> bool:
        byte = person_id >> 3
        return byte < len(self.bits) and bool(self.bits[byte] & (1 << (person_id & 7)))

    def add(self, person_id: int) -> None:
        byte = person_id >> 3
        if byte >= len(self.bits):
            self.bits.extend(bytes(byte + 1 - len(self.bits) + 4096))
        self.bits[byte] |= 1 << (person_id & 7)

    def dump(self) -> bytes:
        return zlib.compress(bytes(self.bits), 1)


@dataclass
class Context:
    """What every batch of one import needs, loaded once."""

    import_id: int
    public_id: str
    sha256: str
    actor: str
    hash_key: str
    topics: dict[str, TopicInfo]
    policies: list[tuple[datetime, str]]
    seen: Seen
    counts: dict[str, int]
    dry_run: bool = False
    send_confirmations: bool = False
    open_broadcasts: bool = False
    hashed_suppressions: bool = False
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    _context_head: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Every event of the import has the same context but its line: JSON written once.
        head = to_json({"import": self.public_id, "sha256": self.sha256})
        self._context_head = head[:-1] + ',"line":'

    def event_context(self, line: int) -> str:
        """The JSON of an event's context: the import, the file's SHA-256, the line."""
        return f"{self._context_head}{int(line)}}}"

    def policy_at(self, at: datetime) -> str | None:
        i = bisect.bisect_right(self.policies, (at, "\uffff"))
        return self.policies[i - 1][1] if i else None

    def problem(self, line: int, field_name: str, detail: str, count: str = "invalid") -> None:
        self.counts[count] += 1
        self.problems.append((line, field_name[:64], detail[:500]))


def load_context(session: Session, **values: Any) -> Context:
    topics = {
        t.slug: TopicInfo(t.id, t.slug, t.double_opt_in)
        for t in session.scalars(
            select(Topic).where(Topic.active, Topic.kind == TopicKind.MARKETING)
        )
    }
    versions = sorted(
        session.execute(standing(select(PolicyVersion.effective_at, PolicyVersion.version))).all()
    )
    return Context(topics=topics, policies=[(v[0], v[1]) for v in versions], **values)


def check_topics(row: Row, topics: dict[str, TopicInfo], field_name: str) -> None:
    for slug in row.topics:
        if slug not in topics:
            raise Invalid.field(
                field_name, f"unknown or administrative topic {slug!r} (marketing topics only)"
            )
