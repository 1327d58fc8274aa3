"""The extensions and per-app services, wired to the app; nothing here runs at import."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_mail import Mail
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session

from mailprefs.db import Database
from mailprefs.domain.tokens import TokenService


def _rate_limit_identity() -> str:
    # Per authenticated key, else per client address (issue 13 finding 5). Who the key
    # is, is the web layer's to say (web.init_app registers it); this layer only asks.
    return current_app.extensions["mailprefs.rate_limit_identity"]()


class _Limiter(Limiter):
    """Flask-Limiter with blueprints that have no limits at all (`unlimited`): the
    recipient pages, whose one-click POST is the bulk path. They are a request filter
    (Flask-Limiter's public way, the guarantee) and are also skipped before the limiter
    does any work: for a filtered request it still works out scopes and meta limits, a
    tenth of a one-click request's time, measured."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unlimited: set[str] = set()
        self.request_filter(self._is_unlimited)

    def _is_unlimited(self) -> bool:
        return request.blueprint in self.unlimited

    def _check_request_limit(self, *args: Any, **kwargs: Any) -> None:
        if self._is_unlimited():
            return
        super()._check_request_limit(*args, **kwargs)


mail = Mail()
limiter = _Limiter(key_func=_rate_limit_identity)
csrf = CSRFProtect()
login_manager = LoginManager()


def init_app(app: Flask) -> None:
    # Its session hook writes outgoing webhook events in the transaction of their cause.
    import mailprefs.domain.webhooks  # noqa: F401

    app.extensions["mailprefs.db"] = Database(
        app.config["DATABASE_URL"], sqlite_synchronous=app.config["MAILPREFS_SQLITE_SYNCHRONOUS"]
    )
    app.extensions["mailprefs.tokens"] = TokenService(
        app.config["SECRET_KEYS"],
        unsubscribe_max_age=app.config["MAILPREFS_UNSUBSCRIBE_MAX_AGE_DAYS"] * 86400,
        confirm_max_age=app.config["MAILPREFS_CONFIRM_MAX_AGE_HOURS"] * 3600,
    )
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["MAILPREFS_RATELIMIT_STORAGE_URI"])
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    app.config.setdefault("MAIL_DEFAULT_SENDER", app.config["MAILPREFS_ADMIN_FROM"])
    mail.init_app(app)
    limiter.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)
    # A request's session ends with the request, even inside a longer app context.
    app.teardown_request(_close_session)
    app.teardown_appcontext(_close_session)


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions["mailprefs.db"]


def get_tokens(app: Flask | None = None) -> TokenService:
    return (app or current_app).extensions["mailprefs.tokens"]


def db_session() -> Session:
    """The session of the current request or app context, opened on first use."""
    if "mailprefs_session" not in g:
        g.mailprefs_session = get_db().session()
    return g.mailprefs_session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("mailprefs_session", None)
    if session is not None:
        session.close()  # rolls back whatever was not committed
