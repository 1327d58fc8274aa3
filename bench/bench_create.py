"""Creating one subscriber: `POST /api/v1/subscribers` under gunicorn, driven by wrk.

For each database (SQLite, and PostgreSQL where reachable), on one scratch database that
already holds a population (so the indexes have depth):

- baseline: `bench/create_baseline.py`, a bare Flask app writing the same rows (the
  person, the consent event, the topic state) in one transaction through the same
  engine settings, and answering 201;
- mailprefs: `gunicorn wsgi:app`, the real service in production mode: the key, the
  rate limiter (set high enough never to answer 429), validation and normalisation of
  the address, the erasure and suppression checks, the topics, the consent evidence
  with the policy version in force, webhooks, the policy notice check, the answer.

Both run as `gunicorn -w 2`; wrk drives them with `-t2 -c8 -d15s --latency` (8 clients,
as issue 10 measured 63 creates/s). Every request registers a new address with one
consent to a single opt-in marketing topic (the 201 path; a repeat would answer 200 and
write less). The two apps are measured in turn, three rounds each, each app's figure its
best round (bench_oneclick.py explains why); the workers' CPU per request is the median.

No target is judged: issue 10 asks for the figure beside a bare insert, and for a
faster create (issue 10's 63 creates/s is printed beside it). The aim, not reached yet
(docs/performance.md), is 0.5x the baseline's requests per second. The service does several
times the baseline's work per request (above) in Python, and the machine's 2 cores are
shared by both servers' workers and wrk, so CPU per request decides the rate: half the
bare insert's rate means the service's own work costs no more than the insert and its
HTTP round trip together.

Also measured in process (Flask's test client, no HTTP, no other process): the SQL
statements of one create and the time of one create.

Environment: MAILPREFS_BENCH_CREATE_SECONDS (default 15; 5 with --quick),
MAILPREFS_BENCH_CREATE_ROUNDS (default 3; 1 with --quick),
MAILPREFS_BENCH_CREATE_PEOPLE (population, default 100,000; 10,000 with --quick).
Needs /usr/bin/wrk.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import sqlalchemy as sa

from bench import fixtures, gunicorn
from bench.common import Figure
from mailprefs.domain import apikeys
from mailprefs.extensions import get_db

CONNECTIONS = 8
THREADS = 2
WORKERS = 2
WARMUP_SECONDS = 2
BEFORE = 63.0  # creates/s through gunicorn with 8 clients, as issue 10 measured them
IN_PROCESS = 200  # creates timed in process
APPS = {"baseline": "bench.create_baseline:create_app()", "mailprefs": "wsgi:app"}
DETAIL = "bench create"

LUA = r"""
-- POST a new person with one consent; every request a new address:
-- PREFIX-tTHREAD-N@example.com, so that no address is sent twice in the benchmark.
function init(args)
  prefix = args[1]
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[2]
end
function request()
  n = n + 1
  local body = string.format(
    '{"email": "%s-t%d-%d@example.com", "attributes": {"first_name": "Ann"}, ' ..
    '"consents": [{"topic": "offers", "source": "web_form", "source_detail": "%s", ' ..
    '"ip": "192.0.2.1", "user_agent": "Mozilla/5.0 (bench)"}]}', prefix, id, n, DETAIL)
  return wrk.format(nil, "/api/v1/subscribers", nil, body)
