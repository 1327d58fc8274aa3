"""Pacing arithmetic: AIMD window, domain limits and their format, the global rate."""

from __future__ import annotations

import pytest

from mailprefs.config import ConfigError, parse_domain_limits
from mailprefs.config import load as load_config
from mailprefs.delivery.pacing import DomainLimits, RateLimit, Window, is_back_pressure


def test_the_window_probes_alone_then_halves_on_pushback_and_grows_by_one_a_round():
    """Promise: one message probes until the relay accepts one; a pushback halves the
    window once per episode and pauses; each accepted message adds 1/window."""
    window = Window(16)
    assert window.limit == 1
    window.accepted()
    assert window.limit == 16
    assert window.pressed(now=100.0) == pytest.approx(0.05)
    assert window.limit == 8
    assert window.pressed(now=100.01) == 0.0, "answers already on the wire: same episode"
    assert window.limit == 8
    assert window.pressed(now=100.06) == pytest.approx(0.1), "a second episode: longer pause"
    assert window.limit == 4 and window.streak == 2
    for _ in range(5):  # 4 + 1/4 + 1/4.25 + ... passes 5 on the fifth
        window.accepted()
    assert window.limit == 5 and window.streak == 0
    window.failed()
    assert window.limit == 1, "after a connection failure, probe again"


def test_the_window_never_goes_below_one_and_the_pause_is_capped():
    window = Window(4)
    window.accepted()
    now = 0.0
    for _ in range(20):
        now += window.pressed(now) + 0.001
    assert window.limit == 1
    assert window.paused_until - now <= 5.0


@pytest.mark.parametrize(
    "code, text, expected",
    [
        (421, "4.3.2 service shutting down", True),
        (421, "4.7.0 too many connections", True),
        (451, "4.7.1 rate limited, slow down", True),
        (450, "4.2.1 user is receiving mail too quickly", True),
        (450, "4.2.1 mailbox busy, try again later", False),
        (451, "4.3.0 temporary failure", False),
        (550, "5.7.1 too many recipients", False),
        (None, "connection refused", False),
    ],
)
def test_back_pressure_is_421_or_a_4xx_asking_to_slow_down(code, text, expected):
    assert is_back_pressure(code, text) is expected


def test_domain_limits_parse_entries_groups_and_units():
    limits = parse_domain_limits(
        "gmail.com,googlemail.com concurrency=8 rate=20/s; outlook.com rate=300/m ;"
        " Yahoo.com. concurrency=2"
    )
    assert limits["gmail.com"] is limits["googlemail.com"]
    assert (limits["gmail.com"].concurrency, limits["gmail.com"].rate) == (8, 20.0)
    assert limits["outlook.com"].rate == 5.0 and limits["outlook.com"].concurrency == 0
    assert limits["yahoo.com"].concurrency == 2
    assert parse_domain_limits("") == {} == parse_domain_limits(None)


@pytest.mark.parametrize(
    "raw",
    [
        "gmail.com",
        "gmail.com speed=3",
        "gmail.com rate=fast",
        "gmail.com rate=5/d",
        "gmail.com concurrency=0",
        "gmail.com concurrency=2/s",
        "gmail.com rate=1 rate=2",
        "not a domain rate=1",
        "gmail.com rate=1; gmail.com concurrency=2",
    ],
)
def test_a_bad_domain_limit_stops_start_up_with_a_message_naming_the_setting(raw):
    """Promise: a malformed MAILPREFS_DOMAIN_LIMITS is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="MAILPREFS_DOMAIN_LIMITS"):
        load_config({"MAILPREFS_DOMAIN_LIMITS": raw})


@pytest.mark.parametrize("raw", ["0", "257", "many"])
def test_a_bad_pool_size_stops_start_up(raw):
    with pytest.raises(ConfigError, match="MAILPREFS_SMTP_CONNECTIONS"):
        load_config({"MAILPREFS_SMTP_CONNECTIONS": raw})


def test_a_domain_limit_counts_in_flight_and_spaces_by_rate():
    limits = DomainLimits(parse_domain_limits("gmail.com,googlemail.com concurrency=2 rate=10"))
    group = limits.group("GoogleMail.com")
    assert group == "gmail.com" and limits.group("example.com") is None
    assert limits.ready_at(group, 5.0) == 5.0
    limits.take(group, 5.0)
    assert limits.ready_at(group, 5.0) == pytest.approx(5.1)
    limits.take(group, 5.1)
    assert limits.ready_at(group, 6.0) is None, "two in flight: wait for an answer"
    limits.done(group)
    assert limits.ready_at(group, 6.0) == 6.0
    assert limits.backlog_seconds(group, 30) == pytest.approx(3.0)


def test_the_global_rate_spaces_messages_evenly():
    rate = RateLimit(4)
    assert rate.wait(10.0) == 0
    rate.take(10.0)
    assert rate.wait(10.0) == pytest.approx(0.25)
    assert RateLimit(0).wait(0.0) == 0
