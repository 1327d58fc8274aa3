"""Login and logout. Failed logins answer one generic message whatever went wrong (no
such login, wrong password, locked), and lock a login after repeated failures."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user
from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain import audit, users
from mailprefs.domain.addresses import normalise
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import User
from mailprefs.extensions import db_session, limiter
from mailprefs.web.dashboard import account, bp
from mailprefs.web.dashboard.common import actor, record
from mailprefs.web.dashboard.forms import ActionForm, LoginForm

GENERIC_FAILURE = (
    "That email and password did not match, or this login is locked for a while after "
    "too many attempts."
)
# Beside the per-login lockout: a slow-down per client address across all logins.
LOGIN_RATE_LIMIT = "20 per minute"


def _safe_next(target: str | None) -> str:
    """Only a path inside the dashboard: never an open redirect to another site."""
    if (
        target
        and target.startswith("/dashboard")
        and not target.startswith("//")
        and "\\" not in target
        and not any(c in target for c in "\r\n")
    ):
        return target
    return url_for("dashboard.campaigns")


@bp.get("/")
def home():
    return redirect(url_for("dashboard.campaigns"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_RATE_LIMIT, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        db = db_session()
        config = current_app.config
        user = users.verify(
            db,
            form.email.data,
            form.password.data,
            max_failures=config["MAILPREFS_LOGIN_MAX_FAILURES"],
            lockout=timedelta(seconds=config["MAILPREFS_LOGIN_LOCKOUT_SECONDS"]),
        )
        if user is None:
            _record_failure(form.email.data)
            db.commit()  # the failure count is what makes the lockout
            error = GENERIC_FAILURE
        else:
            # A session (`staff_sessions`), or the second step first for two-factor logins.
            return account.begin(user, _safe_next(request.args.get("next")))
    elif request.method == "POST":
        error = GENERIC_FAILURE
    return render_template("dashboard/login.html", form=form, error=error)


def _record_failure(email: str) -> None:
    """Failed attempts on an existing login are audited under its id (never the address)."""
    try:
        address = normalise(email)
    except Invalid:
        return
    db = db_session()
    user = db.scalar(select(User).where(User.email == address))
    if user is None:
        return
    locked = user.locked_until is not None and user.locked_until > clock.now()
    audit.record(
        db,
        f"user:{user.id}",
        "login.locked" if locked else "login.failed",
        target_type="user",
        target_id=str(user.id),
    )


@bp.post("/logout")
def logout():
    form = ActionForm()
    if form.validate_on_submit():
        record("logout", "user", actor().removeprefix("user:"))
        account.end()
        if current_user.is_authenticated:
            users.end_sessions(current_user)  # a copy of the cookie stops working too
        db_session().commit()
        logout_user()
        session.clear()
        flash("You are logged out.")
    return redirect(url_for("dashboard.login"))
