"""The baseline of the one-click benchmark: a bare Flask app that verifies the same kind of
token (itsdangerous, the same salt and keys as the service) and updates one row in the
same database, through the same engine settings (`mailprefs.db.make_engine`: the same
SQLite pragmas and `BEGIN IMMEDIATE`, the same PostgreSQL pool).

It records no evidence: no consent event, no IP, no user agent, no page. That is what
the service must come close to while doing all of that.

    gunicorn -w 2 'bench.oneclick_baseline:create_app()'   (DATABASE_URL, SECRET_KEY set)
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Flask, request
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import text

from mailprefs.config import normalise_database_url, secret_keys
from mailprefs.db import make_engine

MAX_AGE = 400 * 86400
UPDATE = text(
    "UPDATE topic_subscriptions SET state = 'opted_out', changed_at = :now "
    "WHERE topic_id = :topic "
    "AND subscriber_id = (SELECT id FROM subscribers WHERE public_id = :subscriber)"
)


def create_app() -> Flask:
    engine = make_engine(
        normalise_database_url(os.environ["DATABASE_URL"]),
        sqlite_synchronous=os.environ.get("MAILPREFS_SQLITE_SYNCHRONOUS", "NORMAL"),
    )
    keys = list(reversed(secret_keys(os.environ["SECRET_KEY"])))
    serializer = URLSafeTimedSerializer(keys, salt="mailprefs.unsubscribe")
    with engine.connect() as connection:
        topics = dict(connection.execute(text("SELECT slug, id FROM topics")).all())
    app = Flask(__name__)

    @app.post("/u/<token>")
    def one_click(token: str):
        try:
            payload = serializer.loads(token, max_age=MAX_AGE)
        except BadData:
            return "bad link\n", 400
        if request.form.get("List-Unsubscribe") != "One-Click":
            return "nothing to do\n", 400
        topic = topics.get(payload.get("t"))
        if topic is None:
            return "unknown topic\n", 404
        # Stored as the service stores times: naive UTC on SQLite, aware on PostgreSQL.
        now = datetime.now(UTC)
        if engine.dialect.name == "sqlite":
            now = now.replace(tzinfo=None)
        with engine.begin() as connection:
            connection.execute(UPDATE, {"now": now, "topic": topic, "subscriber": payload["s"]})
        return "unsubscribed\n"

    @app.get("/healthz")
    def healthz():
        return "ok\n"

    return app
