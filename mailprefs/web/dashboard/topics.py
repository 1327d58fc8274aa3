"""Topics (every staff login reads; admins change): create, rename, describe, double
opt-in, a sender of its own, retire and restore, through `mailprefs.domain.topic_admin`
(the API's code, which audits). Errors come back in words beside the form."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from mailprefs.domain import topic_admin
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import actor, admin_required, found_or_404, is_admin, refused
from mailprefs.web.dashboard.forms import NO_CONTROL, ActionForm

TOPICS = "dashboard.topics"
LABELS = {
    "slug": "Slug",
    "name": "Name",
    "kind": "Kind",
    "description": "Description",
    "double_opt_in": "Double opt-in",
    "from": "Sender",
    "active": "Retire",
}


class TopicForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200), NO_CONTROL])
    description = TextAreaField("Description", validators=[Length(max=2000), NO_CONTROL])
    double_opt_in = BooleanField("Double opt-in (marketing: a confirmation mail first)")
    sender = StringField(
        "Sender (optional): Name <address>", validators=[Length(max=320), NO_CONTROL]
    )


class NewTopicForm(TopicForm):
    slug = StringField(
        "Slug (in links and the API; fixed)", validators=[DataRequired(), Length(max=64)]
    )
    kind = SelectField("Kind (fixed)", choices=["marketing", "administrative"])


def _refused(exc: Invalid | Conflict | NotFound) -> None:
    errors = getattr(exc, "errors", None) or [{"field": "", "detail": exc.detail}]
    for error in errors:
        label = LABELS.get(error.get("field", ""), "")
        flash(f"Not saved: {label + ': ' if label else ''}{error['detail']}.", "error")


@bp.get("/topics")
def topics():
    rows = topic_admin.all_topics(db_session())
    forms = {}
    if is_admin():
        for t in rows:
            form = TopicForm(prefix=f"t-{t.slug}")
            form.name.data, form.description.data = t.name, t.description
            form.double_opt_in.data, form.sender.data = t.double_opt_in, t.from_addr or ""
            forms[t.slug] = form
    return render_template(
        "dashboard/topics.html",
        rows=rows,
        forms=forms,
        new_form=NewTopicForm(prefix="new"),
        action_form=ActionForm(),
        required=topic_admin.REQUIRED,
    )


@bp.post("/topics")
@admin_required
def topic_create():
    form = NewTopicForm(prefix="new")
    if not form.validate_on_submit():
        return refused("Not saved: a new topic needs a slug and a name.", TOPICS, _anchor="new")
    db = db_session()
    try:
        topic = topic_admin.create(
            db,
            slug=form.slug.data.strip(),
            name=form.name.data,
            kind=form.kind.data,
            double_opt_in=bool(form.double_opt_in.data),
            description=form.description.data or "",
            from_addr=form.sender.data or None,
            actor=actor(),
        )
    except (Invalid, Conflict) as exc:
        db.rollback()
        _refused(exc)
        return redirect(url_for(TOPICS, _anchor="new"))
    slug = topic.slug
    db.commit()
    flash(f"Topic “{form.name.data.strip()}” ({slug}) is created.")
    return redirect(url_for(TOPICS, _anchor=f"topic-{slug}"))


@bp.post("/topics/<slug>")
@admin_required
def topic_update(slug: str):
    topic = found_or_404(topic_admin.find, db_session(), slug)
    form = TopicForm(prefix=f"t-{slug}")
    if not form.validate_on_submit():
        return refused("Not saved: a topic needs a name.", TOPICS, _anchor=f"topic-{slug}")
    change = topic_admin.TopicChange(
        name=form.name.data,
        description=form.description.data or "",
        from_addr=form.sender.data or None,
    )
    if topic.is_marketing:
        change.double_opt_in = bool(form.double_opt_in.data)
    return _apply(topic, change)


@bp.post("/topics/<slug>/<action>")
@admin_required
def topic_retire(slug: str, action: str):
    if action not in ("retire", "restore"):
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    topic = found_or_404(topic_admin.find, db_session(), slug)
    return _apply(topic, topic_admin.TopicChange(active=action == "restore"))


def _apply(topic, change: topic_admin.TopicChange):
    db = db_session()
    slug = topic.slug
    try:
        changed = topic_admin.update(db, topic, change, actor())
    except (Invalid, Conflict) as exc:
        db.rollback()
        _refused(exc)
        return redirect(url_for(TOPICS, _anchor=f"topic-{slug}"))
    db.commit()
    if not changed:
        flash("Nothing changed.")
    elif changed == ["active"]:
        flash(
            f"Topic {slug} is {'restored' if change.active else 'retired: nobody is mailed on it'}."
        )
    else:
        flash(f"Topic {slug} is saved ({', '.join(c.replace('_', ' ') for c in changed)}).")
    return redirect(url_for(TOPICS, _anchor=f"topic-{slug}"))
