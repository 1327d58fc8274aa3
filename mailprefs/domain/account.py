"""A staff member's own account: password change, two-factor login (TOTP, RFC 6238,
with one-time recovery codes) and login sessions (listed, revocable). Every change is
audited under the person (`user.password`, `user.totp_enable`, `user.totp_disable`,
`user.session_revoke`, `login.recovery_code`).

Invalidating every other session on a password change is the users/auth layer's (a
per-user session version); revoking one session here marks its row.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit
from mailprefs.domain.account_models import RecoveryCode, StaffSession
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.models import User
from mailprefs.domain.users import MIN_PASSWORD_LENGTH

RECOVERY_CODES = 10
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often
_hasher = PasswordHasher()


def _audit(session: Session, user: User, action: str, detail: dict | None = None) -> None:
    # Every change here is a staff member acting on their own login.
    audit.record(
        session,
        f"user:{user.id}",
        action,
        target_type="user",
        target_id=str(user.id),
        detail=detail,
    )


def check_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def change_password(session: Session, user: User, current: str, new: str) -> None:
    if not check_password(user, current):
        raise Invalid.field("current", "that is not your current password")
    if len(new) < MIN_PASSWORD_LENGTH:
        raise Invalid.field("new", f"use at least {MIN_PASSWORD_LENGTH} characters")
    if new == current:
        raise Invalid.field("new", "choose a password other than the current one")
    user.password_hash = _hasher.hash(new)
    _audit(session, user, "user.password")


# --- two-factor login ------------------------------------------------------------------


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    """The otpauth:// address an authenticator app reads (also shown as text)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()


def enable_totp(session: Session, user: User, secret: str, code: str) -> list[str]:
    """Turn two-factor login on once the app's first code matches; returns the recovery
    codes, shown once (only their hashes are kept)."""
    if user.totp_enabled_at is not None:
        raise Conflict("two-factor login is on already")
    if len(secret) < 16 or not pyotp.TOTP(secret).verify(code.strip(), valid_window=1):
        raise Invalid.field("code", "that code does not match: check the app's clock and retry")
    user.totp_secret = secret
    user.totp_enabled_at = clock.now()
    session.execute(
        update(RecoveryCode).where(RecoveryCode.user_id == user.id).values(used_at=clock.now())
    )
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_code_hash(c)) for c in codes)
    _audit(session, user, "user.totp_enable")
    return codes


def disable_totp(session: Session, user: User, password: str) -> None:
    if user.totp_enabled_at is None:
        raise Conflict("two-factor login is off already")
    if not check_password(user, password):
        raise Invalid.field("password", "that is not your password")
    user.totp_secret = None
    user.totp_enabled_at = None
    session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        .values(used_at=clock.now())
    )
    _audit(session, user, "user.totp_disable")


def verify_second_factor(session: Session, user: User, code: str) -> bool:
    """The app's current code, or an unused recovery code (used up by this)."""
    code = (code or "").strip()
    if (
        user.totp_secret
        and code.isdigit()
        and pyotp.TOTP(user.totp_secret).verify(code, valid_window=1)
    ):
        return True
    row = session.scalar(
        select(RecoveryCode).where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _code_hash(code),
            RecoveryCode.used_at.is_(None),
        )
    )
    if row is None:
        return False
    row.used_at = clock.now()
    left = session.scalar(
        select(RecoveryCode.id)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.used_at.is_(None),
            RecoveryCode.id != row.id,
        )
        .limit(1)
    )
    _audit(session, user, "login.recovery_code", {"codes_left": "some" if left else "none"})
    return True


def recovery_codes_left(session: Session, user: User) -> int:
    return len(
        session.scalars(
            select(RecoveryCode.id).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    )


# --- sessions --------------------------------------------------------------------------


def start_session(session: Session, user: User, ip: str | None, user_agent: str | None) -> str:
    now = clock.now()
    row = StaffSession(
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        ip=ip,
        user_agent=(user_agent or "")[:200] or None,
    )
    session.add(row)
    session.flush()
    return row.public_id


def session_is_live(session: Session, user_id: int, public_id: str | None) -> bool:
    """Whether this login session stands (not revoked); notes that it was seen."""
    if not public_id:
        return False
    row = session.scalar(
        select(StaffSession).where(
            StaffSession.public_id == public_id, StaffSession.user_id == user_id
        )
    )
    if row is None or row.revoked_at is not None:
        return False
    now = clock.now()
    if now - row.last_seen_at > TOUCH_EVERY:
        row.last_seen_at = now
    return True


def list_sessions(session: Session, user: User) -> list[StaffSession]:
    return list(
        session.scalars(
            select(StaffSession)
            .where(StaffSession.user_id == user.id, StaffSession.revoked_at.is_(None))
            .order_by(StaffSession.last_seen_at.desc())
        )
    )


def revoke_session(session: Session, user: User, public_id: str) -> None:
    row = session.scalar(
        select(StaffSession).where(
            StaffSession.public_id == public_id, StaffSession.user_id == user.id
        )
    )
    if row is None or row.revoked_at is not None:
        raise NotFound("no such session of yours")
    row.revoked_at = clock.now()
    _audit(session, user, "user.session_revoke", {"session": row.id})


def end_session(session: Session, public_id: str | None) -> None:
    """At logout: the session's row is closed too."""
    if public_id:
        session.execute(
            update(StaffSession)
            .where(StaffSession.public_id == public_id, StaffSession.revoked_at.is_(None))
            .values(revoked_at=clock.now())
        )
