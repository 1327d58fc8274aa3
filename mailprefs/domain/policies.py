"""Policy versions and their notices (invariant 9 of docs/architecture.md).

Announcing a version records it and creates its notice: a campaign of kind `policy` on
the administrative topic `policy`, scheduled at `announce_at`, so it leaves through the
same gate and outbox as everything else. The gate lets administrative mail reach people
who opted out of marketing and blocks the deactivated, the erased, children and hard
bounces. The delivery rows are the record of who was sent which notice, and when.

A notice keeps taking in people who register after it started, until the policy takes
effect (`accepts_newcomers`, used by the expansion and by `notify_newcomer`, which
registration calls). A transfer of data (merger, acquisition, sale of assets) is a
version of kind `transfer`, announced the same way with its own wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit, campaigns, client_time, gate
from mailprefs.domain.consent import policy_version_in_force, standing
from mailprefs.domain.errors import Conflict, Invalid, found
from mailprefs.domain.models import Subscriber
from mailprefs.domain.outbox_models import (
    PRIORITY,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    PolicyKind,
    PolicyVersion,
)
from mailprefs.domain.templating import mail_environment, one_line
from mailprefs.domain.topics import get_topic

TOPIC = "policy"
# Broadcasts that may still take people in (paused ones too: they resume later).
OPEN = (CampaignStatus.SENDING, CampaignStatus.PAUSED)


@dataclass(frozen=True)
class Announcement:
    version: str
    title: str
    summary: str
    url: str
    effective_at: datetime
    announce_at: datetime | None = None
    kind: PolicyKind = PolicyKind.CHANGE


@dataclass(frozen=True)
class NoticeSettings:
    notice_days: int
    org_name: str
    contact_email: str


def announce(
    session: Session, what: Announcement, settings: NoticeSettings, actor: str
) -> PolicyVersion:
    """Record a new version and schedule its notice. Conflict for a known version,
    Invalid (naming the field) for dates that break the notice period or the order."""
    _refuse_known(session, what.version)
    now = clock.now()
    effective_at = client_time.aware(what.effective_at, "effective_at")
    announce_at = now
    if what.announce_at is not None:
        # "Now" by the client's clock is now, as a campaign's send_at is.
        announce_at = client_time.upcoming(
            what.announce_at,
            now,
            "announce_at",
            "must not be in the past (omit it to announce now)",
        )
    _check(session, what, effective_at, announce_at, now, settings.notice_days)

    campaign = campaigns.create_scheduled(
        session,
        get_topic(session, TOPIC),
        render_notice(what, effective_at, settings),
        at=announce_at,
        actor=actor,
        kind=CampaignKind.POLICY,
        meta={
            "policy_version": what.version,
            "policy_kind": what.kind.value,
            "effective_at": effective_at.isoformat(),
        },
    )
    policy = PolicyVersion(
        version=what.version,
        title=what.title.strip(),
        summary=what.summary,
        url=what.url,
        kind=what.kind,
        effective_at=effective_at,
        announce_at=announce_at,
        created_at=now,
        created_by=actor,
        campaign_id=campaign.id,
    )
    session.add(policy)
    audit.record(
        session,
        actor,
        "policy.announce",
        target_type="policy",
        target_id=what.version,
        detail={
            "kind": what.kind.value,
            "effective_at": effective_at.isoformat(),
            "announce_at": announce_at.isoformat(),
            "campaign": campaign.public_id,
        },
    )
    session.flush()
    return policy


def _check(
    session: Session,
    what: Announcement,
    effective_at: datetime,
    announce_at: datetime,
    now: datetime,
    notice_days: int,
) -> None:
    errors: list[dict[str, str]] = []
    for field in ("title", "summary", "url"):
        if not getattr(what, field).strip():
            errors.append({"field": field, "detail": "must not be blank"})
    if what.url.strip() and not re.match(r"https?://[^\s]+$", what.url):
        errors.append({"field": "url", "detail": "must be an http(s) URL"})
    if effective_at - announce_at < timedelta(days=notice_days):
        # The earliest allowed date, as a person reads it (rounded up to the minute, so
        # that the date shown is itself allowed), rather than the announcement's timestamp.
        earliest = announce_at + timedelta(days=notice_days)
        if earliest.second or earliest.microsecond:
            earliest = earliest.replace(second=0, microsecond=0) + timedelta(minutes=1)
        errors.append(
            {
                "field": "effective_at",
                "detail": f"must be on or after {_words(earliest)}: at least {notice_days} "
                f"days after the announcement ({_words(announce_at)})",
            }
        )
    latest = session.scalar(
        standing(select(PolicyVersion)).order_by(PolicyVersion.effective_at.desc()).limit(1)
    )
    if latest is not None and effective_at <= latest.effective_at:
        errors.append(
            {
                "field": "effective_at",
                "detail": f"must be later than {_words(latest.effective_at)}, when version "
                f"{latest.version} takes effect: versions take effect in order",
            }
        )
    if errors:
        # A racing announcement of this very version may have committed since the first
        # look and now stands as the latest: the answer to the loser is 409, not 422.
        _refuse_known(session, what.version)
        raise Invalid(errors[0]["detail"], errors)


def _words(moment: datetime) -> str:
    """A time as the dashboard shows every time (UTC, to the minute)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _refuse_known(session: Session, version: str) -> None:
    if session.scalar(select(PolicyVersion.id).where(PolicyVersion.version == version)):
        raise Conflict(f"policy version {version!r} exists already")


