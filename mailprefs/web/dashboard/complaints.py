"""Complaints: the queue (preference-page reports, ARF feedback, staff), each shown with
the person's consent history beside it. Opening one is a staff read of personal data,
so it is audited; resolving needs a written resolution (audited by the domain)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from mailprefs.domain import complaints as rules
from mailprefs.domain import consent, suppression
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.models import Subscriber, Topic
from mailprefs.domain.outbox_models import Campaign, Complaint, ComplaintStatus
from mailprefs.domain.topics import list_topics
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp, words
from mailprefs.web.dashboard.common import PAGE_SIZE, actor, found_or_404, page_number, record
from mailprefs.web.dashboard.forms import ResolveForm


@bp.get("/complaints")
def complaints():
    status = request.args.get("status", "open")
    status = ComplaintStatus(status) if status in {"open", "resolved"} else ComplaintStatus.OPEN
    page = page_number()
    db = db_session()
    rows = rules.queue(db, status=status, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    total = db.scalar(select(func.count(Complaint.id)).where(Complaint.status == status)) or 0
    campaigns = {
        c.id: c
        for c in db.scalars(
            select(Campaign).where(Campaign.id.in_({r.campaign_id for r in rows if r.campaign_id}))
        )
    }
    return render_template(
        "dashboard/complaints.html",
        rows=rows,
        campaigns=campaigns,
        status=status.value,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        total=total,
    )


@bp.get("/complaints/<public_id>")
def complaint(public_id: str):
    db = db_session()
    row = found_or_404(rules.get, db, public_id)
    person = db.get(Subscriber, row.subscriber_id) if row.subscriber_id else None
    if person is not None:
        record(
            "subscriber.read",
            "subscriber",
            person.public_id,
            {"via": "complaint", "complaint": row.public_id},
        )
    else:
        record("complaint.read", "complaint", row.public_id)
    db.commit()
    return render_template(
        "dashboard/complaint.html",
        row=row,
        person=person,
        topics=_topic_states(db, person) if person else [],
        history=consent.history(db, person) if person else [],
        campaign=db.get(Campaign, row.campaign_id) if row.campaign_id else None,
        active=suppression.active(db, row.email_hash) if row.email_hash else None,
        form=ResolveForm(),
    )


def _topic_states(db, person: Subscriber) -> list[tuple[Topic, str]]:
    """Each active topic with the person's state on it in words (administrative topics
    by what the person receives, not the ledger's `none`)."""
    states = consent.states(db, person)
    topics = {t.slug: t for t in list_topics(db)}
    return [
        (topics[slug], words.topic_state(topics[slug], state.value, person.status.value))
        for slug, state in states.items()
        if slug in topics
    ]


@bp.post("/complaints/<public_id>/resolve")
def resolve_complaint(public_id: str):
    form = ResolveForm()
    db = db_session()
    try:
        row = rules.get(db, public_id)
    except NotFound:
        abort(404)
    if not form.validate_on_submit():
        flash("Write how the complaint was resolved.", "error")
        return redirect(url_for("dashboard.complaint", public_id=public_id))
    try:
        rules.resolve(db, row, actor=actor(), resolution=form.resolution.data)
        db.commit()
        flash("The complaint is resolved.")
    except (Conflict, Invalid) as exc:
        db.rollback()
        flash(exc.detail, "error")
    return redirect(url_for("dashboard.complaint", public_id=public_id))
