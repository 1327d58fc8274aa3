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
  anything else accepted with 250

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
import contextlib
import email
import email.policy
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

ROOT = Path(__file__).resolve().parents[2]
_BEHAVIOUR = re.compile(
    r"^(reject550|temp450|close421|data554|data451|drop|flaky(\d+)|slow(\d+))(?:\.|$)"
)
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
        self.sink._accept(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        delay = max((n for b, n in behaviours if b == "slow"), default=0)
        if delay:
            await asyncio.sleep(delay / 1000)
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
    ) -> None:
        self.host = host
        self.port = port
        self.drop_every = drop_every
        self.pipelining = pipelining
        self.maildir = Path(maildir) if maildir is not None else None
        self.keep = keep
        self.messages: list[Received] = []
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the STARTTLS re-entry
            self.sink.connections += 1
            self.sink._protocols.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._protocols.discard(self)
        super().connection_lost(error)


# -- process helpers --------------------------------------------------------------------
def start_sink_process(
    maildir: Path,
    *,
    port: int = 0,
    drop_every: int = 0,
    timeout: float = 15.0,
    count_only: bool = False,
    pipelining: bool = True,
) -> tuple[subprocess.Popen, int]:
    """Start the sink in its own process; returns it and its port once it listens.

    `count_only`: write nothing (`maildir` is not created; its parent holds the ready
    file); read the count with `stop_and_count(proc)`."""
    maildir = Path(maildir)
    (maildir.parent if count_only else maildir).mkdir(parents=True, exist_ok=True)
    ready = maildir.parent / f".{maildir.name}.sink-ready-{os.getpid()}-{time.time_ns()}"
    command = [sys.executable, "-m", "tests.support.smtp_sink", "--port", str(port)]
    if count_only:
        command += ["--count-only"]
    else:
        command += ["--maildir", str(maildir)]
    command += ["--ready-file", str(ready)]
    if drop_every:
        command += ["--drop-every", str(drop_every)]
    if not pipelining:
        command += ["--no-pipelining"]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    stdout = subprocess.PIPE if count_only else subprocess.DEVNULL
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, text=count_only)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the SMTP sink exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            stop_sink_process(proc)
            raise RuntimeError("the SMTP sink did not become ready in time")
        time.sleep(0.02)
    sink_port = int(ready.read_text())
    ready.unlink(missing_ok=True)
    return proc, sink_port


def stop_sink_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it does not go; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def stop_and_count(proc: subprocess.Popen, timeout: float = 10.0) -> dict[str, Any]:
    """Stop a `count_only` sink process; returns its `COUNT` report (see `SmtpSink.stats`)."""
    stop_sink_process(proc, timeout)
    output = proc.stdout.read() if proc.stdout is not None else ""
    for line in output.splitlines():
        if line.startswith("COUNT "):
            return json.loads(line[len("COUNT ") :])
    raise RuntimeError(f"the SMTP sink exited ({proc.returncode}) without its count")


def maildir_files(maildir: Path) -> list[Path]:
    """The messages in a maildir, in the order they arrived."""
    folder = Path(maildir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == ".eml" and not p.name.startswith("."))


def read_maildir(maildir: Path) -> list[EmailMessage]:
    """Every message the sink process wrote, parsed, in arrival order."""
    messages = []
    for path in maildir_files(maildir):
        with contextlib.suppress(FileNotFoundError):
            messages.append(
                email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            )
    return messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--maildir", type=Path)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--drop-every", type=int, default=0)
    parser.add_argument("--no-pipelining", action="store_true", help="leave PIPELINING out")
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
    )
    asyncio.run(sink.serve(args.ready_file, report=args.count_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