# --- the notice's wording -----------------------------------------------------------


def _literal(rendered: str) -> str:
    """Text that a second Jinja render reproduces exactly: every `{` becomes an
    expression printing `{`, so `{{`, `{%` and `{#` in a title or summary stay text."""
    return re.sub(r"\{", '{{ "{" }}', rendered)


def render_notice(
    what: Announcement, effective_at: datetime, settings: NoticeSettings
) -> campaigns.Content:
    """Subject, text and HTML of a notice, from templates/email/policy_{kind}.*."""
    context: dict[str, Any] = {
        "version": what.version,
        "title": what.title.strip(),
        "summary": what.summary.strip(),
        "url": what.url,
        "effective_date": f"{effective_at.day} {effective_at:%B %Y}",
        "effective_at": f"{effective_at:%Y-%m-%d %H:%M} UTC",
        "org_name": settings.org_name,
        "contact_email": settings.contact_email,
    }
    # The output becomes a campaign template that the sandbox renders per recipient, so
    # `_literal` keeps values from being read as template code there.
    env = mail_environment()
    name = f"policy_{what.kind.value}"
    subject = one_line(env.get_template(f"{name}.subject.txt").render(context))
    text = env.get_template(f"{name}.txt").render(context)
    html = env.get_template(f"{name}.html").render(context)
    return campaigns.Content(_literal(subject), _literal(text), _literal(html))


# --- newcomers ------------------------------------------------------------------------


def effective_at_of(campaign: Campaign) -> datetime | None:
    raw = (campaign.meta or {}).get("effective_at")
    return datetime.fromisoformat(raw) if raw else None


def accepts_newcomers(campaign: Campaign, now: datetime) -> bool:
    """A policy notice takes in people who register later, until the policy takes effect."""
    if campaign.kind != CampaignKind.POLICY:
        return False
    effective_at = effective_at_of(campaign)
    return effective_at is not None and now < effective_at


def notify_newcomer(session: Session, subscriber: Subscriber) -> int:
    """Queue the notice of every running broadcast for a person who just registered
    (or re-registered after deactivating): they are registered before the policy takes
    effect, so they are told too. The unique (campaign, person) row makes this and the
    broadcast's own expansion add one row between them; a row blocked earlier (they were
    deactivated then) is queued again when the gate now allows it. Returns rows queued."""
    now = clock.now()
    open_broadcasts = session.scalars(
        select(Campaign).where(
            Campaign.kind == CampaignKind.POLICY,
            Campaign.status.in_(OPEN),
            Campaign.started_at.is_not(None),
        )
    ).all()
    queued = 0
    dialect = session.get_bind().dialect.name
    table = Delivery.__table__
    for campaign in open_broadcasts:
        if not accepts_newcomers(campaign, now):
            continue
        recipient = gate.load_recipient(session, subscriber.id, campaign.topic_id)
        decision = gate.decide(recipient.facts if recipient else None, campaign.topic.kind, now)
        status = DeliveryStatus.QUEUED if decision.allowed else DeliveryStatus.BLOCKED
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
        statement = insert.values(
            campaign_id=campaign.id,
            subscriber_id=subscriber.id,
            status=status.value,
            reason=decision.reason,
            priority=PRIORITY[CampaignKind.POLICY],
            attempts=0,
            next_attempt_at=now,
            decided_at=now,
        )
        if decision.allowed:
            statement = statement.on_conflict_do_update(
                index_elements=["campaign_id", "subscriber_id"],
                set_={
                    "status": DeliveryStatus.QUEUED.value,
                    "reason": None,
                    "next_attempt_at": now,
                    "decided_at": now,
                },
                where=table.c.status == DeliveryStatus.BLOCKED.value,
            )
        else:
            statement = statement.on_conflict_do_nothing()
        result = session.execute(statement)
        if decision.allowed:
            queued += result.rowcount
    return queued


# --- reading ----------------------------------------------------------------------------


def get(session: Session, version: str) -> PolicyVersion:
    policy = session.scalar(select(PolicyVersion).where(PolicyVersion.version == version))
    return found(policy, "no policy with this version")


def list_versions(session: Session) -> list[PolicyVersion]:
    return list(
        session.scalars(
            select(PolicyVersion).order_by(PolicyVersion.effective_at.desc(), PolicyVersion.id)
        )
    )


def in_force(session: Session) -> str | None:
    return policy_version_in_force(session, clock.now())


def progress(session: Session, policy: PolicyVersion) -> dict[str, Any] | None:
    """The notice's progress: planned, sent, blocked by reason, failed, pending."""
    if policy.campaign is None:
        return None
    return campaigns.stats(session, policy.campaign)


def open_broadcasts(session: Session) -> list[int]:
    """Started notices whose expansion is not finished (they may take newcomers)."""
    return list(
        session.scalars(
            select(Campaign.id).where(
                Campaign.kind == CampaignKind.POLICY,
                Campaign.status == CampaignStatus.SENDING,
                Campaign.expansion_done.is_(False),
            )
        )
    )
