"""The send loop, shared by `run-due` (drain, then exit) and `worker` (run until told).

For each claimed row: one short transaction records the previous row's outcome and
re-checks this row with the gate; then the message is built and handed to the
transport outside any transaction. So a `kill -9` at any moment leaves at most one
message sent but not marked (the one on the wire), which is sent again after the lease
expires; every other row is either marked or still queued. SMTP gives no way to do
better: the server may accept a message and the connection die before we hear it.

Per message that is one transaction of three small statements (`sendtx`), kept lean
enough that the database costs a fraction of what the SMTP exchange does (README,
"Performance"). Rare outcomes (a retry, a failure) are recorded in a transaction of their
own, committed before the next row's.
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
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.delivery import expand, outbox
from mailprefs.delivery.message import MessageBuilder, message_settings
from mailprefs.delivery.outbox import Claimed, RetryPolicy
from mailprefs.delivery.render import TemplateInvalid
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
from mailprefs.domain.addresses import address_hash
from mailprefs.domain.outbox_models import Campaign
from mailprefs.extensions import get_db, get_tokens

# Consecutive relay-level failures (not one recipient's) after which a batch backs off.
RELAY_FAILURES_BEFORE_BACKOFF = 2
# How often a sending campaign is judged by the reputation guard without a refusal.
JUDGE_SECONDS = 30.0

log = logging.getLogger("mailprefs.worker")


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
        self.transport = self.transport or transport_for(config)
        self.batch_size = config["MAILPREFS_BATCH_SIZE"]
        self.lease = timedelta(seconds=config["MAILPREFS_LEASE_SECONDS"])
        self.rate = config["MAILPREFS_SEND_RATE"]
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
        self._judged_at: dict[int, float] = {}  # campaign id -> time.monotonic() of last check
        self._campaigns: dict[int, _CampaignContext] = {}
        self.relay_down = False
        self._next_send_at = 0.0

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
        """Send every due row, batch by batch, until none is left or we are stopped."""
        total = Summary()
        self.relay_down = False
        while not self.stop.is_set() and not self.relay_down:
            batch = self.claim()
            if not batch:
                break
            total.add(self.process(batch))
        self.finish()
        return total

    def run_due(self) -> Summary:
        summary = Summary(fired=self.fire_due())
        self.expand_all()
        if self.on_total:
            with self.db.session(read_only=True) as session:
                self.on_total(outbox.pending_count(session, clock.now()))
        try:
            summary.add(self.drain())
        finally:
            self.transport.close()
        summary.webhooks = self.webhooks.drain()
        return summary

    def run_forever(self, idle_seconds: float) -> None:
        """The long-running worker: expand, drain, sleep when idle; stop on request."""
        # Webhooks go out from a thread of their own: a long campaign does not hold them
        # back, and a receiver that hangs does not hold back the mail.
        hooks = threading.Thread(
            target=self._webhooks_forever, args=(idle_seconds,), name="webhooks", daemon=True
        )
        hooks.start()
        try:
            while not self.stop.is_set():
                self.expand_all()
                done = self.drain()
                if done.handled == 0:
                    self.transport.close()  # do not hold an idle SMTP connection
                    self.stop.wait(idle_seconds)
        finally:
            self.transport.close()
            self.stop.set()
            hooks.join(timeout=self.webhooks.timeout * 2 + 5)

    def _webhooks_forever(self, idle_seconds: float) -> None:
        while not self.stop.is_set():
            try:
                sent = self.webhooks.run_once()
            except Exception:  # the database went away: try again after a pause
                log.exception("webhooks: round failed")
                sent = 0
            if sent == 0:
                self.stop.wait(idle_seconds)

    # --- one batch ---------------------------------------------------------------------

    def claim(self) -> list[Claimed]:
        with self.db.transaction() as session:
            return outbox.claim(
                session, self.worker_id, limit=self.batch_size, lease=self.lease, now=clock.now()
            )

    def process(self, batch: list[Claimed]) -> Summary:
        summary = Summary()
        pending: _Outcome | None = None
        relay_failures = 0
        with SendTransactions(self.db.engine) as tx:
            for index, item in enumerate(batch):
                if self.stop.is_set():
                    self._record(tx, pending, summary)
                    pending = None
                    tx.commit()
                    with self.db.engine.begin() as connection:
                        rest = [c.id for c in batch[index:]]
                        outbox.release(connection, rest, self.worker_id)
                    break
                if relay_failures >= RELAY_FAILURES_BEFORE_BACKOFF:
                    # The relay itself is failing: wait before trying the rest, rather than
                    # spending a connection timeout on every row.
                    self._record(tx, pending, summary)
                    pending = None
                    tx.commit()
                    until = clock.now() + self.retry.delay(1)
                    with self.db.engine.begin() as connection:
                        rest = [c.id for c in batch[index:]]
                        outbox.defer(connection, rest, self.worker_id, until)
                    self.relay_down = True
                    break
                context = self._context(item.campaign_id)
                # One transaction: the last outcome, and the gate asked again for this row.
                self._record(tx, pending, summary)
                pending = None
                checked = tx.prepare(
                    item,
                    context.topic_id,
                    context.topic_kind,
                    owner=self.worker_id,
                    lease=self.lease,
                    now=clock.now(),
                )
                tx.commit()
                if checked is None:
                    summary.skipped += 1
                    continue
                decision, recipient = checked
                self._progress(1)
                if not decision.allowed:
                    summary.blocked += 1
                    continue
                pending = self._send(item, context, decision, recipient)
                relay_failures = relay_failures + 1 if pending.relay_failed else 0
            self._record(tx, pending, summary)
            tx.commit()
        self._judge(batch)
        return summary

    def _judge(self, batch: list[Claimed]) -> None:
        """Let the reputation guard judge this batch's campaigns: at once those with a
        recipient refused by the relay (a hard bounce), the others every JUDGE_SECONDS
        (complaints from the preference page, say, arrive by no other road)."""
        now = time.monotonic()
        due = set(self._refused_in)
        for campaign_id in {item.campaign_id for item in batch}:
            if now - self._judged_at.get(campaign_id, 0.0) >= JUDGE_SECONDS:
                due.add(campaign_id)
        self._refused_in.clear()
        if not due:
            return
        with self.db.transaction() as session:
            reputation.check_campaigns(session, due, self.limits)
        self._judged_at.update(dict.fromkeys(due, now))

    def _send(self, item: Claimed, context: _CampaignContext, decision: Any, recipient) -> _Outcome:
        try:
            message = context.builder.build(
                RecipientInfo(
                    recipient.public_id, recipient.email, recipient.attributes, delivery_id=item.id
                )
            )
        except (ValueError, TemplateInvalid) as exc:
            # This person's data cannot make a valid message (an address that needs
            # SMTPUTF8, a template failing on their attributes): fail the row, not the batch.
            return _Outcome(item, "permanent", error=f"cannot build the message: {exc}")
        self._throttle()
        try:
            self.transport.send(decision, message)
        except TemporaryFailure as exc:
            return _Outcome(item, "retry", error=str(exc), relay_failed=exc.connection)
        except PermanentFailure as exc:
            return _Outcome(
                item,
                "permanent",
                error=str(exc),
                recipient_refused=exc.recipient,
                email_hash=address_hash(recipient.email, self.hash_key),
            )
        return _Outcome(item, "sent", message_id=message.message_id)

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
        if self.rate <= 0:
            return
        now = time.monotonic()
        if self._next_send_at > now:
            time.sleep(self._next_send_at - now)
        self._next_send_at = max(now, self._next_send_at) + 1.0 / self.rate

    def _progress(self, n: int) -> None:
        if self.on_progress:
            self.on_progress(n)
