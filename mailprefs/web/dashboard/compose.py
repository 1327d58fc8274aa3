"""The composer: write a campaign in the dashboard (create and edit a draft, preview it
for a sample recipient, see the gate's counts for its audience, send a test copy to
staff, schedule it or send it now, duplicate it). Everything goes through the domain
(`compose`, `campaigns`) and the preview code the API uses; the audit entries are the
domain's (`campaign.create`, `campaign.update`, `campaign.schedule`).

A marketing login composes on marketing topics only, as a marketing key does.
"""

from __future__ import annotations

from datetime import UTC

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from mailprefs import clock
from mailprefs.delivery.preview import render_preview
from mailprefs.domain import campaigns, compose, test_copies
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.outbox_models import Campaign, CampaignKind, CampaignStatus
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import db_session, get_tokens
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import actor
from mailprefs.web.dashboard.forms import LOCAL_TIME, NO_CONTROL, ActionForm

HTML_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
FIELDS = ("topic", "subject", "text", "html", "audience")


class CampaignForm(FlaskForm):
    topic = SelectField("Topic", choices=[])
    subject = StringField(
        "Subject",
        validators=[
            DataRequired(),
            Length(max=998),
            Regexp(r"^[^\x00-\x1f\x7f]*$", message="one line, no control characters"),
        ],
    )
    text = TextAreaField("Text", validators=[DataRequired(), Length(max=500_000), NO_CONTROL])
    html = TextAreaField("HTML (optional)", validators=[Length(max=500_000), NO_CONTROL])
    audience = TextAreaField("Audience (optional)", validators=[Length(max=50_000), NO_CONTROL])


class TestForm(FlaskForm):
    emails = StringField(
        "Send a test copy to", validators=[DataRequired(), Length(max=3300), NO_CONTROL]
    )


class ScheduleForm(FlaskForm):
    send_at = DateTimeLocalField("Send at (UTC)", format=LOCAL_TIME, validators=[Optional()])


def _role() -> str:
    return current_user.role.value


def _campaign(public_id: str) -> Campaign:
    try:
        return campaigns.get(db_session(), public_id)
    except NotFound:
        abort(404)


def _form(campaign: Campaign | None = None) -> CampaignForm:
    db = db_session()
    form = CampaignForm()
    form.topic.choices = [
        (t.slug, f"{t.name} ({t.kind.value})") for t in compose.topics_for(db, _role())
    ]
    if campaign is not None and request.method == "GET":
        form.topic.data = campaign.topic.slug
        form.subject.data = campaign.subject
        form.text.data = campaign.text_body
        form.html.data = campaign.html_body or ""
        form.audience.data = compose.audience_lines(campaign.audience)
    return form


def _content(form: CampaignForm) -> compose.Draft:
    """The form's values for the domain; Invalid (naming the field) for a bad one."""
    db = db_session()
    html = form.html.data if form.html.data and form.html.data.strip() else None
    return compose.Draft(
        get_topic(db, form.topic.data or ""),
        campaigns.Content(form.subject.data, form.text.data, html),
        compose.parse_audience(form.audience.data or ""),
    )


def _place_errors(form: CampaignForm, exc: Invalid) -> None:
    for error in exc.errors or [{"field": "", "detail": exc.detail}]:
        name = error.get("field", "").split(".")[0]
        field = getattr(form, name, None) if name in FIELDS else None
        (field.errors if field is not None else form.form_errors).append(error["detail"])


def _editor(form: CampaignForm, campaign: Campaign | None, status: int = 200):
    return (
        render_template(
            "dashboard/compose.html",
            form=form,
            campaign=campaign,
            topics=compose.topics_for(db_session(), _role()),
        ),
        status,
    )


@bp.route("/campaigns/new", methods=["GET", "POST"])
def campaign_new():
    form = _form()
    if not form.validate_on_submit():
        return _editor(form, None, 422 if request.method == "POST" else 200)
    db = db_session()
    try:
        row = compose.create_draft(db, _content(form), actor=actor(), role=_role())
    except Invalid as exc:
        db.rollback()
        _place_errors(form, exc)
        return _editor(form, None, 422)
    public_id = row.public_id
    db.commit()
    flash("The draft is saved. Preview it, send yourself a test copy, then schedule it.")
    return redirect(url_for("dashboard.campaign", public_id=public_id))


