"""How fast a worker may send: the relay's back-pressure, per-domain limits, a global rate.

Three independent brakes, all applied by the worker's loop before a message is handed to
a connection of its pool (`mailprefs.delivery.pool`):

- `Window` (AIMD, as TCP does): how many messages may be on the wire at once. A relay
  that answers 421, or 4xx "too many connections / slow down", halves it and pauses
  sending for a moment; every accepted message grows it by 1/window, so it climbs back
  by about one connection per round of the pool.
- `DomainLimits` (`MAILPREFS_DOMAIN_LIMITS`): per destination domain (or group of
  domains of one provider), at most `concurrency` messages in flight and `rate` a second,
  so one provider's queue does not hold back everyone else's mail.
- `RateLimit` (`MAILPREFS_SEND_RATE`): a ceiling for the whole process.

Nothing here touches the database or the network; the clock is passed in, which keeps
the arithmetic testable.
"""

from __future__ import annotations

import re
from collections import Counter

from mailprefs.config import DomainLimit

# A 4xx whose text says the relay wants us to slow down, not that this address is busy.
_SLOW_DOWN = re.compile(
    r"too many|slow(?:ing)? down|rate.?limit|throttl|too (?:fast|quickly)|try again in",
    re.IGNORECASE,
)

# After a back-pressure answer: pause this long, doubled for each one in a row.
PAUSE_SECONDS = 0.05
MAX_PAUSE_SECONDS = 5.0


def is_back_pressure(code: int | None, detail: str) -> bool:
    """421 (the relay closes the channel: too busy, or going away), or a 4xx that asks
    to slow down. A plain 4xx ("mailbox busy") is the recipient's, not the relay's."""
    if code == 421:
        return True
    return code is not None and 400 <= code < 500 and bool(_SLOW_DOWN.search(detail))


class Window:
    """Additive increase, multiplicative decrease of the messages in flight at once.

    Until the relay has accepted a message, and again after a connection failed, one
    message probes alone: a relay that is down costs one connection timeout, not one
    per connection of the pool.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.value = float(size)
        self.probing = True
        self.streak = 0  # back-pressure answers in a row
        self.pushbacks = 0  # episodes of back-pressure (stats, tests)
        self.regrowths = 0  # additive increases after a decrease
        self.lowest = float(size)
        self.paused_until = 0.0

    @property
    def limit(self) -> int:
        return 1 if self.probing else max(1, int(self.value))

    def accepted(self) -> None:
        self.streak = 0
        self.probing = False
        if self.value < self.size:
            self.regrowths += 1
            self.value = min(float(self.size), self.value + 1.0 / self.value)

    def failed(self) -> None:
        """The connection failed (refused, dropped, timed out): probe before going on."""
        self.probing = True

    def pressed(self, now: float) -> float:
        """A back-pressure answer: halve and pause; returns how long the pause is. The
        answers to messages that were already on the wire when the pause began are the
        same episode (as TCP halves once per round trip): they change nothing."""
        if now < self.paused_until:
            return 0.0
        self.streak += 1
        self.pushbacks += 1
        self.value = max(1.0, self.value / 2)
        self.lowest = min(self.lowest, self.value)
        pause = min(PAUSE_SECONDS * 2 ** (self.streak - 1), MAX_PAUSE_SECONDS)
        self.paused_until = now + pause
        return pause


class DomainLimits:
    """The in-flight counts and rate allowances of the limited domains of one worker."""

    def __init__(self, limits: dict[str, DomainLimit]) -> None:
        self._limits = limits
        self._in_flight: Counter[str] = Counter()
        self._next_at: dict[str, float] = {}

    def group(self, domain: str) -> str | None:
        """The name a limited domain is counted under; None when it has no limit."""
        limit = self._limits.get(domain.lower())
        return limit.name if limit is not None else None

    def _limit(self, group: str) -> DomainLimit:
        return self._limits[group]

    def ready_at(self, group: str, now: float) -> float | None:
        """When the next message to `group` may go: `now` or later, or None while it has
        as many in flight as it may (it frees up when one of them is answered)."""
        limit = self._limit(group)
        if limit.concurrency and self._in_flight[group] >= limit.concurrency:
            return None
        return max(now, self._next_at.get(group, 0.0))

    def take(self, group: str, now: float) -> None:
        limit = self._limit(group)
        self._in_flight[group] += 1
        if limit.rate:
            self._next_at[group] = max(now, self._next_at.get(group, 0.0)) + 1.0 / limit.rate

    def done(self, group: str) -> None:
        self._in_flight[group] -= 1

    def backlog_seconds(self, group: str, waiting: int) -> float:
        """How long `waiting` more messages to `group` take at its rate (0: no rate)."""
        limit = self._limit(group)
        return waiting / limit.rate if limit.rate else 0.0


class RateLimit:
    """At most `rate` messages a second (0: no limit), evenly spaced."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next_at = 0.0

    def wait(self, now: float) -> float:
        """Seconds to wait before the next message may go (0 when it may now)."""
        if self.rate <= 0:
            return 0.0
        return max(0.0, self._next_at - now)

    def take(self, now: float) -> None:
        if self.rate > 0:
            self._next_at = max(now, self._next_at) + 1.0 / self.rate
