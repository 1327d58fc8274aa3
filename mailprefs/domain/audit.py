"""The audit log: staff reads of personal data and admin actions. Never an address."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain.models import AuditEntry


def record(
    session: Session,
    actor: str,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=clock.now(),
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=detail,
        ip=ip,
    )
    session.add(entry)
    return entry
