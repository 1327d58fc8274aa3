"""The suppression list: addresses never to be mailed, known only by their keyed hash."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.models import Suppression, SuppressionReason

# Reasons that stop administrative mail too. A complaint stops marketing only: the
# person is still registered and must still hear of policy changes and their account.
BLOCKS_ADMINISTRATIVE = {
    SuppressionReason.BOUNCE,
    SuppressionReason.ERASED,
    SuppressionReason.UNDERAGE,
    SuppressionReason.MANUAL,
}


def active(session: Session, email_hash: str) -> Suppression | None:
    return session.scalar(
        select(Suppression).where(
            Suppression.email_hash == email_hash, Suppression.lifted_at.is_(None)
        )
    )


def history(session: Session, email_hash: str) -> list[Suppression]:
    return list(
        session.scalars(
            select(Suppression).where(Suppression.email_hash == email_hash).order_by(Suppression.id)
        )
    )


def add(
    session: Session,
    email_hash: str,
    reason: SuppressionReason,
    *,
    source: str,
    actor: str | None = None,
    evidence: dict[str, Any] | None = None,
    supersede: bool = False,
) -> Suppression:
    """Suppress an address. An existing active suppression is kept, unless `supersede`
    (erasure), which lifts it in favour of the new reason."""
    current = active(session, email_hash)
    if current is not None:
        if not supersede or current.reason == reason:
            return current
        current.lifted_at = clock.now()
        current.lifted_by = actor or "system"
        current.lift_reason = f"superseded by {reason.value}"
        session.flush()
    row = Suppression(
        email_hash=email_hash,
        reason=reason,
        source=source,
        evidence=evidence,
        created_at=clock.now(),
        created_by=actor,
    )
    session.add(row)
    session.flush()
    return row


def lift(session: Session, suppression_id: int, *, actor: str, reason: str) -> Suppression:
    """Lift a suppression, with a written reason, audited. Erasures cannot be lifted."""
    row = session.get(Suppression, suppression_id)
    if row is None:
        raise NotFound("no such suppression")
    if row.lifted_at is not None:
        raise Conflict("this suppression was already lifted")
    if row.reason in (SuppressionReason.ERASED, SuppressionReason.UNDERAGE):
        raise Conflict("an erasure cannot be undone: the address stays suppressed")
    if not reason or not reason.strip():
        raise Invalid.field("reason", "a written reason is required")
    row.lifted_at = clock.now()
    row.lifted_by = actor
    row.lift_reason = reason.strip()
    audit.record(
        session,
        actor,
        "suppression.lift",
        target_type="suppression",
        target_id=str(row.id),
        detail={"reason": reason.strip(), "was": row.reason.value},
    )
    session.flush()
    return row
