"""Small factories for tests: people in a given consent state, through the domain code."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from mailprefs.domain import consent, policies, subscribers
from mailprefs.domain.consent import Evidence
from mailprefs.domain.models import Subscriber
from mailprefs.domain.subscribers import ConsentRequest
from mailprefs.domain.topics import get_topic

if TYPE_CHECKING:
    from mailprefs.domain.outbox_models import Campaign

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


def campaign_due_now(
    session: Session,
    *,
    subject: str = "Hello",
    text: str = "Hi!",
    html: str | None = None,
    topic: str = "offers",
) -> Campaign:
    """A campaign on `topic` to everyone opted in, scheduled for now: the worker's next
    pass fires and sends it."""
    from mailprefs import clock
    from mailprefs.domain import campaigns

    content = campaigns.Content(subject, text, html)
    return campaigns.create_scheduled(
        session, get_topic(session, topic), content, at=clock.now(), actor="test"
    )


def started_campaign(
    session: Session, subject: str = "Hi {{ first_name }}", text: str = "Hello!"
) -> int:
    """A campaign on `offers` to everyone opted in, fired now (expansion is the worker's
    part); its id."""
    from mailprefs import clock
    from mailprefs.domain import campaigns

    campaign = campaign_due_now(session, subject=subject, text=text)
    campaigns.fire_due(session, clock.now())
    return campaign.id


def raw_person(
    session: Session,
    email_hash: str,
    status: tuple[Any, str | None],
    *,
    state: tuple[int, Any] = (0, None),
    suppressed: Any = None,
    attributes: Any = None,
    email: str | None | bool = True,
    at: datetime,
) -> Subscriber:
    """A person written straight into the tables, past the domain's checks: any status
    (with its reason), any state for one topic (topic id, state or None), a suppression
    of their hash, any attributes, an address or none. For the gate's property tests."""
    from mailprefs.domain.models import Suppression, TopicSubscription

    row = Subscriber(
        email=f"p{email_hash[-12:]}@example.com" if email is True else (email or None),
        email_hash=email_hash,
        attributes=attributes,
        status=status[0],
        status_reason=status[1],
        created_at=at,
        updated_at=at,
    )
    session.add(row)
    session.flush()
    topic_id, topic_state = state
    if topic_state is not None:
        session.add(
            TopicSubscription(
                subscriber_id=row.id,
                topic_id=topic_id,
                state=topic_state,
                changed_at=at,
                event_id=0,
            )
        )
    if suppressed is not None:
        session.add(
            Suppression(email_hash=email_hash, reason=suppressed, source="test", created_at=at)
        )
    return row
