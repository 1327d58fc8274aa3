"""The rows of one claimed batch on their way through the worker's pool.

A row is waiting (in claim order), held (the gate allowed it, but its domain is at its
limit: it is asked again when the domain has room), on the wire, or given back. Rows
the relay pushed back before accepting anything go to the front again, a few times,
without counting an attempt: a relay's "too many connections" is not the message's
fault.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator

from mailprefs.delivery.outbox import Claimed
from mailprefs.delivery.pacing import DomainLimits

# Times a row is sent again in its batch after the relay pushed back, before it is
# recorded as a normal retry (an attempt counted, its back-off applied).
AGAIN_IN_BATCH = 6


class BatchRows:
    def __init__(self, batch: list[Claimed]) -> None:
        self.waiting: deque[Claimed] = deque(batch)
        self.held: dict[str, deque[Claimed]] = {}
        self.deferred: list[tuple[float, Claimed]] = []  # (seconds from now, row)
        self.tries: Counter[int] = Counter()

    @property
    def held_count(self) -> int:
        return sum(len(rows) for rows in self.held.values())

    def add(self, batch: list[Claimed]) -> None:
        self.waiting.extend(batch)

    def __bool__(self) -> bool:
        return bool(self.waiting) or any(self.held.values())

    def next(self, free: int, domains: DomainLimits | None, now: float) -> Iterator[tuple]:
        """Up to `free` rows to ask the gate about, each with its domain's group when it
        is known to be limited: first a held row of each domain that has room again,
        then waiting rows in claim order."""
        taken = 0
        for group, rows in self.held.items():
            if taken >= free:
                return
            if rows and domains is not None:
                ready = domains.ready_at(group, now)
                if ready is not None and ready <= now:
                    taken += 1
                    yield rows.popleft(), group
        while taken < free and self.waiting:
            taken += 1
            yield self.waiting.popleft(), None

    def ready_at(self, domains: DomainLimits | None, now: float) -> float | None:
        """When a row could go next: now if one is waiting, else when the first held
        domain has room (None: only when one of its messages in flight is answered)."""
        if self.waiting:
            return now
        times = [
            domains.ready_at(group, now)
            for group, rows in self.held.items()
            if rows and domains is not None
        ]
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def hold(self, row: Claimed, group: str, backlog: float, limit: float) -> None:
        """Keep a row for its domain, unless the domain's backlog (seconds at its rate)
        is longer than `limit`: then defer it to about when its turn comes."""
        if backlog > limit:
            self.deferred.append((backlog, row))
        else:
            self.held.setdefault(group, deque()).append(row)

    def again(self, row: Claimed) -> bool:
        """Send a pushed-back row again in this batch (True), or not any more (False)."""
        self.tries[row.id] += 1
        if self.tries[row.id] > AGAIN_IN_BATCH:
            return False
        self.waiting.appendleft(row)
        return True

    def take_all(self) -> list[Claimed]:
        rest = list(self.waiting) + [row for rows in self.held.values() for row in rows]
        self.waiting.clear()
        self.held.clear()
        return rest

    def take_deferred(self) -> list[tuple[float, list[Claimed]]]:
        """The deferred rows, grouped by whole seconds (one statement per group)."""
        groups: dict[int, list[Claimed]] = {}
        for seconds, row in self.deferred:
            groups.setdefault(int(seconds) + 1, []).append(row)
        self.deferred.clear()
        return sorted((float(s), rows) for s, rows in groups.items())
