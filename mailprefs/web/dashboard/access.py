"""Access (admins only): API keys and dashboard logins. Every change is audited; a new
key is shown once, on the page that created it, and never stored in clear."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, session, url_for
from sqlalchemy import select

from mailprefs.domain import apikeys, users
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.models import User
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import actor, admin_required, record
from mailprefs.web.dashboard.forms import ActionForm, ApiKeyForm, UserForm

NEW_KEY = "dashboard_new_api_key"
PAST = {"deactivate": "deactivated", "activate": "activated", "unlock": "unlocked"}


def _page(new_key: str | None = None, key_form=None, user_form=None):
    db = db_session()
    return render_template(
        "dashboard/access.html",
        keys=apikeys.list_keys(db),
        logins=db.scalars(select(User).order_by(User.id)).all(),
        key_form=key_form or ApiKeyForm(prefix="key"),
        user_form=user_form or UserForm(prefix="user"),
        action_form=ActionForm(),
        new_key=new_key,
        me=actor(),
    )


@bp.get("/access")
@admin_required
def access():
    # The key created by the POST just before (post/redirect/get: a reload of this page
    # creates nothing), shown this once. It rides in the signed session cookie of the
    # admin who created it for one redirect, and is dropped from it here.
    return _page(new_key=session.pop(NEW_KEY, None))


@bp.post("/access/keys")
@admin_required
def create_key():
    form = ApiKeyForm(prefix="key")
    if not form.validate_on_submit():
        flash("Give the key a role and a name.", "error")
        return _page(key_form=form)
    db = db_session()
    row, secret = apikeys.create(db, form.role.data, form.name.data.strip())
    record("api_key.create", "api_key", row.prefix, {"role": row.role.value})
    db.commit()
    flash(f"Created {row.role} key {row.prefix}. Copy it now: it is not shown again.")
    session[NEW_KEY] = secret
    return redirect(url_for("dashboard.access"))


@bp.post("/access/keys/<prefix>/revoke")
@admin_required
def revoke_key(prefix: str):
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    db = db_session()
    try:
        row = apikeys.revoke(db, prefix)
        record("api_key.revoke", "api_key", row.prefix)
        db.commit()
        flash(f"Revoked {prefix}.")
    except (NotFound, Conflict) as exc:
        db.rollback()
        flash(exc.detail, "error")
    return redirect(url_for("dashboard.access"))


@bp.post("/access/logins")
@admin_required
def create_login():
    form = UserForm(prefix="user")
    if not form.validate_on_submit():
        flash("A login needs an email, a role and a password of 12 characters or more.", "error")
        return _page(user_form=form)
    db = db_session()
    try:
        user = users.create(db, form.email.data, form.role.data, form.password.data)
        record("user.create", "user", str(user.id), {"role": form.role.data})
        db.commit()
        flash(f"Created {form.role.data} login #{user.id}.")
    except (Conflict, Invalid) as exc:
        db.rollback()
        flash(exc.detail, "error")
    return redirect(url_for("dashboard.access"))


@bp.post("/access/logins/<int:user_id>/<action>")
@admin_required
def change_login(user_id: int, action: str):
    if action not in ("deactivate", "activate", "unlock"):
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    db = db_session()
    user = db.get(User, user_id)
    if user is None:
        abort(404)
    if f"user:{user.id}" == actor() and action == "deactivate":
        flash("You cannot deactivate your own login.", "error")
        return redirect(url_for("dashboard.access"))
    if action == "deactivate":
        user.active = False
    elif action == "activate":
        user.active = True
    else:
        user.locked_until = None
        user.failed_logins = 0
    record(f"user.{action}", "user", str(user.id))
    db.commit()
    flash(f"Login #{user.id}: {PAST[action]}.")
    return redirect(url_for("dashboard.access"))
