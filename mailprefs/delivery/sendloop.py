"""The worker's send loop over its pool of connections (see `mailprefs.delivery.worker`
for the promises it keeps, `pool` for the connections, `pacing` for how fast).

Each turn of the loop takes the outcomes that came back from the connections, records
them and asks the gate again for as many rows as there are free connections, all in one
short transaction, then builds those messages and hands them over after the commit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from mailprefs import clock
from mailprefs.delivery import outbox
from mailprefs.delivery.batch import BatchRows
from mailprefs.delivery.outbox import Claimed
from mailprefs.delivery.pacing import is_back_pressure
from mailprefs.delivery.pool import Done, Job
from mailprefs.delivery.sendtx import SendTransactions
from mailprefs.delivery.transport import PermanentFailure, TemporaryFailure
from mailprefs.delivery.types import RecipientInfo
from mailprefs.domain import reputation
from mailprefs.domain.addresses import address_hash, redact
from mailprefs.domain.templating import TemplateInvalid

# Consecutive relay-level failures (not one recipient's) after which a batch backs off.
RELAY_FAILURES_BEFORE_BACKOFF = 2
# Batches' worth of rows held for limited domains before a worker stops claiming more.
HELD_BATCHES = 4
# How often a sending campaign is judged by the reputation guard without a refusal.
JUDGE_SECONDS = 30.0
# Back-pressure answers in a row (the window long down to one) after which it does too.
PUSHBACKS_BEFORE_BACKOFF = 8


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


class PoolSending:
    """The batch-sending half of `Worker` (a mixin: it uses the worker's db, pool,
    domains, send_rate, lease, retry, stop and its helpers)."""

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
                for done in self.collect(wait):
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
                self._in_hand.clear()  # their records are in
                self._give_back(rows, ending)
                for item, decision, recipient, group in prepared:
                    failed = self._dispatch(item, decision, recipient, group, rows)
                    if failed is not None:
                        finished.append(failed)
                if not finished and self._batch_done(rows, ending, final):
                    break
                wait = 0.0 if finished else self._wait_time(rows, ending)
        self._current = None  # nothing of this batch is being handled any more
        self._judge()
        return summary

    def _judge(self) -> None:
        """Let the reputation guard judge this batch's campaigns: at once those with a
        recipient refused by the relay (a hard bounce), the others every JUDGE_SECONDS
        (complaints from the preference page, say, arrive by no other road)."""
        now = time.monotonic()
        due = set(self._refused_in)
        for campaign_id in self._seen_in:
            if now - self._judged_at.get(campaign_id, 0.0) >= JUDGE_SECONDS:
                due.add(campaign_id)
        self._refused_in.clear()
        self._seen_in.clear()
        if not due:
            return
        with self.db.transaction() as session:
            reputation.check_campaigns(session, due, self.limits)
        self._judged_at.update(dict.fromkeys(due, now))

    def collect(self, wait: float | None) -> list[Done]:
        """The outcomes that are in (see `pool.collect`). The messages the relay accepted
        are noted in hand first, before anything can fail while they are recorded: they
        have left, and `recovery.settle` must know it."""
        dones = self.pool.collect(wait)
        for done in dones:
            if done.crash is None and done.error is None:
                self._in_hand[done.job.ref.id] = done.job.message.message_id
        return dones

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
            self._current = item  # to blame, should its row break the loop
            self._seen_in.add(item.campaign_id)
            context = self._context(item.campaign_id)
            checked = tx.prepare(
                item,
                context.topic_id,
                context.topic_kind,
                purpose=context.purpose,
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
        self._current = item
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
        self.pool.submit(Job(item, decision, message, group, recipient.email))
        return None

    def _outcome(self, done: Done, rows: BatchRows) -> _Outcome | None:
        """What a sender's result means for its row; None when the row goes back to be
        sent again in this batch (the relay pushed back before accepting anything)."""
        if done.crash is not None:
            self._current = done.job.ref
            raise done.crash
        item = done.job.ref
        if done.job.group is not None:
            self.domains.done(done.job.group)
        message_id, email = done.job.message.message_id, done.job.email
        exc = done.error
        if exc is None:
            self.pool.window.accepted()
            return _Outcome(item, "sent", message_id=message_id)
        if isinstance(exc, TemporaryFailure):
            # Relays quote the recipient: its answer is stored without the address.
            error = redact(str(exc), email) or ""
            if is_back_pressure(exc.code, exc.detail) and not exc.maybe_delivered:
                self.pool.pressed(time.monotonic())
                if rows.again(item):
                    return None
                return _Outcome(item, "retry", error=error)
            if exc.connection:
                self.pool.window.failed()
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
