"""Small factories for tests: people in a given consent state, through the domain code."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from mailprefs.domain import consent, subscribers
from mailprefs.domain.consent import Evidence
from mailprefs.domain.models import Subscriber
from mailprefs.domain.subscribers import ConsentRequest
from mailprefs.domain.topics import get_topic

HASH_KEY = "test-hash-key"
_counter = itertools.count(1)


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
