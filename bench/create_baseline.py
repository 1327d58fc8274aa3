"""The baseline of the create benchmark: a bare Flask app that writes the same rows as a
`POST /api/v1/subscribers` with one consent (the person, the consent event, the topic
state) into the same database, through the same engine settings
(`mailprefs.db.make_engine`), in one transaction, and answers 201 with the same shape.

It does nothing else: no key, no validation or normalisation of the address beyond
lower-casing it, no check of suppressions, erasures, ages or topics, no policy version,
no webhooks. That is what the service must come close to while doing all of that.

    gunicorn -w 2 'bench.create_baseline:create_app()'   (DATABASE_URL, MAILPREFS_HASH_KEY set)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import UTC, datetime

from flask import Flask, request
from sqlalchemy import text

from mailprefs.config import normalise_database_url
from mailprefs.db import make_engine

PERSON = text(
    "INSERT INTO subscribers (public_id, email, email_hash, attributes, status, created_at, "
    "updated_at) VALUES (:public_id, :email, :hash, :attributes, 'active', :now, :now) "
    "RETURNING id"
)
EVENT = text(
    "INSERT INTO consent_events (subscriber_id, topic_id, action, source, source_detail, ip, "
    "user_agent, occurred_at, recorded_at) VALUES (:person, :topic, 'opt_in', :source, "
    ":detail, :ip, :agent, :now, :now) RETURNING id"
)
STATE = text(
    "INSERT INTO topic_subscriptions (subscriber_id, topic_id, state, changed_at, event_id) "
    "VALUES (:person, :topic, 'opted_in', :now, :event)"
)


def create_app() -> Flask:
    engine = make_engine(normalise_database_url(os.environ["DATABASE_URL"]))
    key = os.environ["MAILPREFS_HASH_KEY"].encode()
    with engine.connect() as connection:
        topics = dict(connection.execute(text("SELECT slug, id FROM topics")).all())
    app = Flask(__name__)

    @app.post("/api/v1/subscribers")
    def create():
        body = request.get_json()
        email = body["email"].strip().lower()
        (given,) = body["consents"]
        # Stored as the service stores times: naive UTC on SQLite, aware on PostgreSQL.
        now = datetime.now(UTC)
        if engine.dialect.name == "sqlite":
            now = now.replace(tzinfo=None)
        values = {
            "public_id": secrets.token_urlsafe(16),
            "email": email,
            "hash": hmac.new(key, email.encode(), hashlib.sha256).hexdigest(),
            "attributes": json.dumps(body.get("attributes") or {}),
            "topic": topics[given["topic"]],
            "source": given["source"],
            "detail": given.get("source_detail"),
            "ip": given.get("ip"),
            "agent": given.get("user_agent"),
            "now": now,
        }
        with engine.begin() as connection:
            values["person"] = connection.execute(PERSON, values).scalar_one()
            values["event"] = connection.execute(EVENT, values).scalar_one()
            connection.execute(STATE, values)
        states = dict.fromkeys(topics, "none") | {given["topic"]: "opted_in"}
        return {"id": values["public_id"], "status": "active", "topics": states}, 201

    @app.get("/healthz")
    def healthz():
        return "ok\n"

    return app
