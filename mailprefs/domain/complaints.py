"""Reports of unsolicited mail: a complaint to investigate, a marketing suppression, and
the withdrawal of marketing consent, all recorded as evidence."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit, consent, suppression
from mailprefs.domain.addresses import redact
from mailprefs.domain.consent import Evidence
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.models import Subscriber, SubscriberStatus, SuppressionReason
from mailprefs.domain.outbox_models import Campaign, Complaint, ComplaintStatus


def report(
    session: Session,
    *,
    subscriber: Subscriber | None,
    email_hash: str | None,
    source: str,
    evidence: Evidence,
    campaign: Campaign | None = None,
    detail: str | None = None,
) -> Complaint:
    """Record a complaint (from the preference page, an ARF report, staff ...).

    Marketing stops for the address (a complaint suppression, which the gate applies to
    marketing only) and the person's marketing consent is withdrawn with the complaint
    as its source. Administrative mail still reaches a registered person.
    """
    email_hash = email_hash or (subscriber.email_hash if subscriber else None)
    if email_hash is None:
        raise Invalid("a complaint needs a person or an address")
    row = Complaint(
        subscriber_id=subscriber.id if subscriber else None,
        email_hash=email_hash,
        source=source,
        campaign_id=campaign.id if campaign else None,
        # A person reporting may quote their own address: it is not kept.
        detail=redact(detail, subscriber.email, limit=5000)
        if detail and subscriber is not None and subscriber.email
        else (detail or None) and detail[:5000],
        status=ComplaintStatus.OPEN,
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    suppression.add(
        session,
        email_hash,
        SuppressionReason.COMPLAINT,
        source=source,
        actor=evidence.actor,
        evidence={"complaint": row.public_id},
    )
    if subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE:
        consent.opt_out_of_all_marketing(
            session,
            subscriber,
            Evidence(
                source="complaint",
                ip=evidence.ip,
                user_agent=evidence.user_agent,
                actor=evidence.actor,
                context={"complaint": row.public_id},
            ),
        )
    return row


def open_count(session: Session) -> int:
    return (
        session.scalar(
            select(func.count(Complaint.id)).where(Complaint.status == ComplaintStatus.OPEN)
        )
        or 0
    )


def queue(
    session: Session,
    *,
    status: ComplaintStatus = ComplaintStatus.OPEN,
    limit: int = 50,
    offset: int = 0,
) -> list[Complaint]:
    """Complaints to investigate, oldest first."""
    return list(
        session.scalars(
            select(Complaint)
            .where(Complaint.status == status)
            .order_by(Complaint.created_at, Complaint.id)
            .limit(limit)
            .offset(offset)
        )
    )


def open_for(session: Session, subscriber: Subscriber) -> Complaint | None:
    """This person's oldest complaint still under investigation, if any."""
    return session.scalar(
        select(Complaint)
        .where(Complaint.subscriber_id == subscriber.id, Complaint.status == ComplaintStatus.OPEN)
        .order_by(Complaint.id)
        .limit(1)
    )


def get(session: Session, public_id: str) -> Complaint:
    row = session.scalar(select(Complaint).where(Complaint.public_id == public_id))
    if row is None:
        raise NotFound("no such complaint")
    return row


def resolve(session: Session, complaint: Complaint, *, actor: str, resolution: str) -> None:
    if complaint.status == ComplaintStatus.RESOLVED:
        raise Conflict("this complaint is already resolved")
    if not resolution or not resolution.strip():
        raise Invalid.field("resolution", "say how the complaint was resolved")
    complaint.status = ComplaintStatus.RESOLVED
    complaint.resolved_at = clock.now()
    complaint.resolved_by = actor
    complaint.resolution = resolution.strip()[:5000]
    audit.record(
        session, actor, "complaint.resolve", target_type="complaint", target_id=complaint.public_id
    )
