"""Small factories for tests: people in a given consent state, through the domain code."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mailprefs.domain import consent, policies, subscribers
from mailprefs.domain.consent import Evidence
from mailprefs.domain.models import Subscriber
from mailprefs.domain.subscribers import ConsentRequest
from mailprefs.domain.topics import get_topic

HASH_KEY = "test-hash-key"
NOTICE_SETTINGS = policies.NoticeSettings(
    notice_days=30, org_name="ICVT Ltd.", contact_email="support@example.test"
)
_counter = itertools.count(1)


def announcement(
    version: str, effective_at: datetime, announce_at: datetime | None = None
) -> policies.Announcement:
    """A policy change with made-up wording (announced now when `announce_at` is None)."""
    return policies.Announcement(
        version=version,
        title=f"Policy {version}",
        summary="We now say how long we keep each kind of data.",
        url=f"https://example.test/privacy/{version}",
        effective_at=effective_at,
        announce_at=announce_at,
    )


def evidence(source: str = "api", **kw: Any) -> Evidence:
    return Evidence(source=source, actor="test", **kw)


def person(
    session: Session,
    email: str | None = None,
    *,
    opted_in: tuple[str, ...] = (),
    confirmed: bool = True,
    attributes: dict[str, Any] | None = None,
) -> Subscriber:
    """A registered person opted in to `opted_in` (double opt-in topics confirmed unless
    `confirmed=False`)."""
    email = email or f"person{next(_counter)}@example.com"
    subscriber, _ = subscribers.register(
        session,
        email=email,
        attributes=attributes or {},
        consents=[ConsentRequest(t, evidence()) for t in opted_in],
        hash_key=HASH_KEY,
        evidence=evidence(),
    )
    if confirmed:
        for slug in opted_in:
            topic = get_topic(session, slug)
            if topic.double_opt_in:
                consent.confirm(session, subscriber, topic, evidence("confirmation"))
    session.flush()
    return subscriber
