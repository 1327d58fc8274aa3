"""A policy version written straight into its table, for tests that need one announced
in the past and in force: `policies.announce()` refuses such dates, as it should."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mailprefs.domain.outbox_models import PolicyKind, PolicyVersion


def policy_version(
    session: Session, version: str, effective_at: datetime, announce_at: datetime, **columns: Any
) -> PolicyVersion:
    """A policy change with made-up wording; `columns` set any other column."""
    values = {
        "title": "t",
        "summary": "s",
        "url": "https://x.test/p",
        "kind": PolicyKind.CHANGE,
        "created_at": announce_at,
        **columns,
    }
    row = PolicyVersion(
        version=version, effective_at=effective_at, announce_at=announce_at, **values
    )
    session.add(row)
    session.flush()
    return row