@bp.route("/campaigns/<public_id>/edit", methods=["GET", "POST"])
def campaign_edit(public_id: str):
    row = _campaign(public_id)
    compose.check_campaign(row, _role())
    if row.status != CampaignStatus.DRAFT:
        flash(
            f"Only a draft can be edited; this campaign is {row.status}. Duplicate it to "
            "start a new draft from it.",
            "error",
        )
        return redirect(url_for("dashboard.campaign", public_id=public_id))
    form = _form(row)
    if not form.validate_on_submit():
        return _editor(form, row, 422 if request.method == "POST" else 200)
    db = db_session()
    try:
        compose.update_draft(db, row, _content(form), actor=actor(), role=_role())
    except Invalid as exc:
        db.rollback()
        _place_errors(form, exc)
        return _editor(form, _campaign(public_id), 422)
    db.commit()
    flash("The draft is saved.")
    return redirect(url_for("dashboard.campaign", public_id=public_id))


@bp.post("/campaigns/<public_id>/duplicate")
def campaign_duplicate(public_id: str):
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    db = db_session()
    copy = compose.duplicate(db, _campaign(public_id), actor=actor(), role=_role())
    new_id = copy.public_id
    db.commit()
    flash("A new draft, copied from that campaign. Change what you need and save.")
    return redirect(url_for("dashboard.campaign_edit", public_id=new_id))


@bp.post("/campaigns/<public_id>/test")
def campaign_test(public_id: str):
    row = _campaign(public_id)
    compose.check_campaign(row, _role())
    form = TestForm(prefix="test")
    if not form.validate_on_submit():
        flash("Give at least one staff address for the test copy.", "error")
        return redirect(url_for("dashboard.campaign", public_id=public_id, _anchor="test"))
    emails = [e.strip() for e in form.emails.data.replace(";", ",").split(",") if e.strip()]
    db = db_session()
    try:
        staff = test_copies.staff_addresses(db, current_app.config.get("MAILPREFS_TEST_ADDRESSES"))
        queued = test_copies.queue(db, row, emails, staff=staff, actor=actor())
    except Invalid as exc:
        db.rollback()
        flash(f"No test copy sent: {exc.detail}.", "error")
        return redirect(url_for("dashboard.campaign", public_id=public_id, _anchor="test"))
    db.commit()
    # The worker sends test copies ahead of everything else, within seconds.
    flash(f"Test copy queued for {', '.join(queued)} (marked as a test; not counted).")
    return redirect(url_for("dashboard.campaign", public_id=public_id, _anchor="test"))


@bp.post("/campaigns/<public_id>/schedule")
def campaign_schedule(public_id: str):
    row = _campaign(public_id)
    compose.check_campaign(row, _role())
    form = ScheduleForm(prefix="schedule")
    now_requested = request.form.get("when") == "now"
    if not form.validate_on_submit():
        flash(
            "; ".join(form.send_at.errors) or "The form expired; reload and try again.",
            "error",
        )
        return redirect(url_for("dashboard.campaign", public_id=public_id))
    if not now_requested and form.send_at.data is None:
        flash("Pick a date and time to schedule, or press Send now.", "error")
        return redirect(url_for("dashboard.campaign", public_id=public_id))
    db = db_session()
    try:
        send_at = None if now_requested else form.send_at.data.replace(tzinfo=UTC)
        send_at = campaigns.check_send_at(send_at, clock.now()) or clock.now()
        campaigns.schedule(db, row, send_at, actor())
        db.commit()
    except (Invalid, Conflict) as exc:
        db.rollback()
        flash(
            f"Not scheduled: the send time {exc.detail}."
            if isinstance(exc, Invalid)
            else f"Not scheduled: {exc.detail}.",
            "error",
        )
        return redirect(url_for("dashboard.campaign", public_id=public_id))
    flash(
        "Sending now: progress shows below."
        if now_requested
        else f"Scheduled for {send_at:%Y-%m-%d %H:%M} UTC. You can pause or cancel it until then."
    )
    return redirect(url_for("dashboard.campaign", public_id=public_id))


@bp.get("/campaigns/<public_id>/preview.html")
def campaign_preview_html(public_id: str):
    """The HTML part for a sample recipient, shown in a sandboxed frame (no script)."""
    row = _campaign(public_id)
    html = render_preview(current_app.config, get_tokens(), row)["html"]
    if html is None:
        abort(404)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = HTML_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


def page_extras(row: Campaign) -> dict:
    """What the campaign page shows for composing: the sample preview, the test, schedule
    and duplicate forms, for those who may compose on this campaign's topic."""
    if row.kind != CampaignKind.CAMPAIGN or not compose.may_compose_on(row.topic, _role()):
        return {"composer": None}
    preview = None
    if row.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
        preview = render_preview(current_app.config, get_tokens(), row)
    test_form = TestForm(prefix="test")
    test_form.emails.data = current_user.email
    return {
        "composer": {
            "preview": preview,
            "test_form": test_form,
            "schedule_form": ScheduleForm(prefix="schedule"),
            "editable": row.status == CampaignStatus.DRAFT,
        }
    }
