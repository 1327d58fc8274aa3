"""Helpers of the reputation tests: a started campaign, its deliveries, reports."""

from __future__ import annotations

from sqlalchemy import func, select

from mailprefs.domain.models import AuditEntry, Subscriber
from mailprefs.domain.outbox_models import Campaign, Delivery, DeliveryStatus
from tests.conftest import bearer
from tests.support.factories import campaign_due_now, person

# Small limits, so that a test needs tens of people, not thousands.
LIMITS = {
    "MAILPREFS_RATE_MIN_SAMPLE": 20,
    "MAILPREFS_COMPLAINT_RATE_LIMIT": 0.05,
    "MAILPREFS_BOUNCE_RATE_LIMIT": 0.10,
}


def start_campaign(db, addresses: list[str], subject: str = "Spring offers") -> int:
    with db.transaction() as s:
        for address in addresses:
            person(s, address, opted_in=("offers",))
        return campaign_due_now(s, subject=subject, text="Hello!").id


def campaign(db, campaign_id: int) -> Campaign:
    with db.session(read_only=True) as s:
        row = s.get(Campaign, campaign_id)
        s.expunge(row)
        return row


def sent_to(db, campaign_id: int) -> list[str]:
    """Addresses the campaign was sent to so far, in the order sent."""
    with db.session(read_only=True) as s:
        return list(
            s.scalars(
                select(Subscriber.email)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.SENT)
                .order_by(Delivery.sent_at, Delivery.id)
            )
        )


def count_status(db, campaign_id: int, status: DeliveryStatus) -> int:
    with db.session(read_only=True) as s:
        return s.scalar(
            select(func.count(Delivery.id)).where(
                Delivery.campaign_id == campaign_id, Delivery.status == status
            )
        )


def audit_of(db, public_id: str) -> list[AuditEntry]:
    with db.session(read_only=True) as s:
        rows = list(
            s.scalars(
                select(AuditEntry).where(AuditEntry.target_id == public_id).order_by(AuditEntry.id)
            )
        )
        s.expunge_all()
        return rows


def report(client, key: str, events: list[dict]):
    """Bounces and complaints through the HTTP endpoint, as a provider's webhook would."""
    return client.post("/api/v1/events/bounces", json={"events": events}, headers=bearer(key))


def complaint(address: str) -> dict:
    return {"type": "complaint", "email": address}


def hard_bounce(address: str) -> dict:
    return {"type": "bounce", "bounce": "hard", "email": address, "diagnostic": "550 5.1.1"}
