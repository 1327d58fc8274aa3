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

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.config import parse_domain_limits
from mailprefs.delivery import expand, outbox, test_copies
from mailprefs.delivery.batch import BatchRows
from mailprefs.delivery.importing import SLICE_SECONDS, run_imports
from mailprefs.delivery.message import MessageBuilder, message_settings
from mailprefs.delivery.outbox import Claimed, RetryPolicy
from mailprefs.delivery.pacing import DomainLimits, RateLimit, is_back_pressure
from mailprefs.delivery.pool import Done, Job, SendPool
from mailprefs.delivery.sendtx import SendTransactions
from mailprefs.delivery.transport import (
    PermanentFailure,
    TemporaryFailure,
    Transport,
    transport_for,
)
from mailprefs.delivery.types import CampaignInfo, RecipientInfo
from mailprefs.delivery.webhooks import WebhookSender
from mailprefs.domain import campaigns as campaign_rules
from mailprefs.domain import reputation
from mailprefs.domain.addresses import address_hash, redact
from mailprefs.domain.outbox_models import Campaign
from mailprefs.domain.templating import TemplateInvalid
from mailprefs.extensions import get_db, get_tokens

# Consecutive relay-level failures (not one recipient's) after which a batch backs off.
RELAY_FAILURES_BEFORE_BACKOFF = 2
# Batches' worth of rows held for limited domains before a worker stops claiming more.
HELD_BATCHES = 4
# Back-pressure answers in a row (the window long down to one) after which it does too.
PUSHBACKS_BEFORE_BACKOFF = 8


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Summary:
    fired: int = 0
    sent: int = 0
    blocked: int = 0
    failed: int = 0
    retrying: int = 0
    skipped: int = 0
    webhooks: int = 0  # requests made to webhook endpoints

    def add(self, other: Summary) -> None:
        for name in ("fired", "sent", "blocked", "failed", "retrying", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def handled(self) -> int:
        return self.sent + self.blocked + self.failed + self.retrying


@dataclass
class _Outcome:
    item: Claimed
    kind: str  # sent | retry | permanent
    message_id: str = ""
    error: str = ""
    recipient_refused: bool = False
    email_hash: str | None = None
    address: str | None = None  # to redact it out of what is stored, never stored itself
    relay_failed: bool = False


@dataclass
class _CampaignContext:
    topic_id: int
    topic_kind: str
    builder: MessageBuilder


@dataclass
class Worker:
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
        self._campaigns: dict[int, _CampaignContext] = {}
        self.relay_down = False

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
            total.add(self.process(rows, final=not batch))
        if rows or self.pool.in_flight:  # stopped between two batches
            total.add(self.process(rows, final=True))
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
        """The long-running worker: expand, drain, sleep when idle; stop on request."""
        try:
            while not self.stop.is_set():
                imported = run_imports(self.app, self.worker_id, self.stop, SLICE_SECONDS)
                self.expand_all()
                done = self.drain()
                hooks = self.webhooks.run_once()
                if done.handled == 0 and not imported and hooks == 0:
                    self.pool.close()  # do not hold idle SMTP connections
                    self.stop.wait(idle_seconds)
        finally:
            self.pool.close()

    # --- one batch ---------------------------------------------------------------------

    def claim(self, limit: int | None = None) -> list[Claimed]:
        with self.db.transaction() as session:
            return outbox.claim(
                session,
                self.worker_id,
                limit=limit or self.batch_size,
                lease=self.lease,
                now=clock.now(),
            )

    def process(self, rows: BatchRows | list[Claimed], *, final: bool = True) -> Summary:
        """Send rows over the pool: all of them, and wait for their outcomes (`final`),
        or until every row is under way or held. Each turn of the loop takes the
        outcomes that are in, then, in one transaction, records them and asks the gate
        again for as many rows as there are free connections; those messages are built
        and handed over only after that commit. So a message is marked before its
        connection takes the next one, and at most the pool's size are ever sent but
        not yet marked."""
        summary = Summary()
        if not isinstance(rows, BatchRows):
            rows = BatchRows(rows)
        finished: list[_Outcome] = []
        relay_failures = 0
        ending = ""  # why the rest of the batch is given back: "stop" or "relay"
        wait: float | None = 0.0
        with SendTransactions(self.db.engine) as tx:
            while True:
                for done in self.pool.collect(wait):
                    outcome = self._outcome(done, rows)
                    if outcome is not None:
                        finished.append(outcome)
                        relay_failures = relay_failures + 1 if outcome.relay_failed else 0
                if not ending and self.stop.is_set():
                    ending = "stop"
                elif not ending and (
                    relay_failures >= RELAY_FAILURES_BEFORE_BACKOFF
                    or self.pool.window.streak >= PUSHBACKS_BEFORE_BACKOFF
                ):
                    # The relay itself is failing: wait before trying the rest, rather
                    # than spending a connection timeout on every row.
                    ending = "relay"
                    self.relay_down = True
                # Rare outcomes first, each in a transaction of its own; then one
                # transaction marks the sent ones and asks the gate again for the next.
                finished.sort(key=lambda o: o.kind == "sent")
                for outcome in finished:
                    self._record(tx, outcome, summary)
                finished.clear()
                prepared = [] if ending else self._prepare(tx, rows, summary)
                tx.commit()
                self._give_back(rows, ending)
                for item, decision, recipient, group in prepared:
                    failed = self._dispatch(item, decision, recipient, group, rows)
                    if failed is not None:
                        finished.append(failed)
                if not finished and self._batch_done(rows, ending, final):
                    break
                wait = 0.0 if finished else self._wait_time(rows, ending)
        self._judge()
        return summary

    def _judge(self) -> None:
        """Refusals by the relay are hard bounces: once a batch, let the reputation guard
        judge the campaigns that had some (it pauses one whose bounce rate is too high)."""
        if self._refused_in:
            with self.db.transaction() as session:
                reputation.check_campaigns(session, self._refused_in, self.limits)
            self._refused_in.clear()

    def _batch_done(self, rows: BatchRows, ending: str, final: bool) -> bool:
        if ending or final:
            return self.pool.in_flight == 0 and not rows
        return not rows.waiting

    def _prepare(self, tx: SendTransactions, rows: BatchRows, summary: Summary) -> list[tuple]:
        """Ask the gate again, in `tx`, for the next rows: one per free connection."""
        now = time.monotonic()
        if self.pool.window.paused_until > now or self.send_rate.wait(now) > 0:
            return []
        prepared = []
        for item, group in rows.next(self.pool.free, self.domains, now):
            context = self._context(item.campaign_id)
            checked = tx.prepare(
                item,
                context.topic_id,
                context.topic_kind,
                owner=self.worker_id,
                lease=self.lease,
                now=clock.now(),
            )
            if checked is None:
                summary.skipped += 1
                continue
            decision, recipient = checked
            if not decision.allowed:
                self._progress(1)
                summary.blocked += 1
                continue
            prepared.append((item, decision, recipient, group))
        return prepared

    def _dispatch(
        self, item: Claimed, decision: Any, recipient: Any, group: str | None, rows: BatchRows
    ) -> _Outcome | None:
        """Build the message of a row the gate has just allowed and hand it to a sender.
        A row for a domain at its limit is held instead, to be asked again."""
        now = time.monotonic()
        if group is None and self.domains is not None:
            group = self.domains.group(recipient.email.rpartition("@")[2])
            ready = None if group is None else self.domains.ready_at(group, now)
            if group is not None and (ready is None or ready > now):
                waiting = len(rows.held.get(group, ())) + 1
                backlog = (ready or now) - now + self.domains.backlog_seconds(group, waiting)
                rows.hold(item, group, backlog, self.lease.total_seconds() / 2)
                return None
        context = self._context(item.campaign_id)
        self._progress(1)
        try:
            message = context.builder.build(
                RecipientInfo(
                    recipient.public_id, recipient.email, recipient.attributes, delivery_id=item.id
                )
            )
        except (ValueError, TemplateInvalid) as exc:
            # This person's data cannot make a valid message (an address that needs
            # SMTPUTF8, a template failing on their attributes): fail the row, not the batch.
            error = redact(f"cannot build the message: {exc}", recipient.email)
            return _Outcome(item, "permanent", error=error or "")
        self._throttle()
        if group is not None:
            self.domains.take(group, time.monotonic())
        rows.sending[item.id] = (message.message_id, recipient.email)
        self.pool.submit(Job(item, decision, message, group))
        return None

    def _outcome(self, done: Done, rows: BatchRows) -> _Outcome | None:
        """What a sender's result means for its row; None when the row goes back to be
        sent again in this batch (the relay pushed back before accepting anything)."""
        if done.crash is not None:
            raise done.crash
        item = done.job.ref
        if done.job.group is not None:
            self.domains.done(done.job.group)
        message_id, email = rows.sending.pop(item.id)
        exc = done.error
        if exc is None:
            self.pool.window.accepted()
            return _Outcome(item, "sent", message_id=message_id)
        if isinstance(exc, TemporaryFailure):
            if is_back_pressure(exc.code, exc.detail) and not exc.maybe_delivered:
                self.pool.pressed(time.monotonic())
                if rows.again(item):
                    return None
            elif exc.connection:
                self.pool.window.failed()
            # Relays quote the recipient: its answer is stored without the address.
            error = redact(str(exc), email) or ""
            return _Outcome(item, "retry", error=error, relay_failed=exc.connection)
        assert isinstance(exc, PermanentFailure)
        return _Outcome(
            item,
            "permanent",
            error=str(exc),
            recipient_refused=exc.recipient,
            email_hash=address_hash(email, self.hash_key),
            address=email,
        )

    def _wait_time(self, rows: BatchRows, ending: str) -> float | None:
        """How long the loop may wait for outcomes before it has something else to do
        (None: until one comes). With nothing in flight it sleeps here instead."""
        if ending or not rows:
            return None
        now = time.monotonic()
        until = max(self.pool.window.paused_until, now + self.send_rate.wait(now))
        ready = rows.ready_at(self.domains, now) if self.pool.free else None
        if ready is None:
            if self.pool.in_flight:
                return None  # a free connection, or a held domain, needs an answer first
            ready = now + 0.01  # cannot happen: nothing in flight means room everywhere
        until = max(until, ready)
        if self.pool.in_flight == 0:
            if until > now:
                self.stop.wait(until - now)
            return 0.0
        return max(0.0, until - now)

    def _give_back(self, rows: BatchRows, ending: str) -> None:
        """Rows not to be sent in this batch, between transactions (as `_record`): on a
        stop, released for others to take now; while the relay fails, deferred; held
        too long for a domain's rate, deferred to about when its turn comes."""
        now = clock.now()
        if ending and rows:
            rest = [c.id for c in rows.take_all()]
            with self.db.engine.begin() as connection:
                if ending == "stop":
                    outbox.release(connection, rest, self.worker_id)
                else:
                    outbox.defer(connection, rest, self.worker_id, now + self.retry.delay(1))
        for seconds, items in rows.take_deferred():
            with self.db.engine.begin() as connection:
                ids = [c.id for c in items]
                outbox.defer(connection, ids, self.worker_id, now + timedelta(seconds=seconds))

    def _record(self, tx: SendTransactions, outcome: _Outcome | None, summary: Summary) -> None:
        """Record the last message's outcome: a sent one in `tx`'s next transaction, a
        rare one (retry, failure) in a transaction of its own, committed now."""
        if outcome is None:
            return
        now = clock.now()
        if outcome.kind == "sent":
            tx.mark_sent(outcome.item.id, outcome.message_id, now)
            summary.sent += 1
            return
        # Called between transactions, so the two connections never both write at once.
        assert not tx.open
        if outcome.kind == "retry":
            with self.db.engine.begin() as connection:
                retried = outbox.mark_retry(
                    connection, outcome.item, outcome.error, self.retry, now
                )
            if retried:
                summary.retrying += 1
            else:
                summary.failed += 1
            return
        with self.db.transaction() as session:
            outbox.mark_permanent_failure(
                session,
                outcome.item,
                outcome.error,
                recipient_refused=outcome.recipient_refused,
                email_hash=outcome.email_hash,
                now=now,
                address=outcome.address,
            )
        if outcome.recipient_refused:
            self._refused_in.add(outcome.item.campaign_id)
        summary.failed += 1

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
            builder=MessageBuilder(self.settings, self.tokens, CampaignInfo.of(campaign)),
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
