"""The demo that `make run` loads: a few people with consent history, keys, a login.

Seeding runs once; running it again changes nothing and prints no secrets.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import click
from flask import Flask
from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain import apikeys, consent, subscribers, users
from mailprefs.domain.consent import Evidence
from mailprefs.domain.models import ConsentAction, User
from mailprefs.domain.subscribers import ConsentRequest
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import get_db
from mailprefs.migrate import sync_reference_data

DEMO_LOGIN = "ops@example.com"

PEOPLE = [
    ("alice@example.com", {"first_name": "Alice", "plan": "pro"}, ["offers", "newsletter"]),
    ("bob@example.com", {"first_name": "Bob", "plan": "free"}, ["offers"]),
    ("carol@example.com", {"first_name": "Carol", "plan": "pro"}, ["offers"]),
    ("dan@example.com", {"first_name": "Dan", "plan": "free"}, ["newsletter"]),
    ("erin@example.com", {"first_name": "Erin", "plan": "free"}, []),
]


def seed(app: Flask) -> None:
    db = get_db(app)
    hash_key = app.config["MAILPREFS_HASH_KEY"]
    with db.transaction() as session:
        sync_reference_data(session, app.config)
        if session.scalar(select(User.id).where(User.email == DEMO_LOGIN)) is not None:
            click.echo("demo data already present (create more keys with create-api-key)")
            return
        start = clock.now() - timedelta(days=30)
        for email, attributes, topics in PEOPLE:
            evidence = Evidence(
                source="web_form",
                ip="203.0.113.7",
                user_agent="demo browser",
                actor="demo",
                occurred_at=start,
            )
            # Alice's newsletter opt-in is confirmed in the story: it is recorded straight
            # in the ledger (opt-in, then confirmation), not through `register`, which
            # would queue a confirmation mail to someone already confirmed.
            confirmed = "newsletter" in topics and email.startswith("alice")
            person, _ = subscribers.register(
                session,
                email=email,
                attributes=attributes,
                hash_key=hash_key,
                consents=[
                    ConsentRequest(t, evidence)
                    for t in topics
                    if not (confirmed and t == "newsletter")
                ],
                evidence=evidence,
            )
            newsletter = get_topic(session, "newsletter")
            if confirmed:
                consent.change(session, person, newsletter, ConsentAction.OPT_IN, evidence)
                consent.confirm(
                    session,
                    person,
                    newsletter,
                    Evidence(
                        source="confirmation", actor="demo", occurred_at=start + timedelta(hours=1)
                    ),
                )
        carol = subscribers.find_by_address(session, "carol@example.com", hash_key)
        consent.opt_out(
            session,
            carol,
            get_topic(session, "offers"),
            Evidence(source="one_click", actor="demo", occurred_at=start + timedelta(days=10)),
        )
        erin = subscribers.find_by_address(session, "erin@example.com", hash_key)
        subscribers.deactivate(session, erin, Evidence(source="preference_page", actor="demo"))
        _, ops_key = apikeys.create(session, "ops", "demo ops key")
        _, marketing_key = apikeys.create(session, "marketing", "demo marketing key")
        password = secrets.token_urlsafe(12)
        users.create(session, DEMO_LOGIN, "admin", password)
    click.echo("demo data loaded; these secrets are shown once:")
    click.echo(f"  dashboard login: {DEMO_LOGIN} / {password}")
    click.echo(f"  ops API key:       {ops_key}")
    click.echo(f"  marketing API key: {marketing_key}")
