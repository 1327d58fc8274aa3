"""The JSON API under /api/v1."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from mailprefs.extensions import csrf, limiter
from mailprefs.web.api.spec import Api

bp = Blueprint("api", __name__, url_prefix="/api/v1")
api = Api(bp)
csrf.exempt(bp)  # bearer keys, not cookies: no CSRF exposure
limiter.limit(lambda: current_app.config["MAILPREFS_API_RATE_LIMIT"])(bp)


@bp.get("/openapi.json")
@limiter.exempt
def openapi_document():
    catalogue = current_app.config["MAILPREFS_TOPIC_CATALOGUE"]
    slugs = {
        kind: [t["slug"] for t in catalogue if kind == "any" or t["kind"] == kind]
        for kind in ("any", "marketing", "administrative")
    }
    document = api.document(title="mailprefs API", version="1.0.0", topics=slugs)
    return jsonify(document)


from mailprefs.web.api import (  # noqa: E402,F401
    campaigns,
    events,
    imports,
    messages,
    people,
    policies,
    subscribers,
    topics,
    webhooks,
)
