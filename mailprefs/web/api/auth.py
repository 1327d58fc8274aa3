"""API access: `Authorization: Bearer KEY`, and the role the route asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import request
from sqlalchemy.orm import Session
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from mailprefs.domain import apikeys, audit
from mailprefs.domain.models import ApiKey, Role
from mailprefs.extensions import db_session


def _presented() -> str | None:
    """The key in `Authorization: Bearer KEY` (scheme in any case, spaces around the key
    ignored), or None."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    return presented.strip()


def current_key() -> ApiKey | None:
    """The live key this request presents, looked up once per request."""
    # Kept on the request (not on `g`, which may outlive it inside a longer app context).
    cache = request.environ
    if "mailprefs.api_key" not in cache:
        presented = _presented()
        found = apikeys.authenticate(db_session(), presented) if presented else None
        cache["mailprefs.api_key"] = found
    return cache["mailprefs.api_key"]


def rate_limit_identity() -> str:
    """Whom a rate limit counts: the authenticated key (by id), else the client address.
    Never the raw header: a made-up or re-spaced key would buy a fresh budget."""
    key = current_key() if request.headers.get("Authorization") else None
    if key is not None:
        return f"key:{key.id}"
    return "ip:" + (request.remote_addr or "unknown")


def authenticate(roles: tuple[str, ...]) -> ApiKey:
    if _presented() is None:
        raise Unauthorized(
            "send an API key as 'Authorization: Bearer KEY'",
            www_authenticate=WWWAuthenticate("bearer"),
        )
    session = db_session()
    key = current_key()
    if key is None:
        raise Unauthorized(
            "the API key is unknown or revoked", www_authenticate=WWWAuthenticate("bearer")
        )
    if session.dirty:
        session.commit()  # last_used_at, written at most once a minute
    allowed = set(roles)
    if Role.OPS in allowed:
        allowed.add(Role.ADMIN)  # admin keys can do what ops keys can
    if key.role not in allowed:
        raise Forbidden(f"a {key.role} key may not do this; it needs one of: {', '.join(roles)}")
    return key


@dataclass
class Call:
    """What a handler needs from the request, without reaching for `flask.request`."""

    key: ApiKey | None
    session: Session
    ip: str | None
    user_agent: str | None
    body: Any = None

    @classmethod
    def current(cls, key: ApiKey | None) -> Call:
        return cls(
            key=key,
            session=db_session(),
            ip=request.remote_addr,
            user_agent=request.user_agent.string or None,
        )

    @property
    def actor(self) -> str:
        return f"key:{self.key.prefix}" if self.key else "anonymous"

    @property
    def role(self) -> str | None:
        return self.key.role.value if self.key else None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.OPS, Role.ADMIN)

    def header(self, name: str) -> str | None:
        return request.headers.get(name)

    def audit(
        self,
        action: str,
        target_type: str,
        target_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record what this key did in the audit log, in the request's transaction."""
        audit.record(
            self.session,
            self.actor,
            action,
            target_type=target_type,
            target_id=target_id,
            detail=detail,
        )

    def commit(self, status: int, reply: Any) -> tuple[int, Any]:
        """Commit the request's work, then answer `reply` (built before the commit, which
        expires the rows it was read from)."""
        self.session.commit()
        return status, reply
