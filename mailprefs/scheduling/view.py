"""What the dashboard shows and controls of the schedule, from any process.

Three kinds of job:

- `campaign:<public id>`: a scheduled, sending or paused campaign;
- `policy:<version>`: a policy notice (its broadcast campaign);
- recurring jobs (`fire-due`, `policy-broadcasts`, `housekeeping`, `compact-erasures`).

Campaigns and notices are acted on through the same domain code as the API
(`campaigns.pause/resume/cancel/schedule`): their rows are the schedule, and the running
scheduler's `fire-due` tick follows them. Recurring jobs are changed in APScheduler's job
store directly, which works without a running scheduler (the leader reads the store at
each wake-up, at most a tick away). Errors are the domain's: NotFound, Conflict.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit, campaigns, policies
from mailprefs.domain.errors import Conflict, NotFound
from mailprefs.domain.outbox_models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    PolicyVersion,
)
from mailprefs.extensions import get_db
from mailprefs.scheduling import jobs
from mailprefs.scheduling.service import JobStore

ACTIVE = (CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.PAUSED)


@dataclass
class JobView:
    id: str
    kind: str  # "campaign" | "policy" | "recurring"
    name: str
    next_run: datetime | None
    state: str  # campaigns: scheduled | sending | paused; recurring: scheduled | paused |
    #             not_started (no scheduler has run yet)
    target: str | None  # campaign public id / policy version
    description: str


def list_jobs(app: Flask) -> list[JobView]:
    """Every active campaign and notice (soonest first), then the recurring jobs."""
    db = get_db(app)
    views: list[JobView] = []
    with db.session(read_only=True) as session:
        rows = session.execute(
            select(Campaign, PolicyVersion)
            .outerjoin(PolicyVersion, PolicyVersion.campaign_id == Campaign.id)
            .where(
                Campaign.kind.in_((CampaignKind.CAMPAIGN, CampaignKind.POLICY)),
                Campaign.status.in_(ACTIVE),
            )
            .order_by(Campaign.send_at, Campaign.id)
        ).all()
        for campaign, policy in rows:
            views.append(_campaign_view(session, campaign, policy))
    store = _store(app)
    for recurring in jobs.recurring_jobs(db.engine.dialect.name):
        job = store.lookup_job(recurring.id)
        if job is None:
            state, next_run = "not_started", None
        else:
            next_run = job.next_run_time
            state = "paused" if next_run is None else "scheduled"
        views.append(
            JobView(
                id=recurring.id,
                kind="recurring",
                name=recurring.name,
                next_run=next_run,
                state=state,
                target=None,
                description=recurring.description,
            )
        )
    return views


def paused_recurring(app: Flask) -> set[str]:
    """The recurring jobs that are paused now (not those no scheduler has created yet)."""
    store = _store(app)
    paused = set()
    for recurring in jobs.recurring_jobs(get_db(app).engine.dialect.name):
        job = store.lookup_job(recurring.id)
        if job is not None and job.next_run_time is None:
            paused.add(recurring.id)
    return paused


def _campaign_view(session: Session, campaign: Campaign, policy: PolicyVersion | None) -> JobView:
    stats = campaigns.stats(session, campaign)
    progress = f"{stats['sent']} sent, {stats['pending']} pending of {stats['planned']} planned"
    next_run = campaign.send_at if campaign.status == CampaignStatus.SCHEDULED else None
    if policy is not None:
        what = "transfer of data" if policy.kind.value == "transfer" else "policy change"
        return JobView(
            id=f"policy:{policy.version}",
            kind="policy",
            name=policy.title,
            next_run=next_run,
            state=campaign.status.value,
            target=policy.version,
            description=f"Notice of a {what} to every registered person; takes effect "
            f"{policy.effective_at:%Y-%m-%d %H:%M} UTC. {progress}.",
        )
    return JobView(
        id=f"campaign:{campaign.public_id}",
        kind="campaign",
        name=campaign.subject,
        next_run=next_run,
        state=campaign.status.value,
        target=campaign.public_id,
        description=f"Campaign on topic {campaign.topic.slug}. {progress}.",
    )


def pause_job(app: Flask, job_id: str, actor: str) -> None:
    if _is_campaign(job_id):
        _act(app, job_id, actor, campaigns.pause)
        return
    _modify_recurring(app, job_id, actor, "pause")


def resume_job(app: Flask, job_id: str, actor: str) -> None:
    if _is_campaign(job_id):
        _act(app, job_id, actor, campaigns.resume)
        return
    _modify_recurring(app, job_id, actor, "resume")


def cancel_job(app: Flask, job_id: str, actor: str) -> None:
    """Cancel a campaign or notice (what was not sent stays unsent). Recurring jobs are
    part of the service: they can be paused, not cancelled."""
    if _is_campaign(job_id):
        _act(app, job_id, actor, campaigns.cancel)
        return
    _recurring(app, job_id)  # NotFound for an unknown id
    raise Conflict("a recurring job cannot be cancelled; pause it instead")


def run_now(app: Flask, job_id: str, actor: str) -> None:
    """Start a draft or scheduled campaign or notice now; run a recurring job at the
    scheduler's next wake-up."""
    if _is_campaign(job_id):
        _act(app, job_id, actor, _start_now)
        return
    _modify_recurring(app, job_id, actor, "run_now")


