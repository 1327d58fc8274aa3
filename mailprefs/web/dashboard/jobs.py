"""Jobs: every scheduled job, its next run and what it will do; pause, resume, cancel,
run now.

Everything goes through `mailprefs.scheduling.view`: campaigns and policy notices through
the campaign rules (as the API), recurring jobs in APScheduler's job store (no running
scheduler needed). The view writes the audit entries (`campaign.*`, `scheduler.*`, with
the logged-in user as actor), so this module records nothing of its own for a control.

Pausing a recurring job is for admins: it is a switch for the whole service (a paused
`fire-due` starts no campaign and no policy notice, a paused `compact-erasures` leaves
erased values in free space), not a step into one send. Ops may resume and run them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import abort, current_app, flash, redirect, render_template, url_for
from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.outbox_models import Campaign, PolicyVersion
from mailprefs.extensions import db_session, get_db
from mailprefs.scheduling import view
from mailprefs.scheduling.view import JobView
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import actor, is_admin
from mailprefs.web.dashboard.forms import ActionForm

ACTIONS = {
    "pause": view.pause_job,
    "resume": view.resume_job,
    "cancel": view.cancel_job,
    "run-now": view.run_now,
}
DONE = {
    "pause": "Paused: {name}.",
    "resume": "Resumed: {name}.",
    "cancel": "Cancelled: {name}. What was not sent will not be sent.",
    # Campaigns and notices start at fire-due's next tick; a recurring job at the
    # scheduler's next wake-up. Either is seconds away while a scheduler runs.
    "run-now": "Run now: {name} starts within a few seconds.",
}
# Which buttons a job offers, by kind and state (the view refuses the rest anyway).
SENDS = {
    "scheduled": ("run-now", "pause", "cancel"),
    "sending": ("pause", "cancel"),
    "paused": ("resume", "cancel"),
}
RECURRING = {"scheduled": ("run-now", "pause"), "paused": ("resume",), "not_started": ()}
ADMIN_ONLY = {("recurring", "pause")}
# Jobs that, paused, hold back every send or notice: the page says so at the top.
HOLDS_SENDS = {
    "fire-due": "no scheduled campaign or policy notice starts",
    "policy-broadcasts": "running policy notices take in nobody who registers now",
}


@dataclass
class JobRow:
    job: JobView
    timing: str | None  # None (not scheduled) | "later" | "now" | "overdue"
    controls: tuple[str, ...]
    progress_id: str | None  # the campaign whose progress page shows this job


def _end_request_transaction() -> None:
    """End the request's transaction before the view opens its own. On SQLite the
    request's session has held the write lock since the login was loaded, and the view's
    transactions (and APScheduler's job store, which begins one even to read) would wait
    for it. Commit, not rollback: the loaded login stays usable for the page."""
    db_session().commit()


def _grace() -> timedelta:
    """How late a due job may be before it is overdue: `fire-due` follows campaigns and
    notices every tick, so a job still waiting after a few ticks means no scheduler is
    firing (or `fire-due` is paused)."""
    tick = current_app.config["MAILPREFS_SCHEDULER_TICK_SECONDS"]
    return timedelta(seconds=max(60, 3 * tick))


def _timing(job: JobView, grace: timedelta) -> str | None:
    if job.next_run is None:
        return None
    # APScheduler keeps real time; campaigns and notices follow the service's clock.
    now = datetime.now(UTC) if job.kind == "recurring" else clock.now()
    if job.next_run > now:
        return "later"
    return "now" if now - job.next_run <= grace else "overdue"


def _controls(job: JobView, timing: str | None) -> tuple[str, ...]:
    offered = (RECURRING if job.kind == "recurring" else SENDS).get(job.state, ())
    return tuple(
        action
        for action in offered
        # Running now what is already due changes nothing.
        if not (action == "run-now" and timing in ("now", "overdue"))
        and ((job.kind, action) not in ADMIN_ONLY or is_admin())
    )


def _progress_ids(listed: list[JobView]) -> dict[str, str]:
    """Job id -> the public id of the campaign whose progress page shows it."""
    ids = {j.id: j.target for j in listed if j.kind == "campaign" and j.target}
    versions = [j.target for j in listed if j.kind == "policy" and j.target]
    if versions:
        with get_db().session(read_only=True) as session:
            rows = session.execute(
                select(PolicyVersion.version, Campaign.public_id)
                .join(Campaign, PolicyVersion.campaign_id == Campaign.id)
                .where(PolicyVersion.version.in_(versions))
            ).all()
        ids.update({f"policy:{version}": public_id for version, public_id in rows})
    return ids


@bp.get("/jobs")
def jobs():
    _end_request_transaction()
    listed = view.list_jobs(current_app._get_current_object())
    grace = _grace()
    progress_ids = _progress_ids(listed)
    rows = []
    for job in listed:
        timing = _timing(job, grace)
        rows.append(JobRow(job, timing, _controls(job, timing), progress_ids.get(job.id)))
    recurring = [r for r in rows if r.job.kind == "recurring"]
    return render_template(
        "dashboard/jobs.html",
        sends=[r for r in rows if r.job.kind != "recurring"],
        recurring=recurring,
        not_started=any(r.job.state == "not_started" for r in recurring),
        overdue=any(r.timing == "overdue" for r in rows),
        holding=[
            (r.job.id, HOLDS_SENDS[r.job.id])
            for r in recurring
            if r.job.state == "paused" and r.job.id in HOLDS_SENDS
        ],
        admin_only_pause=not is_admin(),
    )


@bp.post("/jobs/<job_id>/<action>")
def job_control(job_id: str, action: str):
    if action not in ACTIONS:
        abort(404)
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    recurring = not job_id.startswith(("campaign:", "policy:"))
    if recurring and (("recurring", action) in ADMIN_ONLY) and not is_admin():
        abort(403, "Only an admin may pause a service job: it stops work for every send.")
    _end_request_transaction()
    app = current_app._get_current_object()
    name = next((j.name for j in view.list_jobs(app) if j.id == job_id), job_id)
    try:
        ACTIONS[action](app, job_id, actor())
    except NotFound:
        abort(404)
    except (Conflict, Invalid) as exc:  # Invalid: a guard-paused campaign needs a note
        flash(f"{name}: {exc.detail}", "error")
    else:
        flash(DONE[action].format(name=name))
    return redirect(url_for("dashboard.jobs", _anchor=f"job-{job_id}"))
