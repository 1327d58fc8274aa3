"""One clock for the whole service.

Everything that asks "what time is it" asks here, so tests can freeze time and move it
forward instead of sleeping (Mailman's `utilities/datetime.py` habit). Always aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_frozen: datetime | None = None


def now() -> datetime:
    """The current time, aware, in UTC."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC)


def freeze(at: datetime | None = None) -> datetime:
    """Stop the clock at `at` (default: the current time). Tests only."""
    global _frozen
    at = at or datetime.now(UTC)
    if at.tzinfo is None:
        raise ValueError("freeze() needs an aware datetime")
    _frozen = at.astimezone(UTC)
    return _frozen


def advance(delta: timedelta) -> datetime:
    """Move a frozen clock forward. Tests only."""
    global _frozen
    if _frozen is None:
        raise RuntimeError("advance() needs a frozen clock")
    _frozen = _frozen + delta
    return _frozen


def unfreeze() -> None:
    global _frozen
    _frozen = None


def as_utc(value: datetime) -> datetime:
    """Normalise an aware datetime to UTC; refuse naive ones (they are ambiguous)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: an offset is required")
    return value.astimezone(UTC)
