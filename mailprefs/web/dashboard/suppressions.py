"""The suppression list: search by address (through the keyed hash; the address itself
is never stored, logged or put in a URL: searches are POSTed), evidence and history,
manual additions, lifting with a written reason.

Lifting a complaint suppression is admin-only: it overrides the person's own report.
Erasure and under-age suppressions cannot be lifted at all (the domain refuses).
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from mailprefs.domain import bounces, suppression
from mailprefs.domain.addresses import address_hash, normalise
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.models import Subscriber, Suppression, SuppressionReason
from mailprefs.domain.outbox_models import Complaint
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import PAGE_SIZE, actor, is_admin, page_number, record
from mailprefs.web.dashboard.forms import AddressForm, AddSuppressionForm, LiftForm

UNLIFTABLE = {SuppressionReason.ERASED, SuppressionReason.UNDERAGE}


def _forms() -> dict:
    return {
        "search_form": AddressForm(prefix="search"),
        "add_form": AddSuppressionForm(prefix="add"),
    }


@bp.get("/suppressions")
def suppressions():
    reason = request.args.get("reason", "")
    page = page_number()
    db = db_session()
    query = select(Suppression).where(Suppression.lifted_at.is_(None))
    if reason in {r.value for r in SuppressionReason}:
        query = query.where(Suppression.reason == SuppressionReason(reason))
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(
        query.order_by(Suppression.created_at.desc(), Suppression.id.desc())
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    return render_template(
        "dashboard/suppressions.html",
        rows=rows,
        reason=reason,
        reasons=[r.value for r in SuppressionReason],
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        total=total,
        **_forms(),
    )


def _hash_of(raw: str) -> str:
    return address_hash(normalise(raw), current_app.config["MAILPREFS_HASH_KEY"])


@bp.post("/suppressions/search")
def search_suppressions():
    forms = _forms()
    form = forms["search_form"]
    if not form.validate_on_submit():
        abort(400, "The form expired or the address is missing; try again.")
    try:
        email_hash = _hash_of(form.email.data)
    except Invalid:
        flash("That is not a valid email address.", "error")
        return redirect(url_for("dashboard.suppressions"))
    db = db_session()
    record("suppression.search", "address_hash", email_hash)
    db.commit()
    return render_template(
        "dashboard/suppression_search.html",
        email_hash=email_hash,
        **_address_facts(email_hash),
        **forms,
    )


def _address_facts(email_hash: str) -> dict:
    db = db_session()
    subscriber = db.scalar(select(Subscriber).where(Subscriber.email_hash == email_hash))
    return {
        "active": suppression.active(db, email_hash),
        "history": list(reversed(suppression.history(db, email_hash))),
        "bounce_events": bounces.for_address(db, email_hash),
        "complaints": db.scalars(
            select(Complaint)
            .where(Complaint.email_hash == email_hash)
            .order_by(Complaint.created_at.desc())
            .limit(20)
        ).all(),
        "subscriber": subscriber,
    }


@bp.post("/suppressions/add")
def add_suppression():
    form = AddSuppressionForm(prefix="add")
    if not form.validate_on_submit():
        flash("Give an address and say why it is suppressed.", "error")
        return redirect(url_for("dashboard.suppressions"))
    try:
        address = normalise(form.email.data)
    except Invalid:
        flash("That is not a valid email address.", "error")
        return redirect(url_for("dashboard.suppressions"))
    email_hash = address_hash(address, current_app.config["MAILPREFS_HASH_KEY"])
    db = db_session()
    existing = suppression.active(db, email_hash)
    if existing is not None:
        flash(f"This address is already suppressed ({existing.reason}).", "error")
        return redirect(url_for("dashboard.suppression", suppression_id=existing.id))
    note = bounces.redact(form.note.data.strip(), address)  # the note must not keep it
    row = suppression.add(
        db,
        email_hash,
        SuppressionReason.MANUAL,
        source="staff",
        actor=actor(),
        evidence={"note": note},
    )
    record("suppression.add", "suppression", str(row.id), {"reason": "manual"})
    db.commit()
    flash("The address is suppressed: nothing will be sent to it.")
    return redirect(url_for("dashboard.suppression", suppression_id=row.id))


@bp.get("/suppressions/<int:suppression_id>", endpoint="suppression")
def suppression_detail(suppression_id: int):
    db = db_session()
    row = db.get(Suppression, suppression_id)
    if row is None:
        abort(404)
    record("suppression.read", "suppression", str(row.id))
    db.commit()
    return render_template(
        "dashboard/suppression.html",
        row=row,
        can_lift=row.lifted_at is None
        and row.reason not in UNLIFTABLE
        and (row.reason != SuppressionReason.COMPLAINT or is_admin()),
        lift_form=LiftForm(),
        **_address_facts(row.email_hash),
    )


@bp.post("/suppressions/<int:suppression_id>/lift")
def lift_suppression(suppression_id: int):
    form = LiftForm()
    db = db_session()
    row = db.get(Suppression, suppression_id)
    if row is None:
        abort(404)
    if row.reason == SuppressionReason.COMPLAINT and not is_admin():
        abort(403, "Only an admin may lift a complaint: it overrides the person's own report.")
    if not form.validate_on_submit():
        flash("Write why this address may be mailed again.", "error")
        return redirect(url_for("dashboard.suppression", suppression_id=suppression_id))
    try:
        suppression.lift(db, suppression_id, actor=actor(), reason=form.reason.data)
        db.commit()
        flash("The suppression is lifted; the reason is in the audit log.")
    except (Conflict, Invalid, NotFound) as exc:
        db.rollback()
        flash(exc.detail, "error")
    return redirect(url_for("dashboard.suppression", suppression_id=suppression_id))
