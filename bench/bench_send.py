"""Sending: `run-due` with its pool of connections against bare smtplib loops.

Every rate is messages per second into the test relay in its own process, counting and
writing nothing (`tests/support/smtp_sink.py --count-only`), a fresh one per
measurement, each checked to have received exactly one message per recipient, timed
alike for all: from the first message the relay accepted to the last (the send phase).

Two relays:
- no delay: the sender's own cost shows. The relay is first checked against the
  plainest aiosmtpd server (a handler that appends the bytes): a bare loop into each.
- 20 ms a message (`--delay 20`), served concurrently, as an ESP's endpoint or a
  scanning relay: what a pool of connections is for.

Baselines: smtplib sending messages built in advance by the service's own builder (same
bytes), over one connection, or over N connections from N threads; the naive Flask-Mail
loop (`mail.send(Message(...))`, a connection each). `run-due` is the real
`flask --app wsgi mailprefs run-due` process (gate asked again and a durable mark per
message) with MAILPREFS_SMTP_CONNECTIONS set; its peak resident memory (VmHWM) is read
from /proc while it runs. PostgreSQL: the campaign is expanded first, then one `run-due`
is compared with two at once, each with its own relay, with pools of 8 and of the
default size. DKIM: the same campaign signed (RSA-2048; RSA-2048 and Ed25519) against
unsigned, judged with the 20 ms relay and a pool of 32 (signed and unsigned in turn,
three runs each, the best of each; shown without delay too, where signing's CPU
competes with the relay's on two cores), and the signing cost per message, OpenSSL's
and dkimpy's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask_mail import Message

from bench import fixtures, send_signing
from bench.common import Figure
from mailprefs.config import load as load_config
from mailprefs.delivery.message import MessageBuilder, message_settings
from mailprefs.delivery.types import BuiltMessage, CampaignInfo, RecipientInfo
from mailprefs.delivery.worker import Worker
from mailprefs.extensions import get_db, get_tokens, mail
from tests.support.smtp_sink import start_sink_process, stop_and_count

DELAY_MS = 20
DEFAULT_POOL = int(load_config({})["MAILPREFS_SMTP_CONNECTIONS"])
POOLS = (1, 8, 32, 64)


@dataclass
class Timing:
    count: int
    wall: float  # seconds: the loop, or the processes from start to the last exit
    sinks: list[dict[str, Any]]  # each relay's count report
    peak_mb: list[float] = field(default_factory=list)  # each run-due's VmHWM

    @property
    def rate(self) -> float:
        """Messages per second in the send phase (count - 1 intervals)."""
        first = min(s["first_at"] for s in self.sinks if s["first_at"])
        last = max(s["last_at"] for s in self.sinks if s["last_at"])
        return (self.count - 1) / (last - first)


def sizes(quick: bool) -> dict[str, int]:
    full = {"fast": 20_000, "naive": 5_000, "slow1": 500, "slow": 10_000, "slow8": 3_000}
    if quick:
        return {**{k: max(200, v // 10) for k, v in full.items()}, "rounds": 1}
    return {**full, "rounds": 3}


def main(args: argparse.Namespace) -> list[Figure]:
    n = sizes(args.quick)
    print(f"   load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="mailprefs-bench-send-") as tmp:
        work = Path(tmp)
        figures = _no_delay(work, n) + _delayed(work, n)
        if fixtures.postgres_available():
            figures += _postgres(work, n["slow"])
        else:
            print("   PostgreSQL unreachable: its figures are skipped", flush=True)
    print(f"   load average {os.getloadavg()[0]:.2f} at the end", flush=True)
    return figures


def _no_delay(work: Path, n: dict[str, int]) -> list[Figure]:
    count = n["fast"]
    messages = _messages(work, count)
    plain = _bare(work, messages, 1, relay="plain")
    bare = _bare(work, messages, 1)
    naive = _measure(work, "baseline B", lambda port: _flask_mail_loop(work, port, n["naive"]))
    one = _run_due_sqlite(work, count, pool=1)
    pooled = _run_due_sqlite(work, count, pool=DEFAULT_POOL)
    key = send_signing.make_keys(work)
    signed = _run_due_sqlite(work, count, pool=DEFAULT_POOL, env=send_signing.env(key))
    both = _run_due_sqlite(work, count, pool=DEFAULT_POOL, env=send_signing.env(key, ed=True))
    a, p = bare.rate, pooled.rate
    name = "run-due, 1 worker, SQLite, relay without delay"
    cost = send_signing.costs(key, messages[:2000])
    return [
        Figure("relay check: bare smtplib loop into the test relay", a, "msg/s", plain.rate,
               "the same into a plain aiosmtpd handler", min_ratio=0.8),
        Figure("baseline A: smtplib loop, one connection, pre-built", a, "msg/s"),
        Figure("baseline B: naive Flask-Mail mail.send() loop", naive.rate, "msg/s"),
        Figure(f"{name}, pool of 1", one.rate, "msg/s", a, "A"),
        Figure(f"{name}, pool of {DEFAULT_POOL}", p, "msg/s", a, "A", min_ratio=0.6),
        Figure(f"{name}, pool of {DEFAULT_POOL}", p, "msg/s", naive.rate, "B", min_ratio=3.0),
        Figure(f"{name}, DKIM RSA-2048", signed.rate, "msg/s", p, "unsigned"),
        Figure(f"{name}, DKIM RSA-2048 + Ed25519", both.rate, "msg/s", p, "unsigned"),
        Figure("DKIM signing, RSA-2048 (OpenSSL)", cost["rsa"], "ms/msg"),
        Figure("DKIM signing, Ed25519 (OpenSSL)", cost["ed25519"], "ms/msg"),
        Figure("DKIM signing, RSA-2048 (dkimpy, before)", cost["dkimpy"], "ms/msg"),
    ]  # fmt: skip


def _delayed(work: Path, n: dict[str, int]) -> list[Figure]:
    delay = {"delay_ms": DELAY_MS}
    messages = _messages(work, n["slow"])
    bare1 = _bare(work, messages[: n["slow1"]], 1, **delay)
    bare8 = _bare(work, messages[: n["slow8"]], 8, **delay)
    bare32 = _bare(work, messages, 32, **delay)
    bare64 = _bare(work, messages, 64, **delay)
    runs = {
        pool: _run_due_sqlite(
            work, n["slow1"] if pool == 1 else n["slow8"] if pool == 8 else n["slow"],
            pool=pool, **delay,
        )
        for pool in POOLS
    }  # fmt: skip
    name = f"run-due, 1 worker, SQLite, relay {DELAY_MS} ms"
    keys = send_signing.make_keys(work)
    unsigned, signed = _signed_and_unsigned(work, n["slow"], keys, rounds=n["rounds"], **delay)
    figures = [
        Figure(f"bare smtplib loop, relay {DELAY_MS} ms, 1 connection", bare1.rate, "msg/s"),
        Figure(f"bare smtplib loop, relay {DELAY_MS} ms, 8 connections", bare8.rate, "msg/s"),
        Figure(f"bare smtplib loop, relay {DELAY_MS} ms, 32 connections", bare32.rate, "msg/s"),
        Figure(f"bare smtplib loop, relay {DELAY_MS} ms, 64 connections", bare64.rate, "msg/s"),
    ]
    bare = {1: bare1, 8: bare8, 32: bare32, 64: bare64}
    for pool, run in runs.items():
        base, label = bare[pool], f"{pool} connection{'s' if pool > 1 else ''}"
        target = 0.7 if pool == 32 else None
        figures.append(
            Figure(f"{name}, pool of {pool}", run.rate, "msg/s", base.rate, label, target)
        )
    figures.append(
        Figure(f"{name}, pool of 32, DKIM RSA-2048 (best of {n['rounds']})", signed.rate,
               "msg/s", unsigned.rate, f"unsigned (best of {n['rounds']})", min_ratio=0.8)
    )  # fmt: skip
    figures.append(
        Figure("run-due peak resident memory, pool of 64", runs[64].peak_mb[0], "MB", limit=150)
    )
    return figures


def _signed_and_unsigned(
    work: Path, count: int, keys: Any, rounds: int, **relay: Any
) -> tuple[Timing, Timing]:
    """The same campaign unsigned and signed (RSA-2048), in turn, `rounds` times each;
    the best run of each. On two shared cores a single run of either swings by a fifth
    with what else runs (docs/performance.md), and the two are judged by their ratio."""
    unsigned, signed = [], []
    for _ in range(rounds):
        unsigned.append(_run_due_sqlite(work, count, pool=32, **relay))
        signed.append(_run_due_sqlite(work, count, pool=32, env=send_signing.env(keys), **relay))
    return max(unsigned, key=lambda t: t.rate), max(signed, key=lambda t: t.rate)


def _postgres(work: Path, count: int) -> list[Figure]:
    """One worker against two, each with its relay: with pools of 8 (each worker bound
    by its relay, as across machines) and of the default size (on these two cores, CPU
    bound: two workers, two relays and the server share them)."""
    figures = []
    for pool, target in ((8, 1.6), (DEFAULT_POOL, None)):
        one = _run_due_postgres(work, count, workers=1, delay_ms=DELAY_MS, pool=pool)
        two = _run_due_postgres(work, count, workers=2, delay_ms=DELAY_MS, pool=pool)
        pg = f"run-due, PostgreSQL, relay {DELAY_MS} ms, pool of {pool}"
        figures += [
            Figure(f"{pg}, 1 worker", one.rate, "msg/s"),
            Figure(f"{pg}, 2 workers", two.rate, "msg/s", one.rate, "1 worker", target),
        ]
    return figures


# --- baselines ---------------------------------------------------------------------


def _relay(work: Path, kind: str, **options: Any) -> tuple[subprocess.Popen, int]:
    if kind == "test":
        return start_sink_process(work / "sink", count_only=True, **options)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.plain_sink"],
        cwd=fixtures.ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=fixtures.environment("sqlite://", work),
    )
    return proc, int(proc.stdout.readline().split()[1])


def _stop_relay(proc: subprocess.Popen) -> dict[str, Any]:
    if proc.args[:3] == [sys.executable, "-m", "bench.plain_sink"]:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        return json.loads(out.split("COUNT ", 1)[1])
    return stop_and_count(proc)


def _measure(work: Path, label: str, loop, relay: str = "test", **options: Any) -> Timing:
    """Run `loop(port)` against a fresh relay; check it received every message."""
    proc, port = _relay(work, relay, **options)
    try:
        sent, seconds = loop(port)
    finally:
        report = _stop_relay(proc)
    _check(label, report["accepted"], sent)
    timing = Timing(sent, seconds, [report])
    print(f"   {label}: {sent:,} messages, {timing.rate:,.0f} msg/s", flush=True)
    return timing


def _check(label: str, received: int, expected: int) -> None:
    if received != expected:
        raise RuntimeError(f"{label}: the relay received {received} messages, not {expected}")


def _recipients(count: int) -> list[RecipientInfo]:
    return [
        RecipientInfo(f"pub{n:012d}", f"p{n:07d}@example.com", {"first_name": "Ann"})
        for n in range(1, count + 1)
    ]


def _messages(work: Path, count: int) -> list[BuiltMessage]:
    app = fixtures.make_app(f"sqlite:///{work / 'unused.db'}", work, migrated=False)
    builder = MessageBuilder(
        message_settings(app.config),
        get_tokens(app),
        CampaignInfo(
            public_id="benchcampaign",
            kind="campaign",
            topic_slug="offers",
            topic_name="Offers",
            topic_kind="marketing",
            subject=fixtures.SUBJECT,
            text=fixtures.TEXT,
            html=fixtures.HTML,
        ),
    )
    return [builder.build(r) for r in _recipients(count)]


def _bare(
    work: Path, messages: list[BuiltMessage], connections: int, relay: str = "test", **options
) -> Timing:
    """smtplib over `connections` connections at once (a thread each), pre-built."""

    def loop(port: int) -> tuple[int, float]:
        shares = [messages[i::connections] for i in range(connections)]
        errors: list[BaseException] = []

        def send(share: list[BuiltMessage]) -> None:
            try:
                smtp = smtplib.SMTP("127.0.0.1", port)
                smtp.ehlo()
                for message in share:
                    smtp.sendmail(message.envelope_from, [message.to], message.raw)
                smtp.quit()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(share,)) for share in shares]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return len(messages), time.perf_counter() - started

    where = "a plain aiosmtpd handler" if relay == "plain" else "the test relay"
    delay = options.get("delay_ms", 0)
    label = f"bare smtplib, {connections} connection(s), into {where}, delay {delay} ms"
    return _measure(work, label, loop, relay, **options)


def _flask_mail_loop(work: Path, port: int, count: int) -> tuple[int, float]:
    app = fixtures.make_app(f"sqlite:///{work / 'unused.db'}", work, smtp_port=port, migrated=False)
    sender = app.config["MAILPREFS_MARKETING_FROM"]
    rendered = [
        (r.email, f"<https://mail.example.com/u/{r.public_id}>") for r in _recipients(count)
    ]
    subject, text, html = (
        t.replace("{{ first_name }}", "Ann")
        for t in (fixtures.SUBJECT, fixtures.TEXT, fixtures.HTML)
    )
    with app.app_context():
        started = time.perf_counter()
        for to, unsubscribe in rendered:
            mail.send(
                Message(
                    subject,
                    sender=sender,
                    recipients=[to],
                    body=text,
                    html=html,
                    extra_headers={
                        "List-Unsubscribe": unsubscribe,
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    },
                )
            )
        return count, time.perf_counter() - started


# --- run-due -------------------------------------------------------------------------


def _run_due_sqlite(
    work: Path, count: int, *, pool: int, env: dict[str, str] | None = None, delay_ms: int = 0
) -> Timing:
    with fixtures.scratch_database("sqlite", work) as url:
        app = fixtures.make_app(url, work)
        fixtures.populate(url, count, mix=False, quiet=True)
        fixtures.schedule_campaign(app)
        get_db(app).dispose()
        extra = " (DKIM)" if env else ""
        label = f"run-due SQLite, pool of {pool}, delay {delay_ms} ms{extra}"
        return _run_due(work, url, count, 1, label, pool=pool, env=env, delay_ms=delay_ms)


def _run_due_postgres(work: Path, count: int, *, workers: int, delay_ms: int, pool: int) -> Timing:
    with fixtures.scratch_database("postgresql", work) as url:
        app = fixtures.make_app(url, work)
        fixtures.populate(url, count, mix=False, quiet=True)
        fixtures.schedule_campaign(app)
        worker = Worker(app)
        worker.fire_due()
        worker.expand_all()
        get_db(app).dispose()
        label = f"run-due PostgreSQL, pool of {pool}, delay {delay_ms} ms"
        return _run_due(work, url, count, workers, label, pool=pool, delay_ms=delay_ms)


def _run_due(
    work: Path,
    url: str,
    count: int,
    workers: int,
    label: str,
    *,
    pool: int,
    env: dict[str, str] | None = None,
    delay_ms: int = 0,
) -> Timing:
    relays = [
        start_sink_process(work / f"sink{i}", count_only=True, delay_ms=delay_ms)
        for i in range(workers)
    ]
    peaks = [0] * workers
    try:
        started = time.perf_counter()
        runs = [
            fixtures.flask_process(
                ["mailprefs", "run-due", "--quiet"],
                fixtures.environment(
                    url,
                    work,
                    smtp_port=port,
                    MAILPREFS_SMTP_CONNECTIONS=str(pool),
                    **(env or {}),
                ),
                work / f"run-due-{i}.log",
            )
            for i, (_proc, port) in enumerate(relays)
        ]
        deadline = time.monotonic() + 1800
        while any(run.poll() is None for run in runs) and time.monotonic() < deadline:
            for i, run in enumerate(runs):
                peaks[i] = max(peaks[i], _vm_hwm_kb(run.pid))
            time.sleep(0.05)
        codes = [run.wait(timeout=60) for run in runs]
        seconds = time.perf_counter() - started
    finally:
        reports = [stop_and_count(proc) for proc, _port in relays]
    logs = [(work / f"run-due-{i}.log").read_text() for i in range(workers)]
    if any(codes):
        raise RuntimeError(f"{label}: run-due failed: {logs}")
    _check(label, sum(r["accepted"] for r in reports), count)
    timing = Timing(count, seconds, reports, [kb / 1024 for kb in peaks])
    shares = ", ".join(f"{r['accepted']:,}" for r in reports)
    print(
        f"   {label}, {workers} process(es): {count:,} messages, {timing.rate:,.0f} msg/s "
        f"(per process: {shares}; peak RSS {', '.join(f'{m:.0f}' for m in timing.peak_mb)} MB)",
        flush=True,
    )
    return timing


def _vm_hwm_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0
