"""The scheduler process: stand by, get elected, run APScheduler while leading.

Any number of `flask --app wsgi mailprefs scheduler` processes may run. Each polls the
`scheduler` lease every third of its length. The one that holds it starts an APScheduler
`BackgroundScheduler` on the shared job store (SQLAlchemyJobStore on our own database);
the others run no APScheduler at all, because a job store must never be shared by two
running schedulers (APScheduler's FAQ). A leader that fails to renew, or finds its token
superseded, shuts its APScheduler down at once; on SIGTERM it lets running jobs finish,
then releases the lease so a standby takes over at its next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from mailprefs.extensions import get_db
from mailprefs.logs import event
from mailprefs.scheduling import jobs
from mailprefs.scheduling.leader import Leadership

log = logging.getLogger("mailprefs.scheduler")

JOBS_TABLE = "apscheduler_jobs"
# A job that fell due while no scheduler ran runs once when one starts: however late
# (no grace limit), and however many runs it missed (coalesced into one).
JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}


class JobStore(SQLAlchemyJobStore):
    """APScheduler's SQLAlchemy job store on the app's engine (the table is ours:
    Alembic creates it). Shutting the store down must not dispose the app's engine."""

    def __init__(self, db) -> None:
        super().__init__(engine=db.engine, tablename=JOBS_TABLE)

    def shutdown(self) -> None:
        pass


def make_scheduler(db, *, threads: int = 4) -> BackgroundScheduler:
    return BackgroundScheduler(
        jobstores={"default": JobStore(db)},
        executors={"default": ThreadPoolExecutor(threads)},
        job_defaults=dict(JOB_DEFAULTS),
        timezone=UTC,
    )


def ensure_recurring(scheduler: BackgroundScheduler, app: Flask, dialect: str) -> None:
    """Store each recurring job with its current definition (replace_existing=True),
    keeping the stored next run time: a pause made from the dashboard survives, and a
    run missed while no scheduler ran stays due (and fires once, coalesced)."""
    wanted = {r.id: r for r in jobs.recurring_jobs(dialect)}
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            scheduler.remove_job(job.id)
    for recurring in wanted.values():
        existing = scheduler.get_job(recurring.id)
        keep = {} if existing is None else {"next_run_time": existing.next_run_time}
        scheduler.add_job(
            recurring.func,
            trigger=recurring.trigger(app.config),
            id=recurring.id,
            name=recurring.name,
            replace_existing=True,
            **keep,
        )


class SchedulerService:
    """One scheduler process (or the thread of one, in `make run`)."""

    def __init__(self, app: Flask, *, holder: str | None = None) -> None:
        self.app = app
        self.db = get_db(app)
        seconds = app.config["MAILPREFS_SCHEDULER_LEASE_SECONDS"]
        self.leadership = Leadership(self.db, seconds=seconds, holder=holder)
        self.heartbeat = max(seconds / 3, 0.5)
        self.lease_seconds = seconds
        self.stop = threading.Event()
        self.scheduler: BackgroundScheduler | None = None
        self._last_renewal = 0.0

    @property
    def holder(self) -> str:
        return self.leadership.holder

    @property
    def is_leader(self) -> bool:
        return self.scheduler is not None

    def step(self) -> None:
        """One heartbeat: renew (leader) or try to take over (standby)."""
        try:
            if self.scheduler is not None:
                if self.leadership.renew():
                    self._last_renewal = time.monotonic()
                else:
                    event(log, "scheduler.lease_lost", logging.WARNING, holder=self.holder)
                    self._stand_down(wait=False)
            elif self.leadership.acquire():
                self._last_renewal = time.monotonic()
                self._take_office()
        except Exception:  # noqa: BLE001 - a scheduler outlives a failed heartbeat
            log.exception(
                "scheduler.heartbeat_failed", extra={"mailprefs_fields": {"holder": self.holder}}
            )
            # Without a renewal we may have been replaced: stop before our lease runs out.
            if self.scheduler is not None and (
                time.monotonic() - self._last_renewal > self.lease_seconds - self.heartbeat
            ):
                event(log, "scheduler.cannot_renew", logging.WARNING, holder=self.holder)
                self._stand_down(wait=False)
                self.leadership.token = None

    def run_forever(self) -> None:
        """Until `stop` is set: poll, lead when elected; then shut down cleanly."""
        event(log, "scheduler.standing_by", holder=self.holder)
        try:
            while not self.stop.is_set():
                self.step()
                self.stop.wait(self.heartbeat)
        finally:
            self.shutdown()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="mailprefs-scheduler", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        """Let running jobs finish, then give up the lease for a standby to take."""
        if self.scheduler is not None:
            self._stand_down(wait=True)
        try:
            self.leadership.release()
        except SQLAlchemyError:
            log.exception(
                "scheduler.release_failed", extra={"mailprefs_fields": {"holder": self.holder}}
            )
        event(log, "scheduler.stopped", holder=self.holder)

    def _take_office(self) -> None:
        scheduler = make_scheduler(self.db)
        jobs.install(self)
        try:
            scheduler.start(paused=True)
            ensure_recurring(scheduler, self.app, self.db.engine.dialect.name)
            scheduler.resume()
        except Exception:
            jobs.install(None)
            if scheduler.running:
                scheduler.shutdown(wait=False)
            self.leadership.release()
            raise
        self.scheduler = scheduler
        event(log, "scheduler.elected", holder=self.holder, fencing_token=self.leadership.token)

    def _stand_down(self, *, wait: bool) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if not wait:
            jobs.install(None)  # replaced: running jobs must not start another step
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=wait)
        jobs.install(None)
