"""Idempotency keys: the first answer to a request is stored and replayed on retries."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain.errors import Conflict, Invalid
from mailprefs.domain.models import IdempotencyRecord

MAX_KEY_LENGTH = 255


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Invalid.field("Idempotency-Key", "must be 1 to 255 printable characters")


def find(
    session: Session, scope: str, endpoint: str, key: str, request_hash: str
) -> IdempotencyRecord | None:
    """The stored answer for this key, or None; Conflict when the body differs."""
    record = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope,
            IdempotencyRecord.endpoint == endpoint,
            IdempotencyRecord.key == key,
        )
    )
    if record is not None and record.request_hash != request_hash:
        raise Conflict("this Idempotency-Key was used with a different request body")
    return record


def remember(
    session: Session,
    scope: str,
    endpoint: str,
    key: str,
    request_hash: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    session.add(
        IdempotencyRecord(
            scope=scope,
            endpoint=endpoint,
            key=key,
            request_hash=request_hash,
            status_code=status_code,
            response=response,
            created_at=clock.now(),
        )
    )
    session.flush()
