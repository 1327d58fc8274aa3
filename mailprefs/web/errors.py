"""App-wide error handlers: problem+json under /api/, a plain page everywhere else.

App-wide because a blueprint's handler never sees routing errors (404, 405).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, render_template, request
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from mailprefs.domain.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from mailprefs.web.problems import problem

log = logging.getLogger(__name__)

DOMAIN_STATUS = {NotFound: 404, Conflict: 409, Forbidden: 403, Invalid: 422}


def wants_problem() -> bool:
    return request.path.startswith("/api/")


def page(status: int, title: str, detail: str) -> tuple[str, int]:
    # Staff under /dashboard see errors in their own layout (navigation, a way back),
    # not the recipients' page that tells them to write to support.
    template = "dashboard/error.html" if _staff_page() else "errors/error.html"
    return render_template(template, status=status, title=title, detail=detail), status


def _staff_page() -> bool:
    return request.path == "/dashboard" or request.path.startswith("/dashboard/")


def _rollback() -> None:
    session = g.get("mailprefs_session")
    if session is not None:
        session.rollback()


def handle_http(exc: HTTPException) -> Response | tuple[str, int]:
    _rollback()
    status = exc.code or 500
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    if wants_problem():
        detail = exc.description
        if status == 429:
            detail = f"rate limit exceeded ({exc.description}); retry later"
        return problem(status, detail, headers=headers)
    body, code = page(status, exc.name, exc.description or exc.name)
    return Response(body, status=code, headers=headers, mimetype="text/html")


def handle_domain(exc: DomainError) -> Response | tuple[str, int]:
    _rollback()
    status = next((s for cls, s in DOMAIN_STATUS.items() if isinstance(exc, cls)), 400)
    if wants_problem():
        errors = exc.errors if isinstance(exc, Invalid) else None
        return problem(status, exc.detail, errors=errors)
    return page(status, "This could not be done", exc.detail)


def handle_integrity(exc: IntegrityError) -> Response | tuple[str, int]:
    """A uniqueness race lost to a concurrent request (two identical creates at once):
    nothing was stored by this one; it is a conflict to retry, not a server error."""
    _rollback()
    log.warning("integrity error on %s %s: %s", request.method, request.path, exc.orig)
    detail = (
        "this conflicts with a change made at the same moment; read the current state and retry"
    )
    if wants_problem():
        return problem(409, detail)
    return page(409, "This could not be done", detail)


def handle_unexpected(exc: Exception) -> Response | tuple[str, int]:
    _rollback()
    log.exception("unhandled error on %s %s", request.method, request.path)
    if wants_problem():
        return problem(500, "an unexpected error occurred; it has been logged")
    return page(500, "Something went wrong", "An unexpected error occurred. Please try again.")


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http)
    app.register_error_handler(DomainError, handle_domain)
    app.register_error_handler(IntegrityError, handle_integrity)
    app.register_error_handler(Exception, handle_unexpected)
