"""Sending: `run-due` against a bare smtplib loop and a naive Flask-Mail loop.

Every figure is messages per second into an aiosmtpd sink in its own process that
counts and writes nothing (`tests/support/smtp_sink.py --count-only`), a fresh sink per
measurement, each checked to have received exactly one message per recipient.

- baseline A: one smtplib connection, `sendmail()` in a loop, the messages built in
  advance (with the service's own MessageBuilder, so the bytes are the same);
- baseline B: the naive Flask-Mail loop, `mail.send(Message(...))` per message (a new
  connection each time), subject and bodies rendered in advance;
- `run-due`, SQLite: the real `flask --app wsgi mailprefs run-due` process (it fires
  the campaign, expands the outbox, then sends with the gate asked again and one
  durable mark per message);
- PostgreSQL: one `run-due` process against two at once, each with its own sink (as
  workers on several machines have their own relay). The campaign is fired and
  expanded beforehand: a second process would otherwise find the outbox still empty
  and exit.

The sink offers PIPELINING (RFC 2920), as Postfix and the big relays do; the
service's transport uses it (two round trips a message instead of four), the baselines
cannot (smtplib and Flask-Mail never pipeline). So `run-due` is also measured against a
sink that does not offer it, beside the targets, to show what pipelining contributes.

The targets compare send phases, timed alike for all: from the first message the
sink(s) accepted to the last. The whole `run-due` process (interpreter start, app,
firing, expansion, the final QUIT) is shown beside them, with its ratios.
"""

from __future__ import annotations

import argparse
import smtplib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask_mail import Message

from bench import fixtures
from bench.common import Figure
from mailprefs.delivery.message import MessageBuilder, message_settings
from mailprefs.delivery.types import CampaignInfo, RecipientInfo
from mailprefs.delivery.worker import Worker
from mailprefs.extensions import get_db, get_tokens, mail
from tests.support.smtp_sink import start_sink_process, stop_and_count

FULL = 20_000
QUICK = 2_000


@dataclass
class Timing:
    count: int
    wall: float  # seconds: the loop, or the processes from start to the last exit
    sinks: list[dict[str, Any]]  # each sink's count report

    @property
    def phase(self) -> float:
        """Seconds from the first message accepted (by any sink) to the last."""
        first = min(s["first_at"] for s in self.sinks if s["first_at"])
        last = max(s["last_at"] for s in self.sinks if s["last_at"])
        return last - first

    @property
    def rate(self) -> float:
        """Messages per second in the send phase (count - 1 intervals)."""
        return (self.count - 1) / self.phase

    @property
    def wall_rate(self) -> float:
        return self.count / self.wall


def main(args: argparse.Namespace) -> list[Figure]:
    count = QUICK if args.quick else FULL
    print(f"   {count:,} recipients", flush=True)
    with tempfile.TemporaryDirectory(prefix="mailprefs-bench-send-") as tmp:
        workdir = Path(tmp)
        bare = _measure(workdir, "baseline A", lambda port: _smtplib_loop(workdir, port, count))
        naive = _measure(workdir, "baseline B", lambda port: _flask_mail_loop(workdir, port, count))
        sqlite = _run_due_sqlite(workdir, count)
        unpiped = _run_due_sqlite(workdir, count, pipelining=False)
        a, b = bare.rate, naive.rate
        name = "run-due, 1 worker, SQLite"
        figures = [
            Figure("baseline A: smtplib loop, one connection, pre-built", a, "msg/s"),
            Figure("baseline B: naive Flask-Mail mail.send() loop", b, "msg/s"),
            Figure(name, sqlite.rate, "msg/s", baseline=a, baseline_name="A", min_ratio=0.6),
            Figure(name, sqlite.rate, "msg/s", baseline=b, baseline_name="B", min_ratio=3.0),
            Figure(f"{name}, whole process", sqlite.wall_rate, "msg/s", a, "A"),
            Figure(f"{name}, whole process", sqlite.wall_rate, "msg/s", b, "B"),
            Figure(f"{name}, relay without PIPELINING", unpiped.rate, "msg/s", a, "A"),
            Figure(f"{name}, relay without PIPELINING", unpiped.rate, "msg/s", b, "B"),
        ]
        if fixtures.postgres_available():
            one = _run_due_postgres(workdir, count, workers=1)
            two = _run_due_postgres(workdir, count, workers=2)
            pg = "run-due, PostgreSQL"
            figures += [
                Figure(f"{pg}, 1 worker", one.rate, "msg/s"),
                Figure(f"{pg}, 2 workers", two.rate, "msg/s", one.rate, "1 worker", 1.3),
                Figure(
                    f"{pg}, 2 workers, whole processes",
                    two.wall_rate,
                    "msg/s",
                    one.wall_rate,
                    "1 worker, whole process",
                ),
            ]
        else:
            print("   PostgreSQL unreachable: its figures are skipped", flush=True)
        return figures


