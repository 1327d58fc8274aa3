"""The send loop, shared by `run-due` (drain, then exit) and `worker` (run until told).

A worker sends over a pool of MAILPREFS_SMTP_CONNECTIONS connections (`pool`), but only
its own loop touches the database. For each claimed row: one short transaction records
the outcomes that came back and re-checks this row with the gate (the lease, the
campaign still sending, the person's consent); then the message is built and handed to
an idle connection outside any transaction. A connection's next message is only asked
about after its last one was marked, so a pause, a cancel or an unsubscribe stops the
very next message on every connection, and a `kill -9` at any moment leaves at most
the pool's size of messages sent but not marked (those on the wire), which are sent
again after the lease expires; every other row is either marked or still queued. SMTP
gives no way to do better: the server may accept a message and the connection die
before we hear it.

Per message that is one transaction of three small statements (`sendtx`), shared by
the messages whose outcomes and turns come together, kept lean enough that the
database costs a fraction of what the SMTP exchange does (docs/performance.md). Rare
outcomes (a retry, a failure) are recorded in a transaction of their own, committed
before the next rows'. How fast it goes is `pacing`: the relay's back-pressure,
per-domain limits and MAILPREFS_SEND_RATE.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from flask import Flask
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.config import parse_domain_limits
from mailprefs.delivery import expand, outbox, recovery, test_copies
from mailprefs.delivery.batch import BatchRows
from mailprefs.delivery.importing import SLICE_SECONDS, run_imports
from mailprefs.delivery.message import MessageBuilder, message_settings
from mailprefs.delivery.outbox import Claimed, RetryPolicy
from mailprefs.delivery.pacing import DomainLimits, RateLimit
from mailprefs.delivery.pool import SendPool
from mailprefs.delivery.sendloop import HELD_BATCHES, PoolSending, Summary
from mailprefs.delivery.transport import (
    Transport,
    transport_for,
)
from mailprefs.delivery.types import CampaignInfo
from mailprefs.delivery.webhooks import WebhookSender
from mailprefs.domain import campaigns as campaign_rules
from mailprefs.domain import gate, reputation
from mailprefs.domain.outbox_models import Campaign
from mailprefs.extensions import get_db, get_tokens
from mailprefs.logs import event

log = logging.getLogger("mailprefs.worker")


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class _CampaignContext:
    topic_id: int
    topic_kind: str
    builder: MessageBuilder
    purpose: str | None = None  # gate.purpose_of the campaign


@dataclass
class Worker(PoolSending):
    """One sending process (or thread). Not shared between threads."""

    app: Flask
    worker_id: str = field(default_factory=new_worker_id)
    transport: Transport | None = None
    on_progress: Callable[[int], None] | None = None
    on_total: Callable[[int], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        config = self.app.config
        self.db = get_db(self.app)
        self.tokens = get_tokens(self.app)
        if self.transport is not None:
            # A transport of the caller's (tests): one connection, on this thread.
            given = self.transport
            self.pool = SendPool(lambda: given, 1)
        elif config.get("MAILPREFS_CAPTURE_MAIL"):
            self.pool = SendPool(lambda: transport_for(config), 1)
        else:
            self.pool = SendPool(
                lambda: transport_for(config), config["MAILPREFS_SMTP_CONNECTIONS"]
            )
        limits = config.get("MAILPREFS_DOMAIN_LIMITS") or {}
        if isinstance(limits, str):  # set directly, not through the environment
            limits = parse_domain_limits(limits)
        self.domains = DomainLimits(limits) if limits else None
        self.batch_size = config["MAILPREFS_BATCH_SIZE"]
        self.lease = timedelta(seconds=config["MAILPREFS_LEASE_SECONDS"])
        self.send_rate = RateLimit(config["MAILPREFS_SEND_RATE"])
        self.hash_key = config["MAILPREFS_HASH_KEY"]
        self.expansion_batch = config["MAILPREFS_EXPANSION_BATCH_SIZE"]
        self.retry = RetryPolicy(
            base_seconds=config["MAILPREFS_RETRY_BASE_SECONDS"],
            max_seconds=config["MAILPREFS_RETRY_MAX_SECONDS"],
            max_attempts=config["MAILPREFS_MAX_ATTEMPTS"],
        )
        self.settings = message_settings(config)
        self.limits = reputation.Limits.from_config(config)
        self.webhooks = WebhookSender.from_config(self.db, config, self.worker_id)
        self._refused_in: set[int] = set()  # campaigns with a recipient refused this batch
        self._seen_in: set[int] = set()  # campaigns whose rows this batch handled
        self._judged_at: dict[int, float] = {}  # campaign id -> time.monotonic() of last check
        self._campaigns: dict[int, _CampaignContext] = {}
        self.relay_down = False
        # What a failure can leave unsettled (`recovery.settle`): the rows claimed and not
        # yet settled, the messages the relay accepted whose record is not yet committed
        # (delivery id -> Message-ID), and the row being handled when it happened.
        self._in_flight: list[Claimed] = []
        self._in_hand: dict[int, str] = {}
        self._current: Claimed | None = None
        self._blame: BaseException | None = None
        self._unsettled = False

    # --- the steps -------------------------------------------------------------------

    def fire_due(self) -> int:
        """Start every campaign whose time has come (the scheduler calls the same)."""
        with self.db.transaction() as session:
            return len(campaign_rules.fire_due(session, clock.now()))

    def expand_all(self) -> None:
        """Expand every started campaign whose lease we can take, batch by batch."""
        with self.db.session(read_only=True) as session:
            pending = expand.pending_expansions(session)
        for campaign_id in pending:
            while not self.stop.is_set():
                with self.db.transaction() as session:
                    now = clock.now()
                    seconds = int(self.lease.total_seconds())
                    covered = expand.expand_step(
                        session,
                        campaign_id,
                        owner=self.worker_id,
                        now=now,
                        batch=self.expansion_batch,
                        lease_seconds=seconds,
                    )
                    if covered == -1:
                        session.rollback()
                        break
                if covered == 0:
                    break

    def finish(self) -> int:
        with self.db.transaction() as session:
            return campaign_rules.finish_sent(session, clock.now())

    def drain(self) -> Summary:
        """Send every due row, batch by batch, until none is left or we are stopped.

        The next batch is claimed as soon as the last one's rows are all under way, so
        the pool does not wait for a batch's slowest message, nor the rest of the outbox
        for rows held back by a domain's limit."""
        total = Summary()
        self.relay_down = False
        rows = BatchRows([])
        while not self.stop.is_set() and not self.relay_down:
            # Test copies first in line: someone is waiting at their desk for them.
            test_copies.send_all(self, total)
            # Rows held for a limited domain do not stop the next claim, up to a bound.
            room = rows.held_count < self.batch_size * HELD_BATCHES
            batch = self.claim() if room else []
            if not batch and not rows and self.pool.in_flight == 0:
                break
            rows.add(batch)
            started = time.monotonic()
            done = self.process(rows, final=not batch)
            total.add(done)
            recovery.log_batch(self, len(batch), done, time.monotonic() - started)
        if rows or self.pool.in_flight:  # stopped between two batches
            total.add(self.process(rows, final=True))
        self._in_flight = []  # every row claimed here is settled: sent, marked or given back
        self.finish()
        return total

    def run_due(self) -> Summary:
        run_imports(self.app, self.worker_id, self.stop)
        summary = Summary(fired=self.fire_due())
        self.expand_all()
        if self.on_total:
            with self.db.session(read_only=True) as session:
                self.on_total(outbox.pending_count(session, clock.now()))
        try:
            summary.add(self.drain())
        finally:
            self.pool.close()
        summary.webhooks = self.webhooks.drain()
        return summary

    def run_forever(self, idle_seconds: float) -> None:
        """The long-running worker: expand, drain, sleep when idle; stop on request.

        It survives what it can. An error in one item (a bad row, a bug) fails that item
        alone, recorded on its row and logged; while the database is away it backs off
        and tries again; either way the messages the relay accepted are recorded once the
        database answers and the rest of what was claimed is given back
        (`recovery.settle`). Then it goes on.
        """
        event(log, "worker.started", worker=self.worker_id)
        # Webhooks go out from a thread of their own: a long campaign does not hold them
        # back, and a receiver that hangs does not hold back the mail.
        hooks = threading.Thread(
            target=self._webhooks_forever, args=(idle_seconds,), name="webhooks", daemon=True
        )
        hooks.start()
        trouble = 0  # failures in a row
        try:
            while not self.stop.is_set():
                try:
                    recovery.settle(self)
                    imported = run_imports(self.app, self.worker_id, self.stop, SLICE_SECONDS)
                    self.expand_all()
                    done = self.drain()
                except Exception as exc:  # noqa: BLE001 - the worker must outlive it
                    trouble = recovery.survive(self, exc, trouble)
                    continue
                if trouble:
                    event(log, "worker.recovered", worker=self.worker_id, failures=trouble)
                    trouble = 0
                if done.handled == 0 and not imported:
                    self.pool.close()  # do not hold idle SMTP connections
                    self.stop.wait(idle_seconds)
        finally:
            self.pool.close()
            self.stop.set()
            hooks.join(timeout=self.webhooks.timeout * 2 + 5)
            event(log, "worker.stopped", worker=self.worker_id)

    def _webhooks_forever(self, idle_seconds: float) -> None:
        while not self.stop.is_set():
            try:
                sent = self.webhooks.run_once()
            except Exception:  # noqa: BLE001 - the database went away: try again after a pause
                log.exception("webhooks: round failed")
                sent = 0
            if sent == 0:
                self.stop.wait(idle_seconds)

    # --- one batch ---------------------------------------------------------------------

    def claim(self, limit: int | None = None) -> list[Claimed]:
        with self.db.transaction() as session:
            batch = outbox.claim(
                session,
                self.worker_id,
                limit=limit or self.batch_size,
                lease=self.lease,
                now=clock.now(),
            )
        self._in_flight.extend(batch)
        return recovery.with_contexts(self, batch)

    def _context(self, campaign_id: int) -> _CampaignContext:
        context = self._campaigns.get(campaign_id)
        if context is None:
            with self.db.session(read_only=True) as session:
                context = self._load_context(session, campaign_id)
            self._campaigns[campaign_id] = context
        return context

    def _load_context(self, session: Session, campaign_id: int) -> _CampaignContext:
        campaign = session.get(Campaign, campaign_id)
        return _CampaignContext(
            topic_id=campaign.topic_id,
            topic_kind=campaign.topic.kind.value,
            builder=MessageBuilder(
                self.settings, self.tokens, CampaignInfo.of(campaign), sign_later=True
            ),
            purpose=gate.purpose_of(campaign.kind.value, campaign.meta),
        )

    def _throttle(self) -> None:
        """At most MAILPREFS_SEND_RATE messages a second from this worker (0: no limit)."""
        wait = self.send_rate.wait(time.monotonic())
        if wait > 0:
            time.sleep(wait)
        self.send_rate.take(time.monotonic())

    def _progress(self, n: int) -> None:
        if self.on_progress:
            self.on_progress(n)
