"""A worker's pool of SMTP connections: messages in flight at once from one process.

Each sender owns one transport (one connection, reused across messages and batches,
opened again after a drop: `SMTPTransport` does that) and runs on a thread of its own.
Threads, not asyncio: the transport is blocking smtplib, and a thread waiting for a
relay's answer holds no GIL, so 32 connections waiting 20 ms each cost the process
little. Only the worker's loop touches the database: it hands each message to an idle
sender (`submit`) and takes the outcomes back (`collect`) to record them, so the
per-message invariants of `mailprefs.delivery.worker` hold on every connection.

A pool of one sends on the caller's thread: there is nothing to overlap, and the
hand-off would only cost time.

With a pool, the interpreter's GIL switch interval is lowered from 5 ms to 1 ms: a
sender whose answer has arrived otherwise waits up to 5 ms for the loop (busy asking
the gate and building) to let go, several times a message. Measured with a 20 ms relay
and 32 connections: about 1.3 times as many messages a second (docs/performance.md).

The number of messages in flight is bounded by the AIMD window (`pacing.Window`):
after the relay pushes back, the senders beyond the window are idle, and their
connections are closed so that the relay sees fewer of them.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailprefs.delivery.pacing import Window
from mailprefs.delivery.transport import DeliveryError, TemporaryFailure, Transport
from mailprefs.delivery.types import BuiltMessage

# The GIL switch interval while senders run on threads (see above).
SWITCH_INTERVAL = 0.001


@dataclass
class Job:
    """One message for a sender: `ref` is the worker's own (its claimed row)."""

    ref: Any
    decision: Any
    message: BuiltMessage
    group: str | None = None  # the domain limit it counts against, if any
    email: str = ""  # the address as stored (its hash goes on the suppression list)


@dataclass
class Done:
    job: Job
    error: DeliveryError | None = None  # None: the relay accepted it
    crash: BaseException | None = None  # a bug, re-raised on the worker's thread
    sender: _Sender | None = field(default=None, repr=False)


class _Sender:
    def __init__(self, pool: SendPool, transport: Transport, index: int, threaded: bool) -> None:
        self.pool = pool
        self.transport = transport
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        if threaded:
            self.thread = threading.Thread(
                target=self._run, name=f"smtp-sender-{index}", daemon=True
            )
            self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            self.pool._results.put(self.send(job))

    def send(self, job: Job) -> Done:
        try:
            # Signed here, on the sender's thread, not on the loop's: the loop goes on
            # asking the gate and building while OpenSSL signs (it lets go of the GIL).
            self.transport.send(job.decision, job.message.signed())
        except DeliveryError as exc:
            return Done(job, error=exc, sender=self)
        except Exception as exc:  # noqa: BLE001 - handed to the worker's thread
            if isinstance(exc, OSError):  # not sorted by the transport: still the relay's
                return Done(job, error=TemporaryFailure(str(exc), connection=True), sender=self)
            return Done(job, crash=exc, sender=self)
        return Done(job, sender=self)


class SendPool:
    """Up to `size` senders, each with a transport from `make_transport`."""

    def __init__(self, make_transport: Callable[[], Transport], size: int) -> None:
        self.size = max(1, size)
        self.window = Window(self.size)
        self._make_transport = make_transport
        self._senders: list[_Sender] = []
        self._idle: list[_Sender] = []  # last in, first out: warm connections first
        self._results: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self.in_flight = 0
        if self.size > 1:
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))

    @property
    def free(self) -> int:
        """How many more messages may be handed over now."""
        return max(0, self.window.limit - self.in_flight)

    @property
    def connections_opened(self) -> int:
        return sum(getattr(s.transport, "connections", 0) for s in self._senders)

    def submit(self, job: Job) -> None:
        if self._idle:
            sender = self._idle.pop()
        else:
            sender = _Sender(
                self, self._make_transport(), len(self._senders), threaded=self.size > 1
            )
            self._senders.append(sender)
        self.in_flight += 1
        if sender.thread is None:
            self._results.put(sender.send(job))
        else:
            sender.jobs.put(job)

    def collect(self, timeout: float | None) -> list[Done]:
        """The outcomes that are in: waits up to `timeout` seconds (None: until one is)
        when none is yet; an empty list when nothing is in flight."""
        if self.in_flight == 0:
            return []
        done: list[Done] = []
        try:
            if timeout is not None and timeout <= 0:
                done.append(self._results.get_nowait())
            else:
                done.append(self._results.get(timeout=timeout))
            while True:
                done.append(self._results.get_nowait())
        except queue.Empty:
            pass
        for result in done:
            self.in_flight -= 1
            assert result.sender is not None
            self._idle.append(result.sender)
        return done

    def pressed(self, now: float) -> float:
        """The relay pushed back: shrink the window, close the connections beyond it."""
        pause = self.window.pressed(now)
        keep = self.window.limit
        # The busy senders and the warmest idle ones stay; the coldest idle ones close.
        surplus = len(self._senders) - keep
        for sender in self._idle[: max(0, surplus)]:
            sender.transport.close()
        return pause

    def close(self) -> None:
        """Close every idle connection (QUIT); senders stay for the next batch."""
        for sender in self._idle:
            sender.transport.close()

    def shutdown(self) -> None:
        """Close the connections and end the sender threads."""
        self.close()
        for sender in self._senders:
            if sender.thread is not None:
                sender.jobs.put(None)
        self._senders.clear()
        self._idle.clear()
