"""A worker's pool of SMTP connections, against the test relay: many messages in flight,
every per-message promise kept on every connection, back-pressure, domain limits."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import campaigns, consent
from mailprefs.domain.outbox_models import Campaign, Delivery, DeliveryStatus
from mailprefs.domain.subscribers import find_by_address
from mailprefs.domain.topics import get_topic
from tests.support.factories import campaign_due_now, evidence, person
from tests.support.smtp_sink import SmtpSink

WORKER = {"MAILPREFS_BATCH_SIZE": 10, "MAILPREFS_RETRY_BASE_SECONDS": 60}


@pytest.fixture
def relay():
    """Options of the test relay for this test (override with parametrize)."""
    return {"delay_ms": 40}


@pytest.fixture
def sink(relay):
    with SmtpSink(**relay) as running:
        yield running


@pytest.fixture
def pool_config():
    return {"MAILPREFS_SMTP_CONNECTIONS": 4}


@pytest.fixture
def app_config(relay_config, pool_config):
    return {**relay_config, **WORKER, **pool_config}


def audience(db, addresses) -> int:
    with db.transaction() as s:
        for address in addresses:
            person(s, address, opted_in=("offers",))
        return campaign_due_now(s).id


def people(count: int, domain: str = "example.com", local: str = "p") -> list[str]:
    return [f"{local}{i:03d}@{domain}" for i in range(count)]


def received(sink) -> Counter:
    return Counter(rcpt for _, rcpts, _ in sink.messages for rcpt in rcpts)


def statuses(db) -> Counter:
    with db.session(read_only=True) as s:
        return Counter(s.scalars(select(Delivery.status)).all())


@pytest.mark.parametrize("pool_config", [{"MAILPREFS_SMTP_CONNECTIONS": 8}])
def test_one_worker_has_as_many_messages_in_flight_as_its_pool(app, db, sink):
    """Promise: a pool of 8 keeps 8 messages on the wire at once, over 8 connections
    reused across batches; each person gets the mail once and each row is marked."""
    audience(db, people(60))
    summary = Worker(app).run_due()
    assert summary.sent == 60
    assert set(received(sink).values()) == {1} and len(received(sink)) == 60
    assert sink.peak_in_data["example.com"] == 8
    assert sink.connections == 8, "each connection served several batches of 10"
    assert statuses(db) == {DeliveryStatus.SENT: 60}


def _run_in_background(worker: Worker) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = worker.run_due()
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the worker never got there"
        time.sleep(0.005)


@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_pause_and_cancel_stop_the_next_message_on_every_connection(app, db, sink, action):
    """Promise: once a pause or a cancel is committed, at most the messages already on
    the wire (the pool's size) still go; no connection starts another."""
    campaign_id = audience(db, people(80))
    thread, result = _run_in_background(Worker(app))
    _wait_for(lambda: sink.accepted >= 12)
    with db.transaction() as s:
        getattr(campaigns, action)(s, s.get(Campaign, campaign_id), "test")
    at_commit = sink.accepted
    thread.join(60)
    assert "error" not in result
    assert sink.accepted - at_commit <= 4, "only those in flight on the 4 connections"
    assert sink.accepted < 80
    with db.session(read_only=True) as s:
        sent = s.scalar(select(Delivery.id).where(Delivery.status == DeliveryStatus.SENT).limit(1))
        leased = s.scalars(select(Delivery.id).where(Delivery.lease_owner.is_not(None))).all()
    assert sent is not None and leased == []
    assert statuses(db)[DeliveryStatus.SENT] == sink.accepted, "every message out is marked"


def test_an_unsubscribe_during_sending_stops_that_persons_mail_on_any_connection(app, db, sink):
    """Promise: a person who opts out while the pool is sending gets nothing afterwards,
    whichever connection their message would have taken."""
    audience(db, people(60))
    victim = "p059@example.com"  # last in line
    thread, result = _run_in_background(Worker(app))
    _wait_for(lambda: sink.accepted >= 8)
    with db.transaction() as s:
        subscriber = find_by_address(s, victim, "test-hash-key")
        consent.opt_out(s, subscriber, get_topic(s, "offers"), evidence("one_click"))
    thread.join(60)
    assert result["summary"].blocked == 1 and result["summary"].sent == 59
    assert victim not in received(sink)


@pytest.mark.parametrize("relay", [{"delay_ms": 10, "idle_timeout": 0.3}])
def test_a_relay_that_closes_idle_connections_is_not_an_error(app, db, sink):
    """Promise: connections the relay closed while idle are opened again for the next
    campaign, without a failed or retried message."""
    worker = Worker(app)
    audience(db, people(12, local="a"))
    first = worker.run_due()
    before = sink.connections
    # run_due closes its connections; drain keeps them, as a worker between batches.
    audience(db, people(12, local="b"))
    worker.fire_due()
    worker.expand_all()
    worker.drain()
    time.sleep(0.8)  # the relay hangs up on every idle connection
    audience(db, people(12, local="c"))
    worker.fire_due()
    worker.expand_all()
    last = worker.drain()  # the campaign goes to everyone on the topic: a, b and c
    worker.pool.close()
    assert first.sent == 12 and last.sent == 36 and last.retrying == last.failed == 0
    assert sink.connections > before
    assert len(sink.messages) == 12 + 24 + 36


@pytest.mark.parametrize(
    "relay, pool_config",
    [({"delay_ms": 30, "max_connections": 3}, {"MAILPREFS_SMTP_CONNECTIONS": 8})],
)
def test_too_many_connections_shrinks_the_pool_and_nobody_is_mailed_twice(app, db, sink):
    """Promise: a relay that answers 421 "too many connections" makes the pool shrink
    (AIMD) instead of failing messages; everyone still gets the mail once, at once."""
    audience(db, people(50))
    worker = Worker(app)
    summary = worker.run_due()
    assert sink.refused_connections >= 1
    assert worker.pool.window.pushbacks >= 1 and worker.pool.window.lowest <= 4
    assert summary.sent == 50 and summary.retrying == summary.failed == 0
    assert set(received(sink).values()) == {1} and len(received(sink)) == 50


@pytest.mark.parametrize("relay, pool_config", [({"rate": 40}, {"MAILPREFS_SMTP_CONNECTIONS": 8})])
def test_slow_down_answers_back_off_then_the_pool_grows_again(app, db, sink):
    """Promise: 451 "slow down" halves the window and pauses; accepted messages grow it
    back; no message is failed or counted as an attempt for it."""
    audience(db, people(100))
    worker = Worker(app)
    summary = worker.run_due()
    window = worker.pool.window
    assert sink.throttled >= 1 and window.pushbacks >= 1
    assert window.lowest < 8 and window.regrowths >= 1
    assert summary.sent == 100 and summary.failed == summary.retrying == 0
    assert set(received(sink).values()) == {1} and len(received(sink)) == 100


def test_a_recipient_that_keeps_pushing_back_is_retried_later_and_the_rest_go(app, db, sink):
    """Promise: a 421 "slow down" for one recipient is tried again in the batch a few
    times, then recorded as a retry; the others are sent."""
    audience(db, ["throttle421.x@example.com", *people(10)])
    summary = Worker(app).run_due()
    assert summary.sent == 10 and summary.retrying == 1
    with db.session(read_only=True) as s:
        row = s.scalar(select(Delivery).where(Delivery.status == DeliveryStatus.QUEUED))
    assert row.attempts == 1 and "slow down" in row.last_error


@pytest.mark.parametrize(
    "pool_config",
    [{"MAILPREFS_SMTP_CONNECTIONS": 8, "MAILPREFS_DOMAIN_LIMITS": "gmail.com concurrency=2"}],
)
def test_a_domain_limit_caps_its_messages_in_flight_while_others_use_the_pool(app, db, sink):
    """Promise: MAILPREFS_DOMAIN_LIMITS concurrency=2 keeps at most 2 messages to that
    domain on the wire, while other domains take the rest of the pool."""
    audience(
        db, [a for pair in zip(people(30, "gmail.com"), people(30), strict=True) for a in pair]
    )
    summary = Worker(app).run_due()
    assert summary.sent == 60
    assert sink.peak_in_data["gmail.com"] == 2
    assert sink.peak_in_data["example.com"] >= 5
    assert set(received(sink).values()) == {1} and len(received(sink)) == 60


@pytest.mark.parametrize(
    "relay, pool_config",
    [({"delay_ms": 0}, {"MAILPREFS_DOMAIN_LIMITS": "gmail.com,googlemail.com rate=20/s"})],
)
def test_a_domain_rate_spaces_that_providers_mail_only(app, db, sink):
    """Promise: rate=20/s spaces the messages to the domains of one entry (together) at
    least 50 ms apart; the other domains are not held back by them."""
    addresses = people(6, "gmail.com") + people(5, "googlemail.com") + people(30)
    audience(db, addresses)
    summary = Worker(app).run_due()
    assert summary.sent == 41
    limited = sorted(
        t for t, rcpt in sink.arrivals if rcpt.endswith(("@gmail.com", "@googlemail.com"))
    )
    assert len(limited) == 11
    assert limited[-1] - limited[0] >= 10 * 0.05 * 0.9  # the relay's clock, not ours
    others = sorted(t for t, rcpt in sink.arrivals if rcpt.endswith("@example.com"))
    assert others[-1] < limited[-1], "the others were done before the limited ones"


@pytest.mark.parametrize(
    "relay, pool_config", [({"delay_ms": 0}, {"MAILPREFS_DOMAIN_LIMITS": "gmail.com rate=1/m"})]
)
def test_rows_a_domain_rate_would_hold_past_the_lease_are_deferred_not_held(app, db, sink):
    """Promise: rows whose turn at their domain's rate is further away than half the
    lease go back to the outbox, due at about their turn, without an attempt counted."""
    audience(db, people(3, "gmail.com") + people(3))
    clock.freeze()
    summary = Worker(app).run_due()
    assert summary.sent == 4 and summary.failed == summary.retrying == 0
    with db.session(read_only=True) as s:
        later = s.scalars(select(Delivery).where(Delivery.status == DeliveryStatus.QUEUED)).all()
    assert len(later) == 2
    assert all(r.lease_owner is None and r.attempts == 0 for r in later)
    assert all((r.next_attempt_at - clock.now()).total_seconds() >= 55 for r in later)


@pytest.mark.parametrize("relay", [{"delay_ms": 5, "drop_every": 7}])
def test_connections_the_relay_drops_are_opened_again_without_losing_a_message(app, db, sink):
    """Promise: a relay that hangs up after some answers costs new connections, not
    messages: everyone gets the mail once, nothing is retried or failed."""
    audience(db, people(40))
    summary = Worker(app).run_due()
    assert summary.sent == 40 and summary.retrying == summary.failed == 0
    assert sink.connections > 4, "the pool's connections were opened again"
    assert set(received(sink).values()) == {1} and len(received(sink)) == 40