# --- campaigns and notices --------------------------------------------------------------


def _is_campaign(job_id: str) -> bool:
    return job_id.startswith(("campaign:", "policy:"))


def _start_now(session: Session, campaign: Campaign, actor: str) -> None:
    campaigns.schedule(session, campaign, None, actor)
    policy = session.scalar(select(PolicyVersion).where(PolicyVersion.campaign_id == campaign.id))
    if policy is not None:
        policy.announce_at = campaign.send_at  # earlier only: the notice period grows


def _act(app: Flask, job_id: str, actor: str, action) -> None:
    prefix, _, key = job_id.partition(":")
    with get_db(app).transaction() as session:
        if prefix == "policy":
            policy = policies.get(session, key)
            if policy.campaign is None:
                raise NotFound("this policy version was recorded without a notice")
            campaign = policy.campaign
        else:
            campaign = campaigns.get(session, key)
        action(session, campaign, actor)


# --- recurring jobs -----------------------------------------------------------------------


def _store(app: Flask) -> JobStore:
    """The job store, opened for reading and editing without running a scheduler."""
    store = JobStore(get_db(app))
    store.start(BackgroundScheduler(timezone=UTC), "default")
    return store


def _recurring(app: Flask, job_id: str) -> tuple[JobStore, Job]:
    known = {r.id for r in jobs.recurring_jobs(get_db(app).engine.dialect.name)}
    if job_id not in known:
        raise NotFound("no job with this id")
    store = _store(app)
    job = store.lookup_job(job_id)
    if job is None:
        raise Conflict("no scheduler has run yet: recurring jobs exist once one has started")
    return store, job


def _modify_recurring(app: Flask, job_id: str, actor: str, action: str) -> None:
    store, job = _recurring(app, job_id)
    # APScheduler keeps real time (not mailprefs.clock): it compares with its own clock.
    now = datetime.now(UTC)
    if action == "pause":
        job.next_run_time = None
    elif action == "resume":
        if job.next_run_time is not None:
            return
        job.next_run_time = job.trigger.get_next_fire_time(None, now)
    else:  # run_now
        if job.next_run_time is None:
            raise Conflict("the job is paused; resume it first")
        job.next_run_time = now
    store.update_job(job)
    with get_db(app).transaction() as session:
        audit.record(
            session,
            actor,
            f"scheduler.{action}",
            target_type="job",
            target_id=job_id,
            detail={"at": clock.now().isoformat()},
        )
