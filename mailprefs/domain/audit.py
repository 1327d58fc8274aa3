"""The audit log: staff reads of personal data and admin actions. Never an address."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain.models import AuditEntry

# Where the request being served came from. The web layer sets it for each request, so
# that entries recorded by domain code (which knows nothing of requests) carry the IP too.
_origin: ContextVar[str | None] = ContextVar("audit_origin", default=None)


def set_origin(ip: str | None) -> None:
    """Entries recorded from now on (in this thread or task) without an `ip` of their
    own carry this one; None when the request is over."""
    _origin.set(ip)


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
        ip=ip if ip is not None else _origin.get(),
    )
    session.add(entry)
    return entry


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    """Entries newest first, and how many match in all. `actor` and `target` (a target
    id) match exactly; `action` matches a prefix (`campaign.` finds every campaign
    action); `since` is inclusive, `until` exclusive."""
    conditions = []
    if actor:
        conditions.append(AuditEntry.actor == actor)
    if action:
        conditions.append(AuditEntry.action.like(_escape_like(action) + "%", escape="\\"))
    if target:
        conditions.append(AuditEntry.target_id == target)
    if since is not None:
        conditions.append(AuditEntry.at >= since)
    if until is not None:
        conditions.append(AuditEntry.at < until)
    total = session.scalar(select(func.count(AuditEntry.id)).where(*conditions)) or 0
    rows = session.scalars(
        select(AuditEntry)
        .where(*conditions)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total
