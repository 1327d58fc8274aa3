"""Dashboard logins: argon2id (memory-hard) password hashes, lockout after failures."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain.addresses import normalise
from mailprefs.domain.errors import Conflict, Invalid
from mailprefs.domain.models import Role, User

# Marketing logins see and compose campaigns only (the dashboard keeps them there).
STAFF_ROLES = (Role.MARKETING, Role.OPS, Role.ADMIN)
MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()


def create(session: Session, email: str, role: str, password: str) -> User:
    address = normalise(email)
    if role not in {r.value for r in STAFF_ROLES}:
        raise Invalid.field("role", "a dashboard login is marketing, ops or admin")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid.field("password", f"use at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict("a login with this email exists")
    user = User(
        email=address,
        password_hash=_hasher.hash(password),
        role=Role(role),
        created_at=clock.now(),
    )
    session.add(user)
    session.flush()
    return user


def verify(
    session: Session, email: str, password: str, *, max_failures: int, lockout: timedelta
) -> User | None:
    """The user if the password is right and the login is not locked; else None.

    After `max_failures` wrong passwords in a row the login is locked for `lockout`;
    a locked login answers as a wrong password does, so it tells an attacker nothing.
    """
    try:
        address = normalise(email)
    except Invalid:
        return None
    user = session.scalar(select(User).where(User.email == address, User.active))
    now = clock.now()
    if user is None:
        _hasher.hash(password)  # same cost as a real check: no timing oracle
        return None
    if user.locked_until is not None and user.locked_until > now:
        # The same argon2 work as any other answer: a quick "locked" would tell an
        # attacker which logins exist (issue 13 finding 7).
        with contextlib.suppress(VerificationError, InvalidHashError):
            _hasher.verify(user.password_hash, password)
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        if user.failed_logins >= max_failures:
            user.locked_until = now + lockout
            user.failed_logins = 0
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    return user


def end_sessions(user: User) -> None:
    """Every session cookie issued to this login stops working (logout, password change):
    the cookie carries the version, which moves on here."""
    user.session_version = (user.session_version or 0) + 1


def set_password(session: Session, user: User, password: str) -> None:
    """A new password; every existing session of the login ends with the old one."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid.field("password", f"use at least {MIN_PASSWORD_LENGTH} characters")
    user.password_hash = _hasher.hash(password)
    end_sessions(user)
    session.flush()


def for_session(session: Session, session_id: str) -> User | None:
    """The active login a session cookie's id (`<user id>.<session version>`) names, or
    None when it is malformed, unknown, inactive or of an ended session."""
    user_id, dot, version = session_id.partition(".")
    if not (user_id.isdigit() and dot and version.isdigit()):
        return None
    user = session.get(User, int(user_id))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user
