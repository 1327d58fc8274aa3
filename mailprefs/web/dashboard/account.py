"""Your account (every staff login): change your password, turn two-factor login on or
off (an authenticator app's codes, RFC 6238, with one-time recovery codes), see your
login sessions and end any of them. And the login's second step for those with it on.

The session's id (a `staff_sessions` row) rides in the signed session cookie; each
request checks the row still stands (`require_live_session`), so ending a session here
ends it at its next request, wherever it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from mailprefs.domain import account
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.models import User
from mailprefs.extensions import db_session, limiter
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import record, refused
from mailprefs.web.dashboard.forms import ActionForm

SID = "staff_session"
PENDING = "second_factor_user"
PENDING_NEXT = "second_factor_next"
SETUP_SLOT = "totp_setup"  # the secret being set up, until confirmed
FAILURES = "second_factor_failures"
MAX_SECOND_FACTOR_FAILURES = 5
ACCOUNT_PAGE = "dashboard.account_page"

T = TypeVar("T")


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])
    new = PasswordField(
        "New password (12 characters or more)",
        validators=[DataRequired(), Length(min=12, max=1024)],
    )


class CodeForm(FlaskForm):
    code = StringField(
        "Code from your app, or a recovery code", validators=[DataRequired(), Length(max=32)]
    )


class DisableForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired(), Length(max=1024)])


def begin(user: User, next_url: str):
    """After a right password: a session now, or the second step first."""
    db = db_session()
    session.clear()  # no session fixation: a fresh session for the login
    if user.totp_enabled_at is not None:
        session[PENDING] = user.id
        session[PENDING_NEXT] = next_url
        db.commit()  # the password check's own changes (failure count reset)
        return redirect(url_for("dashboard.login_second_factor"))
    return _finish(user, next_url, second_factor=False)


def _finish(user: User, next_url: str, *, second_factor: bool):
    db = db_session()
    session.clear()
    login_user(user)
    session[SID] = account.start_session(
        db, user, request.remote_addr, request.headers.get("User-Agent")
    )
    record("login", "user", str(user.id), {"second_factor": True} if second_factor else None)
    db.commit()
    return redirect(next_url)


def require_live_session():
    """None when the logged-in session stands; otherwise the login is ended here."""
    if account.session_is_live(db_session(), current_user.id, session.get(SID)):
        return None
    logout_user()
    session.clear()
    flash("Your session has ended. Log in again.", "error")
    return redirect(url_for("dashboard.login"))


def end():
    """At logout."""
    account.end_session(db_session(), session.get(SID))


@bp.route("/login/second-factor", methods=["GET", "POST"])
@limiter.limit("20 per minute", methods=["POST"])
def login_second_factor():
    user_id = session.get(PENDING)
    db = db_session()
    user = db.get(User, user_id) if isinstance(user_id, int) else None
    if user is None or not user.active or user.totp_enabled_at is None:
        session.clear()
        return redirect(url_for("dashboard.login"))
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        if account.verify_second_factor(db, user, form.code.data):
            return _finish(
                user,
                session.get(PENDING_NEXT) or url_for("dashboard.campaigns"),
                second_factor=True,
            )
        session[FAILURES] = session.get(FAILURES, 0) + 1
        if session[FAILURES] >= MAX_SECOND_FACTOR_FAILURES:
            session.clear()
            flash("Too many wrong codes: log in again.", "error")
            return redirect(url_for("dashboard.login"))
        error = "That code did not match. Use the current code from your app, or a recovery code."
    elif request.method == "POST":
        error = "Enter the code from your app, or a recovery code."
    return render_template("dashboard/second_factor.html", form=form, error=error)


def _page(**context):
    db = db_session()
    user = current_user._get_current_object()
    return render_template(
        "dashboard/account.html",
        password_form=context.pop("password_form", None) or PasswordForm(prefix="pw"),
        code_form=CodeForm(prefix="totp"),
        disable_form=DisableForm(prefix="off"),
        action_form=ActionForm(),
        sessions=account.list_sessions(db, user),
        current_sid=session.get(SID),
        codes_left=account.recovery_codes_left(db, user),
        **context,
    )


def _commit(refusal: str | None, change: Callable[[Session, User], T]) -> T:
    """Make one change to your own account and commit it. When the domain refuses it:
    roll back, say why ("<refusal>: <why>.") and answer with the account page again."""
    db = db_session()
    try:
        result = change(db, current_user._get_current_object())
    except (Invalid, Conflict, NotFound) as exc:
        db.rollback()
        abort(refused(f"{refusal}: {exc.detail}." if refusal else exc.detail, ACCOUNT_PAGE))
    db.commit()
    return result


@bp.get("/account")
def account_page():
    user = current_user._get_current_object()
    setup = None
    if user.totp_enabled_at is None:
        secret = session.get(SETUP_SLOT) or account.new_secret()
        session[SETUP_SLOT] = secret
        issuer = f"{current_app.config['MAILPREFS_ORG_NAME']} mail"
        setup = {"secret": secret, "uri": account.provisioning_uri(secret, user.email, issuer)}
    return _page(setup=setup, new_codes=session.pop("new_recovery_codes", None))


@bp.post("/account/password")
def account_password():
    form = PasswordForm(prefix="pw")
    if not form.validate_on_submit():
        return refused(
            "Not changed: give your current password and a new one of 12 characters or more.",
            ACCOUNT_PAGE,
        )
    _commit(
        "Not changed",
        lambda db, me: account.change_password(db, me, form.current.data, form.new.data),
    )
    flash("Your password is changed.")
    return redirect(url_for(ACCOUNT_PAGE))


@bp.post("/account/two-factor/on")
def account_totp_on():
    form = CodeForm(prefix="totp")
    secret = session.get(SETUP_SLOT)
    if not form.validate_on_submit() or not secret:
        return refused("Not turned on: enter the code your app shows.", ACCOUNT_PAGE)
    codes = _commit(
        "Not turned on", lambda db, me: account.enable_totp(db, me, secret, form.code.data)
    )
    session.pop(SETUP_SLOT, None)
    # Shown once, on the page this redirect leads to (post/redirect/get).
    session["new_recovery_codes"] = codes
    flash("Two-factor login is on. Keep the recovery codes below somewhere safe.")
    return redirect(url_for(ACCOUNT_PAGE))


@bp.post("/account/two-factor/off")
def account_totp_off():
    form = DisableForm(prefix="off")
    if not form.validate_on_submit():
        return refused("Not turned off: give your password.", ACCOUNT_PAGE)
    _commit("Not turned off", lambda db, me: account.disable_totp(db, me, form.password.data))
    flash("Two-factor login is off.")
    return redirect(url_for(ACCOUNT_PAGE))


@bp.post("/account/sessions/<public_id>/end")
def account_session_end(public_id: str):
    if not ActionForm().validate_on_submit():
        return refused("The form expired; reload the page and try again.", ACCOUNT_PAGE)
    _commit(None, lambda db, me: account.revoke_session(db, me, public_id))
    if public_id == session.get(SID):
        return redirect(url_for("dashboard.login"))
    flash("That session is ended: it is logged out at its next request.")
    return redirect(url_for(ACCOUNT_PAGE))