end
""".replace("DETAIL)", f'"{DETAIL}")')


def main(args: argparse.Namespace) -> list[Figure]:
    quick = args.quick
    seconds = int(os.environ.get("MAILPREFS_BENCH_CREATE_SECONDS", "5" if quick else "15"))
    rounds = int(os.environ.get("MAILPREFS_BENCH_CREATE_ROUNDS", "1" if quick else "3"))
    people = int(os.environ.get("MAILPREFS_BENCH_CREATE_PEOPLE", "10000" if quick else "100000"))
    figures: list[Figure] = []
    with gunicorn.workdir("create", LUA) as workdir:
        for kind in gunicorn.databases():
            figures += _measure(workdir, kind, seconds, rounds, people)
    return figures


def _measure(workdir: Path, kind: str, seconds: int, rounds: int, people: int) -> list[Figure]:
    with fixtures.scratch_database(kind, workdir) as url:
        app = fixtures.make_app(url, workdir)  # topics and the policy in force
        fixtures.populate(url, people, mix=False)
        if kind == "postgresql":  # the population's ids were given: move the sequence on
            _advance_sequence(url)
        with get_db(app).transaction() as session:
            _, key = apikeys.create(session, "marketing", "bench")
        statements, ms = _in_process(app, key)
        get_db(app).dispose()
        env = fixtures.environment(url, workdir, MAILPREFS_API_RATE_LIMIT="100000000 per minute")

        def run(base_url: str, label: str, secs: int) -> dict[str, float]:
            return _wrk(base_url, workdir, label, key, secs)

        timing = (rounds, seconds, WARMUP_SECONDS)
        measured = gunicorn.measure(APPS, env, workdir, WORKERS, timing, run)
        sent = measured.sent("mailprefs")
        recorded = _registered(url)
    measured.report(
        kind,
        f"{recorded:,} people registered with their consent for {sent:,} POSTs; "
        f"in process {statements} statements and {ms:.2f} ms per create; "
        f"population {people:,}",
    )
    measured.check(recorded, CONNECTIONS, f"{kind}: people with one consent each")
    name = f"create POST, {kind}, gunicorn -w {WORKERS}, wrk -t{THREADS} -c{CONNECTIONS}"
    return [
        *measured.figures(name, "bare Flask + the same 3 INSERTs"),
        Figure(f"{name}: mailprefs beside issue 10's figure", measured.best("mailprefs")["rate"],
               "req/s", BEFORE, "before (issue 10, 8 clients)"),
        Figure(f"create in process, {kind}: SQL statements per create", statements, "statements"),
        Figure(f"create in process, {kind}: time per create", ms, "ms"),
    ]  # fmt: skip


def _body(email: str) -> dict:
    return {
        "email": email,
        "attributes": {"first_name": "Ann"},
        "consents": [
            {
                "topic": "offers",
                "source": "web_form",
                "source_detail": "in process",
                "ip": "192.0.2.1",
                "user_agent": "Mozilla/5.0 (bench)",
            }
        ],
    }


def _in_process(app, key: str) -> tuple[int, float]:
    """Statements of one create (after a warm-up) and the mean time of IN_PROCESS creates,
    through Flask's test client (the limiter set high, as for gunicorn)."""
    app.config["MAILPREFS_API_RATE_LIMIT"] = "100000000 per minute"
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    seen: list[str] = []
    engine = get_db(app).engine

    def record(*_args) -> None:
        seen.append("")

    def post(email: str) -> None:
        reply = client.post("/api/v1/subscribers", json=_body(email), headers=headers)
        if reply.status_code != 201:
            raise SystemExit(f"in process: {reply.status_code} {reply.get_data(as_text=True)}")

    for i in range(20):
        post(f"warm-{i}@example.com")
    sa.event.listen(engine, "before_cursor_execute", record)
    post("counted@example.com")
    sa.event.remove(engine, "before_cursor_execute", record)
    started = time.perf_counter()
    for i in range(IN_PROCESS):
        post(f"timed-{i}@example.com")
    return len(seen), (time.perf_counter() - started) / IN_PROCESS * 1000


def _wrk(url: str, workdir: Path, prefix: str, key: str, seconds: int) -> dict[str, float]:
    return gunicorn.wrk(url, workdir, seconds, THREADS, CONNECTIONS, prefix, key)


def _registered(url: str) -> int:
    """People the service registered under wrk, each with exactly its one consent event
    (with the evidence sent) and its one opted-in state."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text(
                    "SELECT count(*) FROM subscribers s "
                    "JOIN consent_events e ON e.subscriber_id = s.id "
                    "AND e.source_detail = :detail AND e.ip = '192.0.2.1' "
                    "AND e.policy_version IS NOT NULL "
                    "JOIN topic_subscriptions t ON t.subscriber_id = s.id "
                    "AND t.event_id = e.id AND t.state = 'opted_in' "
                    "WHERE s.email LIKE 'mailprefs-%'"
                ),
                {"detail": DETAIL},
            ).scalar_one()
    finally:
        engine.dispose()


def _advance_sequence(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence('subscribers', 'id'), "
                    "(SELECT max(id) FROM subscribers))"
                )
            )
    finally:
        engine.dispose()
