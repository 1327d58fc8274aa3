"""Times that clients send: one allowance for every one of them.

A client's clock is never exactly ours. "Now" by its clock arrives a little in the past
(the request took time) or a little ahead (its clock runs fast). Every time a client
sends (a campaign's `send_at`, a policy's `announce_at`, a consent's or an event's `at`)
is judged here, with the same CLOCK_SKEW, so the API never refuses one and accepts the
other for the same few milliseconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from mailprefs import clock
from mailprefs.domain.errors import Invalid

CLOCK_SKEW = timedelta(minutes=5)


def upcoming(value: datetime, now: datetime, field: str, detail: str) -> datetime:
    """A time that must not be in the past (when to send, when to announce). Up to
    CLOCK_SKEW before `now` it means now, and `now` is returned; earlier is Invalid."""
    value = aware(value, field)
    if value < now - CLOCK_SKEW:
        raise Invalid.field(field, detail)
    return max(value, now)


def happened(value: datetime, now: datetime, field: str, detail: str) -> datetime:
    """A time something happened (a consent given, a bounce received). Up to CLOCK_SKEW
    after `now` it means now, and `now` is returned; later is Invalid."""
    value = aware(value, field)
    if value > now + CLOCK_SKEW:
        raise Invalid.field(field, detail)
    return min(value, now)


def aware(value: datetime, field: str) -> datetime:
    """The time in UTC; a time without an offset is ambiguous, hence Invalid."""
    try:
        return clock.as_utc(value)
    except (ValueError, OverflowError):
        raise Invalid.field(field, "must be a date and time with an offset") from None
