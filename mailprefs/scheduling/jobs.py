"""The scheduler's jobs: thin functions that move database state and outbox rows.

APScheduler keeps them in the `apscheduler_jobs` table, referenced by text
("mailprefs.scheduling.jobs:fire_due"), so a job outlives the process that added it.
They send nothing: workers send. Each job runs only while this process leads: it checks
its lease and fencing token inside its own transaction (`guarded`) and does nothing if
another scheduler has taken over. Firing is also idempotent at the database
(`campaigns.fire_due` is a conditional UPDATE), so even a stale leader cannot fire a
campaign twice.

Campaigns and policy notices get no job of their own: their rows are the schedule
(`status='scheduled'`, `send_at`), and `fire-due` starts whatever is due, every few
seconds. A notice or campaign that fell due while no scheduler ran is simply due at the
next tick, and fires once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, Protocol

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.db import Database
from mailprefs.delivery import expand
from mailprefs.domain import campaigns as campaign_rules
from mailprefs.domain import policies
from mailprefs.domain.outbox_models import Campaign
from mailprefs.logs import event
from mailprefs.scheduling import housekeeping
from mailprefs.scheduling.leader import Leadership

log = logging.getLogger("mailprefs.scheduler")


class Runtime(Protocol):
    """What a job needs of the scheduler process that runs it."""

    app: Flask
    db: Database
    leadership: Leadership


_runtime: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    """Set (or clear) the process's elected scheduler; jobs refuse to run without one."""
    global _runtime
    _runtime = runtime


class NotLeader(RuntimeError):
    """This process no longer holds the scheduler lease: the job must do nothing."""


@contextmanager
def guarded() -> Iterator[tuple[Runtime, Session]]:
    """A transaction that commits only if this process still leads (fencing check first)."""
    runtime = _runtime
    if runtime is None:
        raise NotLeader("no elected scheduler in this process")
    with runtime.db.transaction() as session:
        if not runtime.leadership.guard(session):
            raise NotLeader(f"{runtime.leadership.holder} no longer holds the scheduler lease")
        yield runtime, session


def _job(func: Callable[[], Any]) -> Callable[[], Any]:
    """A job that finds it is no longer the leader stops quietly (no traceback)."""

    @functools.wraps(func)
    def run() -> Any:
        try:
            return func()
        except NotLeader:
            event(log, "job.skipped_not_leader", logging.WARNING, job=func.__name__)
            return None

    return run


@_job
def fire_due() -> int:
    """Start every campaign and policy notice whose time has come (the function that
    `run-due` uses too), and mark finished those with nothing left to send."""
    with guarded() as (_, session):
        fired = campaign_rules.fire_due(session, clock.now())
        started = (
            session.execute(
                select(Campaign.kind, Campaign.public_id).where(Campaign.id.in_(fired))
            ).all()
            if fired
            else []
        )
    for kind, public_id in started:
        event(log, "campaign.fired", kind=kind.value, campaign=public_id)
    with guarded() as (_, session):
        campaign_rules.finish_sent(session, clock.now())
    return len(fired)


@_job
def policy_broadcasts() -> int:
    """Expand running policy notices into the outbox: at first everyone, then whoever
    registered since, until the policy takes effect; then the expansion is marked done.
    (Workers expand too; the campaign's expansion lease keeps it to one at a time.)"""
    with guarded() as (_, session):
        pending = policies.open_broadcasts(session)
    covered_total = 0
    for campaign_id in pending:
        while True:
            with guarded() as (runtime, session):
                config = runtime.app.config
                now = clock.now()
                seconds = config["MAILPREFS_LEASE_SECONDS"]
                owner = f"scheduler:{runtime.leadership.holder}"
                covered = expand.expand_step(
                    session,
                    campaign_id,
                    owner=owner,
                    now=now,
                    batch=config["MAILPREFS_EXPANSION_BATCH_SIZE"],
                    lease_seconds=seconds,
                )
                if covered == -1:
                    session.rollback()
                    break
            if covered == 0:
                break
            covered_total += covered
    return covered_total


@_job
def housekeeping_job() -> tuple[int, int]:
    """Cancel confirmation mails too stale to send; prune old idempotency records."""
    with guarded() as (runtime, session):
        now = clock.now()
        max_age = timedelta(hours=runtime.app.config["MAILPREFS_CONFIRM_MAX_AGE_HOURS"])
        cancelled = housekeeping.cancel_stale_confirmations(session, now, max_age)
        pruned = housekeeping.prune_idempotency(session, now)
    event(log, "job.housekeeping", stale_confirmations=cancelled, idempotency_pruned=pruned)
    return cancelled, pruned


