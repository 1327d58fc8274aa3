"""Data for dashboard tests, made through the domain code."""

from __future__ import annotations

from datetime import timedelta

from mailprefs import clock
from mailprefs.domain import campaigns
from mailprefs.domain.outbox_models import CampaignKind
from mailprefs.domain.topics import get_topic
from tests.support.factories import person


def people(session, n: int, topic: str = "offers") -> list:
    return [person(session, opted_in=(topic,)) for _ in range(n)]


def campaign(
    db,
    *,
    subject: str = "November offers",
    topic: str = "offers",
    in_minutes: int | None = 60,
    kind: CampaignKind = CampaignKind.CAMPAIGN,
    html: str | None = "<p>Hello {{ first_name }}</p>",
) -> str:
    with db.transaction() as s:
        row = campaigns.create(
            s,
            topic=get_topic(s, topic),
            subject=subject,
            text="Hello {{ first_name }}",
            html=html,
            send_at=None if in_minutes is None else clock.now() + timedelta(minutes=in_minutes),
            audience=None,
            created_by="test",
            kind=kind,
        )
        return row.public_id
