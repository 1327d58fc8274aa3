"""API keys: random, shown once, stored only as a hash, with a visible prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain.errors import Invalid, NotFound
from mailprefs.domain.models import ApiKey, Role

# Touching last_used_at on every request would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(session: Session, role: str, name: str | None = None) -> tuple[ApiKey, str]:
    """A new key; returns the row and the secret, which is never seen again."""
    try:
        role_value = Role(role)
    except ValueError:
        raise Invalid.field("role", f"role must be one of {[r.value for r in Role]}") from None
    prefix = "mp_" + secrets.token_hex(4)
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        name=name or f"{role_value} key",
        role=role_value,
        prefix=prefix,
        key_hash=_digest(secret),
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return row, secret


def authenticate(session: Session, presented: str) -> ApiKey | None:
    """The live key matching `presented`, or None. Updates last-used (coarsely)."""
    if not presented or len(presented) > 200:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == _digest(presented)))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _digest(presented)):
        return None
    now = clock.now()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
    return row


def revoke(session: Session, prefix: str) -> ApiKey:
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None:
        raise NotFound(f"no API key with prefix {prefix!r}")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))
