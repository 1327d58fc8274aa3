"""The ops dashboard (staff login) under /dashboard.

Every page needs a login (`require_login` below); admin-only pages say so with
`admin_required`. Every form carries a CSRF token (Flask-WTF, app-wide). Pages that show
an address or a consent history write an audit entry (a staff read of personal data).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, redirect, request, url_for
from flask_login import current_user

from mailprefs.domain.models import User
from mailprefs.extensions import db_session, login_manager

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

login_manager.login_view = "dashboard.login"
login_manager.login_message = "Log in to see the dashboard."
# A session cookie replayed from elsewhere (another address or browser) is dropped.
login_manager.session_protection = "strong"

PUBLIC_ENDPOINTS = {"dashboard.login"}
# Pages: own scripts and styles only, frames only from ourselves (the captured-mail
# viewer), nothing from elsewhere. The captured mail's HTML gets a stricter one of its own.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    if not user_id.isdigit():
        return None
    user = db_session().get(User, int(user_id))
    return user if user is not None and user.active else None


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


from mailprefs.web.dashboard import (  # noqa: E402,F401
    access,
    audit_log,
    auth,
    campaigns,
    complaints,
    jobs,
    mail,
    people,
    policies,
    suppressions,
)