@_job
def compact_erasures() -> int:
    """PostgreSQL: rewrite the tables erasure touches (VACUUM FULL) when there were
    erasures since the last time, so no erased value stays in a page's free space."""
    with guarded() as (runtime, session):
        started = clock.now()
        erasures = housekeeping.erasures_since_compaction(session, started)
    if erasures:
        runtime.db.compact()
        with guarded() as (_, session):
            housekeeping.record_compaction(session, started, erasures)
    event(log, "job.compaction", erasures=erasures)
    return erasures


@_job
def fetch_bounces_job() -> int:
    """Read the bounce mailbox once (when configured): what `mailprefs fetch-bounces`
    does. Nothing is held open between runs; a mailbox that cannot be read is logged and
    tried again at the next run."""
    from mailprefs.delivery.mailbox import BounceMailbox, configured, describe

    with guarded() as (runtime, _session):
        app = runtime.app
    if not configured(app.config):
        return 0
    try:
        summary = BounceMailbox(runtime.db, app.config).fetch()
    except Exception as exc:  # the mailbox is elsewhere: its failures are not ours to raise
        log.warning("bounce mailbox %s not read: %s", describe(app.config), exc)
        return 0
    log.info("bounce mailbox read: %s", summary.line())
    return summary.recorded


# --- the recurring jobs ------------------------------------------------------------------


@dataclass(frozen=True)
class Recurring:
    id: str
    func: str  # "module:function", as stored in the job store
    name: str
    description: str
    trigger: Callable[[Mapping[str, Any]], BaseTrigger]
    postgres_only: bool = False


RECURRING: tuple[Recurring, ...] = (
    Recurring(
        id="fire-due",
        func="mailprefs.scheduling.jobs:fire_due",
        name="Fire due campaigns and policy notices",
        description="Every few seconds: start each scheduled campaign and policy notice "
        "whose time has come (once: a conditional UPDATE), and mark finished ones sent.",
        trigger=lambda c: IntervalTrigger(seconds=c["MAILPREFS_SCHEDULER_TICK_SECONDS"]),
    ),
    Recurring(
        id="policy-broadcasts",
        func="mailprefs.scheduling.jobs:policy_broadcasts",
        name="Keep policy notices expanding",
        description="Every few seconds: add people who registered since a policy notice "
        "started to its outbox, until the policy takes effect; then finish the notice.",
        trigger=lambda c: IntervalTrigger(seconds=c["MAILPREFS_SCHEDULER_TICK_SECONDS"]),
    ),
    Recurring(
        id="housekeeping",
        func="mailprefs.scheduling.jobs:housekeeping_job",
        name="Housekeeping",
        description="Cancel confirmation mails still queued after their link would have "
        "expired; forget Idempotency-Key answers older than a day.",
        trigger=lambda c: IntervalTrigger(minutes=c["MAILPREFS_HOUSEKEEPING_MINUTES"]),
    ),
    Recurring(
        id="fetch-bounces",
        func="mailprefs.scheduling.jobs:fetch_bounces_job",
        name="Read the bounce mailbox",
        description="Every few minutes, when MAILPREFS_BOUNCE_IMAP_URL is set: record each "
        "DSN and ARF report in the bounce mailbox, delete what was recorded, move the rest "
        "aside.",
        trigger=lambda c: IntervalTrigger(minutes=c["MAILPREFS_BOUNCE_FETCH_MINUTES"]),
    ),
    Recurring(
        id="compact-erasures",
        func="mailprefs.scheduling.jobs:compact_erasures",
        name="Compact erased data (PostgreSQL)",
        description="Once a day, when there were erasures: VACUUM FULL the tables erasure "
        "touches, so no erased value is left in free space.",
        trigger=lambda c: CronTrigger(hour=c["MAILPREFS_COMPACT_HOUR"], minute=30, timezone=UTC),
        postgres_only=True,
    ),
)


def recurring_jobs(dialect: str) -> tuple[Recurring, ...]:
    return tuple(r for r in RECURRING if dialect == "postgresql" or not r.postgres_only)
