"""One-click unsubscribe (RFC 8058): `POST /u/{token}` under gunicorn, driven by wrk.

For each database (SQLite, and PostgreSQL where reachable), on one scratch database:

- baseline: `bench/oneclick_baseline.py`, a bare Flask app that verifies the same kind of
  token and runs one UPDATE on the same database with the same engine settings;
- mailprefs: `gunicorn wsgi:app`, the real service in production mode, which also checks
  the person and topic, appends a consent event (IP, user agent, policy version,
  campaign) and moves the projection, then answers.

Both run as `gunicorn -w 2`, and wrk drives them with `-t2 -c16 -d15s --latency`. This is
a 2-core machine: the servers and wrk share the cores (and with whatever else runs), so
the two apps are measured in turn, three rounds each, and each app's figure is its best
round (the one least disturbed by other processes, as `timeit` takes the minimum).
Server CPU per request (the workers' user + system time from /proc, median of the
rounds) is printed too: it hardly moves with the load of other processes.

Each request is the body `List-Unsubscribe=One-Click` on a token of its own: the
population holds enough distinct people that every request is a first opt-out, which
writes (a repeated POST for the same person writes nothing, by design, and would flatter
the service; the tests cover it). A short warm-up on tokens of its own comes first.

Environment: MAILPREFS_BENCH_ONECLICK_SECONDS (default 15; 5 with --quick),
MAILPREFS_BENCH_ONECLICK_ROUNDS (default 3; 1 with --quick),
MAILPREFS_BENCH_ONECLICK_FULL=1 also measures both apps on SQLite with
`synchronous=FULL` (the durability figures of docs/performance-2026-11.md; no target). Needs /usr/bin/wrk
(`apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import sqlalchemy as sa

from bench import fixtures, gunicorn
from bench.common import Figure
from mailprefs.config import secret_keys
from mailprefs.domain.tokens import TokenService

CONNECTIONS = 16
THREADS = 2  # wrk's threads; the machine has 2 cores shared with the server
WORKERS = 2
WARMUP_SECONDS = 2
MIN_RATIO = 0.7
P99_LIMIT_MS = 50.0
# Most requests a second either app could plausibly serve here, times a margin: the
# population must outlast the run so that every request is a first opt-out.
PEAK_RATE = 3_000

LUA = r"""
-- POST List-Unsubscribe=One-Click to /u/TOKEN; the threads take turns through the
-- token file (thread k takes lines k+1, k+1+THREADS, ...), so no token is sent twice.
function init(args)
  tokens = {}
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  step = tonumber(args[2])
  i = id
  wrk.method = "POST"
  wrk.body = "List-Unsubscribe=One-Click"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
function request()
  local token = tokens[(i % #tokens) + 1]
  i = i + step
  return wrk.format(nil, "/u/" .. token)
end
"""


def main(args: argparse.Namespace) -> list[Figure]:
    seconds = int(os.environ.get("MAILPREFS_BENCH_ONECLICK_SECONDS", "5" if args.quick else "15"))
    rounds = int(os.environ.get("MAILPREFS_BENCH_ONECLICK_ROUNDS", "1" if args.quick else "3"))
    figures: list[Figure] = []
    with gunicorn.workdir("oneclick", LUA) as workdir:
        for kind in gunicorn.databases():
            figures += _measure(workdir, kind, seconds, rounds, "NORMAL", targets=True)
        if os.environ.get("MAILPREFS_BENCH_ONECLICK_FULL") == "1":
            figures += _measure(workdir, "sqlite", seconds, rounds, "FULL", targets=False)
    return figures


APPS = {"baseline": "bench.oneclick_baseline:create_app()", "mailprefs": "wsgi:app"}


def _measure(
    workdir: Path, kind: str, seconds: int, rounds: int, synchronous: str, *, targets: bool
) -> list[Figure]:
    """Both servers on one scratch database, measured in turn `rounds` times (baseline,
    mailprefs, baseline, ...): on a shared machine, load that comes and goes then falls
    on both alike. Each figure is the app's best round."""
    label = kind if kind == "postgresql" else f"sqlite, synchronous={synchronous}"
    per_run = seconds * PEAK_RATE
    slices = {f"{name}-warmup": WARMUP_SECONDS * PEAK_RATE for name in APPS}
    slices.update({f"{name}-{i}": per_run for i in range(rounds) for name in APPS})
    with fixtures.scratch_database(kind, workdir) as url:
        fixtures.make_app(url, workdir)  # topics and the policy in force
        fixtures.populate(url, sum(slices.values()), mix=False)
        files = _token_files(workdir, slices)
        env = fixtures.environment(url, workdir, MAILPREFS_SQLITE_SYNCHRONOUS=synchronous)
        before = _one_click_events(url)

        def run(base_url: str, label: str, secs: int) -> dict[str, float]:
            return _wrk(base_url, workdir, files[label], secs)

        timing = (rounds, seconds, WARMUP_SECONDS)
        measured = gunicorn.measure(APPS, env, workdir, WORKERS, timing, run)
        recorded = _one_click_events(url) - before
    sent = measured.sent("mailprefs")
    measured.report(label, f"{recorded:,} consent events for {sent:,} one-click POSTs")
    # Every POST is a first opt-out, so each records one consent event.
    measured.check(recorded, CONNECTIONS, f"{label}: consent events")
    name = f"one-click POST, {label}, gunicorn -w {WORKERS}, wrk -t{THREADS} -c{CONNECTIONS}"
    return measured.figures(
        name,
        "bare Flask + 1 UPDATE",
        min_ratio=MIN_RATIO if targets else None,
        p99_limit=P99_LIMIT_MS if targets else None,
    )


def _token_files(workdir: Path, slices: dict[str, int]) -> dict[str, Path]:
    """One file of unsubscribe tokens per run, for disjoint slices of the population
    (`populate` numbers people 1..n with public ids `pub%012d`, all opted in to offers),
    so that no token is used twice in the whole benchmark."""
    tokens = TokenService(
        secret_keys(fixtures.SECRET_KEY), unsubscribe_max_age=86400, confirm_max_age=3600
    )
    files, start = {}, 1
    for name, count in slices.items():
        path = workdir / f"tokens-{name}.txt"
        with path.open("w") as handle:
            for n in range(start, start + count):
                handle.write(tokens.unsubscribe(f"pub{n:012d}", "offers", "cmp_bench") + "\n")
        files[name] = path
        start += count
    return files


def _wrk(url: str, workdir: Path, tokens: Path, seconds: int) -> dict[str, float]:
    return gunicorn.wrk(url, workdir, seconds, THREADS, CONNECTIONS, str(tokens), str(THREADS))


def _one_click_events(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text("SELECT count(*) FROM consent_events WHERE source = 'one_click'")
            ).scalar_one()
    finally:
        engine.dispose()
