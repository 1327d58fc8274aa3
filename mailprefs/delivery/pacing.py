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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class DomainLimit:
    domains: tuple[str, ...]
    concurrency: int = 0  # messages in flight at once; 0: no limit
    rate: float = 0.0  # messages a second; 0: no limit

    @property
    def name(self) -> str:
        return self.domains[0]


_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$")


def parse_domain_limits(text: str | None) -> dict[str, DomainLimit]:
    """`MAILPREFS_DOMAIN_LIMITS` as {domain: its limit}. The format, one entry per
    provider, entries separated by `;`:

        gmail.com,googlemail.com concurrency=8 rate=20/s; outlook.com,hotmail.com rate=300/m

    Domains sharing an entry share one limit. `rate` is N (a second), N/s, N/m or N/h.
    ValueError with a readable message for anything else.
    """
    limits: dict[str, DomainLimit] = {}
    for entry in (text or "").split(";"):
        words = entry.split()
        if not words:
            continue
        domains = tuple(d.strip().lower().rstrip(".") for d in words[0].split(",") if d.strip())
        if not domains or not all(_DOMAIN.match(d) and "." in d for d in domains):
            raise ValueError(f"{words[0]!r} is not a list of domain names")
        values: dict[str, float] = {}
        for word in words[1:]:
            key, sep, raw = word.partition("=")
            if not sep or key not in ("concurrency", "rate") or key in values:
                raise ValueError(f"{word!r}: expected concurrency=N or rate=N[/s|/m|/h] once each")
            values[key] = _limit_value(key, raw)
        if not values:
            raise ValueError(f"{words[0]}: give concurrency=N, rate=N/s or both")
        limit = DomainLimit(
            domains, int(values.get("concurrency", 0)), float(values.get("rate", 0.0))
        )
        for domain in domains:
            if domain in limits:
                raise ValueError(f"{domain} has more than one limit")
            limits[domain] = limit
    return limits


def _limit_value(key: str, raw: str) -> float:
    number, _, per = raw.partition("/")
    try:
        value = float(number) if key == "rate" else int(number)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not a number") from None
    if key == "concurrency" and per:
        raise ValueError(f"concurrency={raw!r} takes a whole number")
    if per and per not in _PER:
        raise ValueError(f"rate={raw!r}: the unit is /s, /m or /h")
    if value <= 0:
        raise ValueError(f"{key}={raw!r} must be more than 0")
    return value / _PER[per or "s"]


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
