"""A complaint as the preference page records it, for tests that need one on screen."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailprefs.domain import complaints
from mailprefs.domain.models import Subscriber
from mailprefs.domain.outbox_models import Complaint
from tests.support.factories import evidence, person


def page_complaint(
    session: Session, address: str = "complainer@example.com"
) -> tuple[Subscriber, Complaint]:
    """Someone opted in to offers reports a mail from the preference page, in words (a
    complaint suppression follows, as for every complaint)."""
    someone = person(session, address, opted_in=("offers",))
    row = complaints.report(
        session,
        subscriber=someone,
        email_hash=None,
        source="preference_page",
        evidence=evidence("preference_page"),
        detail="I never asked for this",
    )
    return someone, row
