"""Test copies of a campaign: marked copies for staff addresses, sent through the outbox.

Asking for test copies queues, per staff address, a campaign of kind `test` (the
campaign's content as it stands now, the address in `meta`) with one outbox row, and
audits the request; the web request never talks to a relay. The worker sends these rows
ahead of everything else (`mailprefs.delivery.test_copies`): it asks the gate once, at
send (`gate.decide_test_copy`, against the staff addresses as they are then), and builds
the message once. Test copies count in no campaign's progress.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import addresses, audit, campaigns
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import User
from mailprefs.domain.outbox_models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
)


def staff_addresses(session: Session, configured: str | None) -> set[str]:
    """The addresses of active dashboard logins and those listed in
    MAILPREFS_TEST_ADDRESSES (`configured`, comma-separated)."""
    listed = {a.strip().lower() for a in (configured or "").split(",") if a.strip()}
    return listed | set(session.scalars(select(User.email).where(User.active)))


def queue(
    session: Session,
    campaign: Campaign,
    emails: list[str],
    *,
    staff: set[str],
    actor: str,
) -> list[str]:
    """Queue one test copy of `campaign` per address; the normalised addresses, in order.

    Invalid (naming `emails.N`) for an address that is malformed or not a staff address:
    a request for copies to the public is refused whole, nothing queued.
    """
    normalised: list[str] = []
    for i, raw in enumerate(emails):
        address = addresses.normalise(raw, field=f"emails.{i}")
        if address not in staff:
            raise Invalid.field(f"emails.{i}", "test copies go to staff addresses only")
        if address not in normalised:
            normalised.append(address)
    now = clock.now()
    for address in normalised:
        copy = campaigns.create(
            session,
            topic=campaign.topic,
            **campaigns.content_of(campaign)._asdict(),
            send_at=None,
            audience=None,
            created_by=actor,
            kind=CampaignKind.TEST,
        )
        copy.status, copy.started_at, copy.expansion_done = CampaignStatus.SENDING, now, True
        copy.meta = {"test_of": campaign.public_id, "to": address}
        session.add(
            Delivery(
                campaign_id=copy.id,
                subscriber_id=None,
                status=DeliveryStatus.QUEUED,
                priority=copy.priority,
                attempts=0,
                next_attempt_at=now,
            )
        )
    # Counted, not listed: the audit log holds no addresses.
    audit.record(
        session,
        actor,
        "campaign.test",
        target_type="campaign",
        target_id=campaign.public_id,
        detail={"copies": len(normalised)},
    )
    session.flush()
    return normalised
