"""Campaigns and policy broadcasts: list, progress (polled JSON), controls.

Controls call the same domain functions as the API (`mailprefs.domain.campaigns`), which
write the audit entries; `run now` is `schedule(send_at=now)` of a scheduled campaign.
"""

from __future__ import annotations

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from mailprefs import clock
from mailprefs.domain import campaigns as rules
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.models import Role, TopicKind
from mailprefs.domain.outbox_models import Campaign, CampaignKind, CampaignStatus
from mailprefs.domain.topics import list_topics
from mailprefs.extensions import db_session
from mailprefs.scheduling import view
from mailprefs.web.dashboard import bp, compose, results, words
from mailprefs.web.dashboard.common import PAGE_SIZE, actor, last_page, page_number
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
    holding = _holding()
    kind = request.args.get("kind", "all")
    kinds = KINDS.get(kind, KINDS["all"])
    status = request.args.get("status", "")
    page = page_number()
    db = db_session()
    query = select(Campaign).where(Campaign.kind.in_(kinds))
    if status in {s.value for s in S}:
        query = query.where(Campaign.status == S(status))
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = min(page, last_page(total))  # past the end shows the last page
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
        pages=last_page(total),
        total=total,
        holding=holding,
        filtered=bool(status) or kind != "all",
        compose_url=url_for("dashboard.campaign_new"),
        example_topic=next(
            (t.slug for t in list_topics(db) if t.kind == TopicKind.MARKETING), "TOPIC"
        ),
    )


def _holding() -> list[tuple[str, str]]:
    """Paused recurring jobs that hold back sends, with what that means (as on Jobs)."""
    from mailprefs.web.dashboard.jobs import HOLDS_SENDS

    # End the request's transaction first: on SQLite it holds the write lock, which the
    # job store's own transaction would wait for (as on the Jobs page).
    db_session().commit()
    paused = view.paused_recurring(current_app._get_current_object())
    return [(job_id, effect) for job_id, effect in HOLDS_SENDS.items() if job_id in paused]


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
        controls=CONTROLS[row.status] if may_control(row) else (),
        form=ActionForm(),
        results=None if row.status == S.DRAFT else results.campaign_results(db, row),
        **compose.page_extras(row),
    )


@bp.get("/campaigns/<public_id>/progress.json")
def campaign_progress(public_id: str):
    """Progress, and what the page must show for the status it has now: the buttons it
    allows and the words for its blocked reasons (the page follows without a reload)."""
    db = db_session()
    row = _campaign(public_id)
    data = progress(db, row)
    return jsonify(
        {
            **data,
            "series": sends_over_time(db, row),
            "controls": list(CONTROLS[row.status]),
            "reason_words": {r: words.reason(r) for r in data["stats"]["blocked"]},
        }
    )


def may_control(row: Campaign) -> bool:
    """Marketing logins act on campaigns of marketing topics only (as marketing keys)."""
    if current_user.role != Role.MARKETING:
        return True
    return row.kind == CampaignKind.CAMPAIGN and row.topic.kind == TopicKind.MARKETING


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
    if not may_control(row):
        abort(403, "A marketing login controls campaigns on marketing topics only.")
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
        if action == "run-now" or isinstance(exc, Invalid):  # e.g. a resume without its note
            flash(exc.detail, "error")
        else:
            # The page was older than the campaign (it finished, or someone else acted):
            # say what it is now rather than the state machine's wording.
            verb = {"resume": "resumed", "pause": "paused"}.get(action, "cancelled")
            flash(
                f"The campaign is {row.status} now, so it cannot be {verb}. "
                "This page shows its current state.",
                "error",
            )
    return redirect(url_for("dashboard.campaign", public_id=public_id))
