"""Signed tokens for links in mail: one salt per purpose, a list of keys for rotation.

A token carries a subscriber's random public id (and a topic or campaign id where the
purpose needs it), never an address. Unsubscribe and preference links live for months;
confirmation links expire in hours.
"""

from __future__ import annotations

import re
from typing import Any

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

PURPOSES = ("unsubscribe", "preferences", "confirm", "reactivate")


# How long the comma-separated topic list of a reactivation link may be (the whole token
# stays well under the 1024 characters `load` accepts).
TOPIC_LIST_MAX = 600

_ALPHABET = re.compile(r"[A-Za-z0-9_.\-]+")


class TokenInvalid(Exception):
    """Bad, tampered, truncated or foreign (signed for another purpose)."""


class TokenExpired(TokenInvalid):
    """Well signed but too old; `payload` says what it was for, to offer a new one."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__("token expired")
        self.payload = payload


class TokenService:
    def __init__(
        self,
        secret_keys: list[str],
        *,
        unsubscribe_max_age: int,
        confirm_max_age: int,
        preferences_max_age: int | None = None,
    ) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is required")
        # itsdangerous signs with the last key of the list and verifies with all;
        # SECRET_KEY lists the signing key first.
        keys = list(reversed(secret_keys))
        self._serializers = {
            purpose: URLSafeTimedSerializer(keys, salt=f"mailprefs.{purpose}")
            for purpose in PURPOSES
        }
        self._max_age = {
            "unsubscribe": unsubscribe_max_age,
            "preferences": preferences_max_age or unsubscribe_max_age,
            "confirm": confirm_max_age,
            "reactivate": confirm_max_age,
        }

    def make(self, purpose: str, payload: dict[str, Any]) -> str:
        return self._serializers[purpose].dumps(payload)

    def load(self, purpose: str, token: str) -> dict[str, Any]:
        serializer = self._serializers[purpose]
        # itsdangerous decodes leniently (a trailing non-ASCII letter still verified):
        # anything outside its URL-safe alphabet is refused before it is read.
        if not token or len(token) > 1024 or not _ALPHABET.fullmatch(token):
            raise TokenInvalid("malformed token")
        try:
            payload = serializer.loads(token, max_age=self._max_age[purpose])
        except SignatureExpired as exc:
            try:
                payload = serializer.load_payload(exc.payload)
            except BadData:
                raise TokenInvalid("malformed token") from None
            raise TokenExpired(payload if isinstance(payload, dict) else {}) from None
        except (BadData, UnicodeError, ValueError):
            raise TokenInvalid("bad signature") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("s"), str):
            raise TokenInvalid("malformed payload")
        return payload

    def unsubscribe(self, subscriber_id: str, topic: str, campaign: str | None = None) -> str:
        payload = {"s": subscriber_id, "t": topic}
        if campaign:
            payload["c"] = campaign
        return self.make("unsubscribe", payload)

    def preferences(self, subscriber_id: str, campaign: str | None = None) -> str:
        payload = {"s": subscriber_id}
        if campaign:
            payload["c"] = campaign
        return self.make("preferences", payload)

    def confirm(self, subscriber_id: str, topic: str) -> str:
        return self.make("confirm", {"s": subscriber_id, "t": topic})

    def reactivate(self, subscriber_id: str, topics: list[str]) -> str:
        """The link that lets a person who closed their account reopen it with the
        topics they asked for (comma-separated slugs; a slug holds no comma)."""
        return self.make("reactivate", {"s": subscriber_id, "t": ",".join(topics)})
