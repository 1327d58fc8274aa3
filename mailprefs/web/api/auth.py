"""API access: `Authorization: Bearer KEY`, and the role the route asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import request
from sqlalchemy.orm import Session
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from mailprefs.domain import apikeys
from mailprefs.domain.models import ApiKey, Role
from mailprefs.extensions import db_session


def authenticate(roles: tuple[str, ...]) -> ApiKey:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized(
            "send an API key as 'Authorization: Bearer KEY'",
            www_authenticate=WWWAuthenticate("bearer"),
        )
    session = db_session()
    key = apikeys.authenticate(session, presented.strip())
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
