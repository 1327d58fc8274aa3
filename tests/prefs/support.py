"""Helpers for the recipient-page tests: people, tokens (expired, foreign, old-key), a
snapshot of everything a link could change, and mail captured by the worker."""

from __future__ import annotations

import email
import email.policy
import re
import time
from pathlib import Path
from typing import Any

from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from mailprefs import clock
from mailprefs.delivery.transport import captured_files
from mailprefs.delivery.worker import Worker
from mailprefs.domain import campaigns
from mailprefs.domain.models import ConsentEvent, Subscriber, Suppression, TopicSubscription
from mailprefs.domain.outbox_models import Campaign, Complaint, Delivery
from mailprefs.domain.topics import get_topic
from tests.support.factories import person

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) PrefsTest/1.0"


def make_person(db, email_address: str | None = None, **kw: Any) -> str:
    """A registered person (see `factories.person`); returns their public id."""
    with db.transaction() as s:
        return person(s, email_address, **kw).public_id


def aged_token(app: Flask, purpose: str, payload: dict[str, Any], seconds_old: int) -> str:
    """A token signed with the app's signing key, as if made `seconds_old` ago."""

    class Backdated(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - seconds_old

    keys = list(reversed(app.config["SECRET_KEYS"]))
    return URLSafeTimedSerializer(keys, salt=f"mailprefs.{purpose}", signer=Backdated).dumps(
        payload
    )


def snapshot(db) -> dict[str, Any]:
    """Everything a recipient link could change, read in a fresh transaction."""
    with db.session(read_only=True) as s:
        return {
            "events": s.execute(
                select(ConsentEvent.id, ConsentEvent.action, ConsentEvent.source)
            ).all(),
            "states": sorted(
                s.execute(
                    select(
                        TopicSubscription.subscriber_id,
                        TopicSubscription.topic_id,
                        TopicSubscription.state,
                        TopicSubscription.event_id,
                    )
                ).all()
            ),
            "people": sorted(
                s.execute(select(Subscriber.id, Subscriber.status, Subscriber.updated_at)).all()
            ),
            "complaints": s.execute(select(Complaint.id)).all(),
            "suppressions": s.execute(select(Suppression.id, Suppression.lifted_at)).all(),
            "campaigns": s.execute(select(Campaign.id)).all(),
            "deliveries": s.execute(select(Delivery.id, Delivery.status)).all(),
        }


def events_of(db, public_id: str) -> list[ConsentEvent]:
    with db.session(read_only=True) as s:
        return list(
            s.scalars(
                select(ConsentEvent)
                .options(selectinload(ConsentEvent.topic))
                .join(Subscriber, Subscriber.id == ConsentEvent.subscriber_id)
                .where(Subscriber.public_id == public_id)
                .order_by(ConsentEvent.id)
            )
        )


def states_of(db, public_id: str) -> dict[str, str]:
    from mailprefs.domain import consent

    with db.session(read_only=True) as s:
        subscriber = s.scalar(select(Subscriber).where(Subscriber.public_id == public_id))
        return {slug: state.value for slug, state in consent.states(s, subscriber).items()}


def send_campaign(app: Flask, db, topic: str = "offers", subject: str = "News") -> str:
    """A marketing campaign to everyone allowed, sent now through the worker (mail is
    captured as .eml files); returns the campaign's public id."""
    with db.transaction() as s:
        campaign = campaigns.create(
            s,
            topic=get_topic(s, topic),
            subject=subject,
            text="Hello {{ first_name }}, here is our news.",
            html="<p>Hello {{ first_name }}, here is our news.</p>",
            send_at=None,
            audience=None,
            created_by="test",
        )
        campaigns.schedule(s, campaign, clock.now(), "test")
        public_id = campaign.public_id
    Worker(app).run_due()
    return public_id


def captured(app: Flask, to: str | None = None) -> list[email.message.EmailMessage]:
    """The captured messages (to `to`, if given), oldest first."""
    messages = [
        email.message_from_bytes(Path(p).read_bytes(), policy=email.policy.default)
        for p in captured_files(app.config["MAILPREFS_MAIL_CAPTURE_DIR"])
    ]
    return [m for m in messages if to is None or m["To"] == to]


def unsubscribe_link(message: email.message.EmailMessage) -> str:
    """The https link of the List-Unsubscribe header (RFC 2369 angle brackets)."""
    return re.search(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"])).group(1)


def link_in_text(message: email.message.EmailMessage, kind: str) -> str:
    """The first link to /u/, /preferences/ or /confirm/ in the text part."""
    text = message.get_body(("plain",)).get_content()
    return re.search(rf"https?://\S+/{kind}/[A-Za-z0-9_.\-]+", text).group(0)


def path_of(url: str) -> str:
    """`https://host/u/TOKEN` -> `/u/TOKEN` (for the test client)."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]
