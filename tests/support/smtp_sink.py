"""A real SMTP server for tests (aiosmtpd) that misbehaves on request.

In a test:                ``with SmtpSink() as sink: ... sink.port ... sink.messages``
As its own process:       ``python -m tests.support.smtp_sink --port 0 --maildir DIR``
                          (or ``start_sink_process(DIR)`` / ``stop_sink_process(proc)``)
Counting only (benchmarks): ``python -m tests.support.smtp_sink --count-only``
                          (or ``start_sink_process(DIR, count_only=True)`` then
                          ``stop_and_count(proc)``): keeps and writes nothing, and prints
                          one ``COUNT {json}`` line on shutdown (messages accepted,
                          connections, wall-clock times of the first and last message)

Behaviour is chosen by the recipient's local part, so a test in another process can ask
for it without a control channel:

  reject550.*   550 on RCPT TO (a bad address: a hard bounce)
  temp450.*     450 on RCPT TO
  close421.*    421 on RCPT TO, then the connection is closed
  data554.*     554 after the message (refused for its content: not the address's fault)
  data451.*     451 after the message
  drop.*        the connection is closed after the message is received, before the
                answer: the client cannot know whether it was accepted (it was not kept)
  flaky{N}.*    451 on RCPT TO the first N times that address is tried, then accepted
  slow{MS}.*    the message is kept, then the answer to DATA waits MS milliseconds (a
                worker killed meanwhile has sent a message it never saw accepted)
  throttle421.* 421 "too many messages, slow down" on RCPT TO, then the connection is
                closed (back-pressure from a relay)
  slowdown451.* 451 "rate limited, slow down" on RCPT TO (the connection stays)
  anything else accepted with 250

And for the whole relay, per connection or per message (options of `SmtpSink` and of
the process):

  delay_ms / --delay MS        every answer to DATA waits MS milliseconds, each on its
                               own connection's task, so connections are served
                               concurrently (what a scanning relay or an ESP costs)
  max_connections / --max-connections N
                               a connection beyond N open at once is answered
                               421 "too many connections" at the greeting and closed
  rate / --rate N              at most N messages a second are accepted; RCPT TO beyond
                               that is answered 451 "slow down"
  idle_timeout / --idle-timeout S
                               a connection idle for S seconds is closed, without a word

`stats()` (and the COUNT line) also reports the peak number of connections open at
once, the answers of the back-pressure kinds given, and, per recipient domain, the peak
number of messages whose DATA answer was pending at once (`peak_in_data`).

The sink offers PIPELINING (RFC 2920) in its EHLO answer, as Postfix and most relays
do (aiosmtpd reads commands in order from the stream, so pipelined ones work);
`pipelining=False` (`--no-pipelining`) leaves it out, for clients that must not use it.

`drop_every=K` closes the connection after answering every K-th accepted message (a
relay that limits messages per connection). In process mode each accepted message is
written to the maildir as a whole file (temporary name, then rename; no fsync: the sink
has to keep up with the benchmarks), with Return-Path and Delivered-To on top; with
`--count-only` nothing is written, so a benchmark measures the sender, not the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

ROOT = Path(__file__).resolve().parents[2]
_BEHAVIOUR = re.compile(
    r"^(reject550|temp450|close421|throttle421|slowdown451|data554|data451|drop"
    r"|flaky(\d+)|slow(\d+))(?:\.|$)"
)
TOO_MANY_CONNECTIONS = "421 4.7.0 too many connections from your host, slow down"
SLOW_DOWN = "451 4.7.1 rate limited, slow down"
_WAIT_FOR_CLOSE = 30.0

Received = tuple[str, list[str], bytes]


def _behaviour(address: str) -> tuple[str, int]:
    match = _BEHAVIOUR.match(address.rpartition("@")[0].lower())
    if match is None:
        return "accept", 0
    keyword, flaky, slow = match.groups()
    if flaky is not None:
        return "flaky", int(flaky)
    if slow is not None:
        return "slow", int(slow)
    return keyword, 0


async def _hang_up(server: SMTP, reply: str | None = None) -> None:
    """Optionally answer, then close the connection; aiosmtpd cancels this handler
    when it notices the connection is gone."""
    if reply is not None:
        await server.push(reply)
    if server.transport is not None:
        server.transport.close()
    await asyncio.sleep(_WAIT_FOR_CLOSE)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink
        self.tries: Counter[str] = Counter()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        if self.sink.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        behaviour, n = _behaviour(address)
        self.sink.rcpt_attempts += 1
        if behaviour == "reject550":
            return f"550 5.1.1 <{address}>: recipient address rejected"
        if behaviour == "temp450":
            return f"450 4.2.1 <{address}>: mailbox busy, try again later"
        if behaviour == "close421":
            await _hang_up(server, "421 4.3.2 service shutting down, closing channel")
            return "421 4.3.2 closing"  # not reached: the handler is cancelled
        if behaviour == "throttle421":
            self.sink.throttled += 1
            await _hang_up(server, "421 4.7.0 too many messages, slow down")
            return "421 4.7.0 closing"  # not reached
        if behaviour == "slowdown451" or not self.sink._take_rate():
            self.sink.throttled += 1
            return SLOW_DOWN
        if behaviour == "flaky":
            key = address.lower()
            self.tries[key] += 1
            if self.tries[key] <= n:
                return "451 4.3.0 temporary failure, try again"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        behaviours = [_behaviour(rcpt) for rcpt in envelope.rcpt_tos]
        if any(b == "drop" for b, _ in behaviours):
            await _hang_up(server)
            return "451 not reached"
        if any(b == "data554" for b, _ in behaviours):
            return "554 5.7.1 message content rejected"
        if any(b == "data451" for b, _ in behaviours):
            return "451 4.3.0 message not accepted now, try again"
        sink = self.sink
        sink._accept(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        delay = max((n for b, n in behaviours if b == "slow"), default=sink.delay_ms)
        if delay:
            domains = {rcpt.rpartition("@")[2].lower() for rcpt in envelope.rcpt_tos}
            for domain in domains:
                sink._in_data[domain] += 1
                sink.peak_in_data[domain] = max(sink.peak_in_data[domain], sink._in_data[domain])
            try:
                await asyncio.sleep(delay / 1000)
            finally:
                for domain in domains:
                    sink._in_data[domain] -= 1
        if self.sink.drop_every and self.sink.accepted % self.sink.drop_every == 0:
            await _hang_up(server, "250 2.0.0 OK: queued")
            return "250 not reached"
        return "250 2.0.0 OK: queued"


class SmtpSink:
    """An SMTP server on 127.0.0.1 in a background thread (or, via `serve`, in the
    current one). `messages` lists (envelope from, recipients, raw bytes) as received."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        drop_every: int = 0,
        maildir: str | os.PathLike[str] | None = None,
        keep: bool = True,
        pipelining: bool = True,
        delay_ms: float = 0,
        max_connections: int = 0,
        rate: float = 0,
        idle_timeout: float = 300,
    ) -> None:
        self.host = host
        self.port = port
        self.drop_every = drop_every
        self.delay_ms = delay_ms
        self.max_connections = max_connections
        self.rate = rate
        self.idle_timeout = idle_timeout
        self.open_connections = 0
        self.peak_connections = 0
        self.refused_connections = 0  # 421 at the greeting: over max_connections
        self.throttled = 0  # 421/451 "slow down" answers to RCPT TO
        self.peak_in_data: Counter[str] = Counter()
        self._in_data: Counter[str] = Counter()
        self._rate_window = (0.0, 0)  # (second it counts, messages in it)
        self.pipelining = pipelining
        self.maildir = Path(maildir) if maildir is not None else None
        self.keep = keep
        self.messages: list[Received] = []
        self.arrivals: list[tuple[float, str]] = []  # (time.time(), first recipient)
        self.accepted = 0
        self.first_at: float | None = None  # wall-clock time of the first accepted message
        self.last_at: float | None = None
        self.connections = 0
        self.rcpt_attempts = 0
        self._lock = threading.Lock()
        self._names = itertools.count(1)
        self._protocols: set[SMTP] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._handler = _Handler(self)  # one per sink: flaky counts span connections

    # -- receiving -----------------------------------------------------------------
    def _accept(self, mail_from: str, rcpts: list[str], raw: bytes) -> None:
        with self._lock:
            self.accepted += 1
            self.last_at = time.time()
            if self.first_at is None:
                self.first_at = self.last_at
            if self.keep:
                self.messages.append((mail_from, rcpts, bytes(raw)))
                self.arrivals.append((self.last_at, rcpts[0] if rcpts else ""))
        if self.maildir is not None:
            self._write(mail_from, rcpts, raw)

    def _write(self, mail_from: str, rcpts: list[str], raw: bytes) -> None:
        envelope = f"Return-Path: <{mail_from}>\r\n" + "".join(
            f"Delivered-To: {rcpt}\r\n" for rcpt in rcpts
        )
        name = f"{time.time_ns()}-{os.getpid()}-{next(self._names):08d}.eml"
        assert self.maildir is not None
        temp = self.maildir / f".{name}.tmp"
        with open(temp, "wb") as handle:
            handle.write(envelope.encode("utf-8", "surrogateescape") + raw)
        os.replace(temp, self.maildir / name)

    def _take_rate(self) -> bool:
        """One message of the `rate` per second allowance (fixed one-second windows)."""
        if self.rate <= 0:
            return True
        second = time.monotonic() // 1
        start, used = self._rate_window
        if start != second:
            start, used = second, 0
        if used >= self.rate:
            return False
        self._rate_window = (start, used + 1)
        return True

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until `count` messages were accepted; returns the messages."""
        deadline = time.monotonic() + timeout
        while self.accepted < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)

    # -- serving -------------------------------------------------------------------
    def _protocol(self) -> SMTP:
        protocol = _TrackedSMTP(
            self._handler,
            hostname="sink.test",
            ident="mailprefs test sink",
            enable_SMTPUTF8=True,
            timeout=self.idle_timeout,
        )
        protocol.sink = self
        return protocol

    async def _start(self) -> None:
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.close()
        await asyncio.sleep(0.05)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
        finally:
            loop.close()

    def start(self) -> SmtpSink:
        self._thread = threading.Thread(target=self._run_thread, name="smtp-sink", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "connections": self.connections,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "peak_connections": self.peak_connections,
            "refused_connections": self.refused_connections,
            "throttled": self.throttled,
            "peak_in_data": dict(self.peak_in_data),
        }

    async def serve(self, ready_file: Path | None = None, *, report: bool = False) -> None:
        """Serve in the running loop until SIGTERM or SIGINT (process mode); `report`
        prints a `COUNT {json}` line of `stats()` on the way out."""
        await self._start()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, stop.set)
        print(f"READY {self.port}", flush=True)
        if ready_file is not None:
            temp = ready_file.with_name(ready_file.name + ".tmp")
            temp.write_text(str(self.port))
            os.replace(temp, ready_file)
        await stop.wait()
        await self._shutdown()
        if report:
            print("COUNT " + json.dumps(self.stats()), flush=True)


class _TrackedSMTP(SMTP):
    sink: SmtpSink

    counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the STARTTLS re-entry
            sink = self.sink
            sink.connections += 1
            sink._protocols.add(self)
            sink.open_connections += 1
            self.counted = True
            sink.peak_connections = max(sink.peak_connections, sink.open_connections)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._protocols.discard(self)
        if self.counted:
            self.sink.open_connections -= 1
            self.counted = False
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        sink = self.sink
        if sink.max_connections and sink.open_connections > sink.max_connections:
            # A relay's answer to one connection too many: refuse at the greeting.
            sink.refused_connections += 1
            await _hang_up(self, TOO_MANY_CONNECTIONS)
            return
        await super()._handle_client()


# The process helpers live in their own module; imported here for the tests that
# have always found them here.
from tests.support.sink_process import (  # noqa: E402
    maildir_files,
    read_maildir,
    start_sink_process,
    stop_and_count,
    stop_sink_process,
)

__all__ = [
    "SmtpSink",
    "maildir_files",
    "read_maildir",
    "start_sink_process",
    "stop_and_count",
    "stop_sink_process",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--maildir", type=Path)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--drop-every", type=int, default=0)
    parser.add_argument("--no-pipelining", action="store_true", help="leave PIPELINING out")
    parser.add_argument(
        "--delay", type=float, default=0, metavar="MS", help="answer DATA after MS ms"
    )
    parser.add_argument("--max-connections", type=int, default=0, metavar="N")
    parser.add_argument("--rate", type=float, default=0, metavar="N", help="messages a second")
    parser.add_argument("--idle-timeout", type=float, default=300, metavar="S")
    parser.add_argument(
        "--count-only",
        action="store_true",
        help="write nothing; print a COUNT line with the number accepted on shutdown",
    )
    args = parser.parse_args(argv)
    if args.count_only == (args.maildir is not None):
        parser.error("give either --maildir or --count-only")
    sink = SmtpSink(
        args.host,
        args.port,
        drop_every=args.drop_every,
        maildir=args.maildir,
        keep=False,
        pipelining=not args.no_pipelining,
        delay_ms=args.delay,
        max_connections=args.max_connections,
        rate=args.rate,
        idle_timeout=args.idle_timeout,
    )
    asyncio.run(sink.serve(args.ready_file, report=args.count_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
