"""Hashed suppressions: another sender's list, known only by plain SHA-256 of addresses.

They cannot be matched against our keyed hashes, so each is checked the moment an
address is met (registration, import) and turned into an ordinary keyed suppression.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs.domain import suppression
from mailprefs.domain.import_models import HashedSuppression
from mailprefs.domain.models import Suppression, SuppressionReason

# An unsubscribe elsewhere becomes a manual suppression: the conservative reading (never
# mailed) until ops lift it.
EXTERNAL_REASONS = {
    "bounce": SuppressionReason.BOUNCE,
    "complaint": SuppressionReason.COMPLAINT,
    "unsubscribe": SuppressionReason.MANUAL,
    "manual": SuppressionReason.MANUAL,
}


def plain_sha256(normalised_address: str) -> str:
    return hashlib.sha256(normalised_address.encode()).hexdigest()


def meet(session: Session, normalised_address: str, keyed_hash: str) -> Suppression | None:
    """If another sender suppressed this address, suppress it here too (and return it)."""
    row = session.get(HashedSuppression, plain_sha256(normalised_address))
    if row is None:
        return None
    return suppression.add(
        session,
        keyed_hash,
        EXTERNAL_REASONS[row.reason],
        source="import",
        evidence={"hashed_suppression": True, "reason": row.reason},
    )


def any_recorded(session: Session) -> bool:
    return session.scalar(select(HashedSuppression.sha256).limit(1)) is not None