def _measure(workdir: Path, label: str, loop) -> Timing:
    """Run `loop(port)` against a fresh counting sink."""
    proc, port = start_sink_process(workdir / "sink", count_only=True)
    try:
        sent, seconds = loop(port)
    finally:
        report = stop_and_count(proc)
    _check(label, report["accepted"], sent)
    timing = Timing(sent, seconds, [report])
    print(
        f"   {label}: {sent:,} messages; send phase at the sink {timing.phase:.1f} s, "
        f"the loop {seconds:.1f} s",
        flush=True,
    )
    return timing


def _check(label: str, received: int, expected: int) -> None:
    if received != expected:
        raise RuntimeError(f"{label}: the sink received {received} messages, not {expected}")


def _recipients(count: int) -> list[RecipientInfo]:
    return [
        RecipientInfo(f"pub{n:012d}", f"p{n:07d}@example.com", {"first_name": "Ann"})
        for n in range(1, count + 1)
    ]


def _smtplib_loop(workdir: Path, port: int, count: int) -> tuple[int, float]:
    app = fixtures.make_app(
        f"sqlite:///{workdir / 'unused.db'}", workdir, smtp_port=port, migrated=False
    )
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
    messages = [builder.build(r) for r in _recipients(count)]
    started = time.perf_counter()
    smtp = smtplib.SMTP("127.0.0.1", port)
    smtp.ehlo()
    for message in messages:
        smtp.sendmail(message.envelope_from, [message.to], message.raw)
    smtp.quit()
    return count, time.perf_counter() - started


def _flask_mail_loop(workdir: Path, port: int, count: int) -> tuple[int, float]:
    app = fixtures.make_app(
        f"sqlite:///{workdir / 'unused.db'}", workdir, smtp_port=port, migrated=False
    )
    sender = app.config["MAILPREFS_MARKETING_FROM"]
    rendered = [
        (
            r.email,
            fixtures.SUBJECT.replace("{{ first_name }}", "Ann"),
            fixtures.TEXT.replace("{{ first_name }}", "Ann"),
            fixtures.HTML.replace("{{ first_name }}", "Ann"),
            f"<https://mail.example.com/u/{r.public_id}>",
        )
        for r in _recipients(count)
    ]
    with app.app_context():
        started = time.perf_counter()
        for to, subject, text, html, unsubscribe in rendered:
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


def _run_due_sqlite(workdir: Path, count: int, *, pipelining: bool = True) -> Timing:
    with fixtures.scratch_database("sqlite", workdir) as url:
        app = fixtures.make_app(url, workdir)
        fixtures.populate(url, count, mix=False)
        fixtures.schedule_campaign(app)
        get_db(app).dispose()
        label = "run-due SQLite" + ("" if pipelining else ", no PIPELINING")
        return _run_due(workdir, url, count, workers=1, label=label, pipelining=pipelining)


def _run_due_postgres(workdir: Path, count: int, *, workers: int) -> Timing:
    with fixtures.scratch_database("postgresql", workdir) as url:
        app = fixtures.make_app(url, workdir)
        fixtures.populate(url, count, mix=False)
        fixtures.schedule_campaign(app)
        worker = Worker(app)
        worker.fire_due()
        worker.expand_all()
        get_db(app).dispose()
        return _run_due(workdir, url, count, workers=workers, label="run-due PostgreSQL")


def _run_due(
    workdir: Path, url: str, count: int, *, workers: int, label: str, pipelining: bool = True
) -> Timing:
    sinks = [
        start_sink_process(workdir / f"sink{i}", count_only=True, pipelining=pipelining)
        for i in range(workers)
    ]
    try:
        started = time.perf_counter()
        runs = [
            fixtures.flask_process(
                ["mailprefs", "run-due", "--quiet"],
                fixtures.environment(url, workdir, smtp_port=port),
                workdir / f"run-due-{i}.log",
            )
            for i, (_proc, port) in enumerate(sinks)
        ]
        codes = [run.wait(timeout=1800) for run in runs]
        seconds = time.perf_counter() - started
    finally:
        reports = [stop_and_count(proc) for proc, _port in sinks]
    logs = [(workdir / f"run-due-{i}.log").read_text() for i in range(workers)]
    if any(codes):
        raise RuntimeError(f"{label}: run-due failed: {logs}")
    _check(label, sum(r["accepted"] for r in reports), count)
    timing = Timing(count, seconds, reports)
    shares = ", ".join(f"{r['accepted']:,}" for r in reports)
    print(
        f"   {label}, {workers} process(es): {count:,} messages; send phase at the "
        f"sink{'s' if workers > 1 else ''} {timing.phase:.1f} s, whole process"
        f"{'es' if workers > 1 else ''} {seconds:.1f} s (per process: {shares})",
        flush=True,
    )
    for log in logs:
        print("     " + log.strip().splitlines()[-1], flush=True)
    return timing
