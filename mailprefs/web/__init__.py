"""The web layer: thin blueprints that check access, call the domain and serialise."""

from __future__ import annotations

from flask import Flask, request

from mailprefs.domain import audit


def init_app(app: Flask) -> None:
    from mailprefs.web import dashboard, errors, health, prefs
    from mailprefs.web.api import bp as api_bp
    from mailprefs.web.api.auth import rate_limit_identity

    app.extensions["mailprefs.rate_limit_identity"] = rate_limit_identity
    app.register_blueprint(health.bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(prefs.bp)
    app.register_blueprint(dashboard.bp)
    errors.init_app(app)

    # Audit entries that domain code records while serving a request name its IP.
    app.before_request(lambda: audit.set_origin(request.remote_addr))
    app.teardown_request(lambda _error: audit.set_origin(None))
