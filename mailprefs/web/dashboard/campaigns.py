"""Campaigns and policy broadcasts: list, progress (polled JSON), controls.

Controls call the same domain functions as the API (`mailprefs.domain.campaigns`), which
write the audit entries; `run now` is `schedule(send_at=now)` of a scheduled campaign.
"""

from __future__ import annotations

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import func, select

from mailprefs import clock
from mailprefs.domain import campaigns as rules
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.outbox_models import Campaign, CampaignKind, CampaignStatus
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import PAGE_SIZE, actor, page_number
from mailprefs.web.dashboard.forms import ActionForm
from mailprefs.web.dashboard.metrics import chart_geometry, progress, sends_over_time
from mailprefs.web.dashboard.reputation import panel

KINDS = {
    "all": (CampaignKind.CAMPAIGN, CampaignKind.POLICY),
    "campaign": (CampaignKind.CAMPAIGN,),
    "policy": (CampaignKind.POLICY,),
}
S = CampaignStatus
# Which buttons a status offers (the domain refuses the rest with a Conflict anyway).
CONTROLS = {
    S.DRAFT: ("cancel",),
    S.SCHEDULED: ("run-now", "pause", "cancel"),
    S.SENDING: ("pause", "cancel"),
    S.PAUSED: ("resume", "cancel"),
    S.SENT: (),
    S.CANCELLED: (),
}
MAX_POLLED = 50


def _campaign(public_id: str) -> Campaign:
    try:
        return rules.get(db_session(), public_id, kinds=tuple(CampaignKind))
    except NotFound:
        abort(404)


@bp.get("/campaigns")
def campaigns():
    kind = request.args.get("kind", "all")
    kinds = KINDS.get(kind, KINDS["all"])
    status = request.args.get("status", "")
    page = page_number()
    db = db_session()
    query = select(Campaign).where(Campaign.kind.in_(kinds))
    if status in {s.value for s in S}:
        query = query.where(Campaign.status == S(status))
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(
        query.order_by(Campaign.created_at.desc(), Campaign.id.desc())
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    return render_template(
        "dashboard/campaigns.html",
        rows=[(c, progress(db, c)) for c in rows],
        kind=kind if kind in KINDS else "all",
        status=status,
        statuses=[s.value for s in S],
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        total=total,
    )


@bp.get("/campaigns/progress.json")
def campaigns_progress():
    """Progress of several campaigns at once (the list page polls this)."""
    ids = request.args.getlist("id")[:MAX_POLLED]
    db = db_session()
    found = db.scalars(select(Campaign).where(Campaign.public_id.in_(ids))).all() if ids else []
    return jsonify({c.public_id: progress(db, c) for c in found})


@bp.get("/campaigns/<public_id>")
def campaign(public_id: str):
    db = db_session()
    row = _campaign(public_id)
    series = sends_over_time(db, row)
    audience = None
    if row.status in (S.DRAFT, S.SCHEDULED):
        audience = rules.audience_counts(db, row.topic, row.audience)
    return render_template(
        "dashboard/campaign.html",
        c=row,
        p=progress(db, row),
        series=series,
        chart=chart_geometry(series),
        audience=audience,
        guard=panel(db, row),
        controls=CONTROLS[row.status],
        form=ActionForm(),
    )


@bp.get("/campaigns/<public_id>/progress.json")
def campaign_progress(public_id: str):
    db = db_session()
    row = _campaign(public_id)
    return jsonify({**progress(db, row), "series": sends_over_time(db, row)})


ACTIONS = {
    "pause": rules.pause,
    "resume": rules.resume,
    "cancel": rules.cancel,
}


@bp.post("/campaigns/<public_id>/<action>")
def control(public_id: str, action: str):
    if action not in ("pause", "resume", "cancel", "run-now"):
        abort(404)
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    db = db_session()
    row = _campaign(public_id)
    try:
        if action == "run-now":
            if row.status != S.SCHEDULED:
                raise Conflict(f"only a scheduled campaign can run now (this one is {row.status})")
            rules.schedule(db, row, clock.now(), actor())
        elif action == "resume":
            # A campaign the reputation guard paused resumes only with a written note.
            rules.resume(db, row, actor(), note=request.form.get("note"))
        else:
            ACTIONS[action](db, row, actor())
        db.commit()
        flash(f"{action.replace('-', ' ').capitalize()}: done. The campaign is {row.status}.")
    except (Conflict, Invalid) as exc:
        db.rollback()
        flash(exc.detail, "error")
    return redirect(url_for("dashboard.campaign", public_id=public_id))
