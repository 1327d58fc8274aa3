"""`GET /healthz`: 200 when the database answers."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, redirect, send_from_directory, url_for
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from mailprefs.extensions import get_db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        with get_db().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok")


@bp.get("/favicon.ico")
def favicon():
    return send_from_directory(current_app.static_folder, "favicon.ico", max_age=86400)


@bp.get("/")
def root():
    """The site's root is the staff dashboard (recipients arrive through their links)."""
    return redirect(url_for("dashboard.home"))
