"""The ops dashboard (staff login) under /dashboard.

Every page needs a login (`require_login` below); admin-only pages say so with
`admin_required`. Every form carries a CSRF token (Flask-WTF, app-wide). Pages that show
an address or a consent history write an audit entry (a staff read of personal data).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, g, jsonify, redirect, request, url_for
from flask_login import current_user

from mailprefs.domain import users
from mailprefs.domain.models import Role, User
from mailprefs.extensions import db_session, login_manager
from mailprefs.web.dashboard import words

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

login_manager.login_view = "dashboard.login"
login_manager.login_message = "Log in to see the dashboard."
# A session cookie replayed from elsewhere (another address or browser) is dropped.
login_manager.session_protection = "strong"

PUBLIC_ENDPOINTS = {"dashboard.login", "dashboard.login_second_factor"}
# What a marketing login may open: campaigns (counts and content, no personal data),
# the composer, settings. Everything else (addresses, suppressions, complaints, the audit
# log, captured mail, jobs, policies, access, and any page added later) is closed to it.
MARKETING_ENDPOINTS = {
    "dashboard.home",
    "dashboard.logout",
    "dashboard.campaigns",
    "dashboard.campaigns_progress",
    "dashboard.campaign",
    "dashboard.campaign_progress",
    "dashboard.control",
    "dashboard.campaign_new",
    "dashboard.campaign_edit",
    "dashboard.campaign_duplicate",
    "dashboard.campaign_test",
    "dashboard.campaign_schedule",
    "dashboard.campaign_preview_html",
    "dashboard.settings",
    "dashboard.overview",
    "dashboard.account_page",
    "dashboard.account_password",
    "dashboard.account_totp_on",
    "dashboard.account_totp_off",
    "dashboard.account_session_end",
}
# Pages: own scripts and styles only, frames only from ourselves (the captured-mail
# viewer), nothing from elsewhere. The captured mail's HTML gets a stricter one of its own.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return users.for_session(db_session(), user_id)


@bp.before_request
def require_login() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        if request.path.endswith(".json"):
            response = jsonify({"error": "log in first"})
            response.status_code = 401
            return response
        return redirect(url_for("dashboard.login", next=request.path))
    from mailprefs.web.dashboard.account import require_live_session

    ended = require_live_session()  # a session ended from the account page, or at logout
    if ended is not None:
        return ended
    if current_user.role == Role.MARKETING and request.endpoint not in MARKETING_ENDPOINTS:
        abort(403, "A marketing login sees campaigns only; ask ops for the rest.")
    return None


@bp.teardown_app_request
def forget_request_state(_exc: BaseException | None) -> None:
    # Flask-Login caches the user, and Flask-WTF the CSRF token, on `g`, which lives as
    # long as the app context; where one app context spans several requests (a CLI
    # command, a test), the next request must load its own from its own session.
    g.pop("_login_user", None)
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


@bp.after_request
def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    # Pages hold personal data: no copy in a shared cache or the back-forward cache.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global()
def dashboard_nav() -> list[dict]:
    """The navigation. Slots whose page is not built yet show as plain text."""
    from mailprefs.web.dashboard.common import NAV, is_admin

    items = []
    for label, endpoint, needs in NAV:
        if needs == "admin" and not is_admin():
            continue
        if needs == "capture" and not current_app.config.get("MAILPREFS_CAPTURE_MAIL"):
            continue
        if current_user.role == Role.MARKETING and endpoint not in MARKETING_ENDPOINTS:
            continue
        built = endpoint in current_app.view_functions
        items.append(
            {
                "label": label,
                "url": url_for(endpoint) if built else None,
                "current": (request.endpoint or "")
                .split(".")[-1]
                .startswith(endpoint.split(".")[-1].rstrip("s")),
            }
        )
    return items


# Codes in words on every dashboard page: `words.reason(code)`, `words.source(code)`...
bp.add_app_template_global(words, "words")
bp.add_app_template_filter(words.reason, "reason_words")


from mailprefs.web.dashboard import (  # noqa: E402,F401
    access,
    account,
    audit_log,
    auth,
    campaigns,
    complaints,
    compose,
    jobs,
    mail,
    people,
    policies,
    reputation,
    results,
    settings,
    suppressions,
    topics,
    webhooks,
)
