"""`Idempotency-Key` for creating requests: a retry or a racing duplicate gets the first
answer; the same key with another body answers 409."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from mailprefs.domain import idempotency
from mailprefs.web.api.auth import Call

HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retrying with the same key returns the first answer; another body: 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def once(
    call: Call, endpoint: str, produce: Callable[[], tuple[int, BaseModel]]
) -> tuple[int, Any]:
    """Run `produce` (which writes but does not commit) at most once per key, then commit."""
    key = call.header("Idempotency-Key")
    if key is None:
        status, reply = produce()
        call.session.commit()
        return status, reply
    idempotency.check_key(key)
    scope = call.key.prefix
    digest = idempotency.fingerprint(request.get_data(cache=True))
    stored = idempotency.find(call.session, scope, endpoint, key, digest)
    if stored is not None:
        return stored.status_code, stored.response
    status, reply = produce()
    body = reply.model_dump(mode="json")
    try:
        idempotency.remember(call.session, scope, endpoint, key, digest, status, body)
        call.session.commit()
    except IntegrityError:
        # A concurrent request with the same key committed first: answer as it did.
        call.session.rollback()
        stored = idempotency.find(call.session, scope, endpoint, key, digest)
        if stored is None:
            raise
        return stored.status_code, stored.response
    return status, body
