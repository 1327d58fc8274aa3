"""VERP: a return path per message, `bounces+TOKEN@MAILPREFS_BOUNCE_DOMAIN`, whose TOKEN
names the delivery and is signed, so that a bounce coming back by mail is matched to its
delivery (and its recipient) without trusting the text of the DSN.

The token is the delivery id in base 36 and an HMAC of it (itsdangerous' Signer with a
salt of its own, the app's SECRET_KEY list for rotation), written in lowercase base32:
some relays fold the case of a local part, and 64 characters is all a local part may
have (`bounces+` + 13 + `.` + 32 at most).

A message that carries only forged tokens is recorded (audit log, no address) and
ignored: anyone can mail the bounce address, and a forged bounce must not suppress
someone who never bounced.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
from typing import Any

from itsdangerous import Signer
from sqlalchemy.orm import Session

from mailprefs.domain import audit
from mailprefs.domain.models import Subscriber
from mailprefs.domain.outbox_models import Delivery

SALT = "mailprefs.verp"
LOCAL = "bounces"
FORGED_ACTION = "bounce.forged_verp"
_TOKEN = re.compile(rb"bounces\+([0-9a-z]{1,13}\.[a-z2-7]{32})@", re.IGNORECASE)
_STATUS = re.compile(rb"\bStatus:\s*([245])\.(\d{1,3})\.(\d{1,3})", re.IGNORECASE)
_DELAYED = re.compile(rb"\bAction:\s*delayed", re.IGNORECASE)


class TokenForged(Exception):
    pass


class _Base32Signer(Signer):
    """itsdangerous' Signer, its signature in lowercase base32 (case-folding safe)."""

    def get_signature(self, value: str | bytes) -> bytes:
        value = value.encode() if isinstance(value, str) else value
        mac = self.algorithm.get_signature(self.derive_key(), value)
        return base64.b32encode(mac).rstrip(b"=").lower()

    def verify_signature(self, value: str | bytes, sig: str | bytes) -> bool:
        value = value.encode() if isinstance(value, str) else value
        sig = sig.encode() if isinstance(sig, str) else sig
        for secret_key in reversed(self.secret_keys):
            mac = self.algorithm.get_signature(self.derive_key(secret_key), value)
            if hmac.compare_digest(base64.b32encode(mac).rstrip(b"=").lower(), sig.lower()):
                return True
        return False


class VerpAddresses:
    def __init__(self, secret_keys: list[str], domain: str) -> None:
        # SECRET_KEY lists the signing key first; itsdangerous signs with the last.
        self._signer = _Base32Signer(
            list(reversed(secret_keys)), salt=SALT, digest_method=hashlib.sha1
        )
        self.domain = domain

    def address(self, delivery_id: int) -> str:
        token = self._signer.sign(_base36(delivery_id)).decode()
        return f"{LOCAL}+{token}@{self.domain}"

    def delivery_id(self, token: str) -> int:
        """The delivery a token names; TokenForged if its signature does not verify."""
        token = token.lower()
        if not self._signer.validate(token):
            raise TokenForged(token)
        return int(token.partition(".")[0], 36)


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def find_tokens(raw: bytes) -> list[str]:
    """Every VERP token in a message: its To/Delivered-To (the bounce was sent to it) and
    the Return-Path of the original it quotes (DSNs and ARF reports include it)."""
    seen: dict[str, None] = {}
    for match in _TOKEN.finditer(raw):
        seen.setdefault(match.group(1).decode("ascii").lower(), None)
    return list(seen)


def classify(raw: bytes) -> str | None:
    """hard, soft or None (a delay): the first Status field of a DSN, for a bounce whose
    recipient the DSN itself does not say (VERP says it)."""
    if _DELAYED.search(raw):
        return None
    match = _STATUS.search(raw)
    if match is None or match.group(1) == b"5":
        return "hard"
    return "soft"


def resolve(
    session: Session,
    raw: bytes,
    events: list[Any],
    addresses: VerpAddresses | None,
    *,
    source: str,
) -> list[Any] | None:
    """The events of one returned message, matched to the delivery its VERP token names:
    each takes the delivery's recipient and Message-ID. `events` unchanged when the
    message has no token (or VERP is off); one ignorable `forged_verp` event when it has
    only forged ones (recorded). None when a token is valid but names nothing we sent."""
    from mailprefs.domain.bounces import Event

    tokens = find_tokens(raw) if addresses is not None else []
    if not tokens:
        return events
    delivery = None
    forged = []
    for token in tokens:
        try:
            delivery = session.get(Delivery, addresses.delivery_id(token))
        except TokenForged:
            forged.append(token)
            continue
        if delivery is not None:
            break
    if delivery is None:
        if forged:
            audit.record(
                session,
                "system:bounces",
                FORGED_ACTION,
                target_type="verp",
                target_id=forged[0][:64],
                detail={"tokens": [t[:64] for t in forged[:5]], "source": source},
            )
            session.flush()
            # Counted as ignored by the ingestion (a type it does not act on).
            return [Event(type="forged_verp", email="", source=source)]
        return None
    subscriber = session.get(Subscriber, delivery.subscriber_id) if delivery.subscriber_id else None
    if subscriber is None or not subscriber.email:
        return []  # erased since: nothing left to suppress by address (it already is)
    if not events:
        kind = classify(raw)
        if kind is None:
            return []
        events = [Event(type="bounce", email=subscriber.email, bounce=kind, source=source)]
    # One VERP address is one recipient: a report naming others is about this one.
    first = events[0]
    return [dataclasses.replace(first, email=subscriber.email, message_id=delivery.message_id)]


def events_of(session: Session, raw: bytes, addresses: VerpAddresses | None) -> list[Any]:
    """The bounce/complaint events of one returned message (a DSN, an ARF report), by
    VERP where it carries a token, else by what the report says. Invalid when it is
    neither a report nor a message to a valid VERP address."""
    from mailprefs.domain import dsn
    from mailprefs.domain.bounces import Event
    from mailprefs.domain.errors import Invalid

    error = None
    try:
        # A dsn.Report holds the same fields as an Event.
        parsed = [Event(**dataclasses.asdict(r)) for r in dsn.parse(raw)]
    except Invalid as exc:
        parsed, error = [], exc
    source = parsed[0].source if parsed else "dsn"
    resolved = resolve(session, raw, parsed, addresses, source=source)
    if resolved is None:  # a valid token naming nothing of ours: the report alone
        resolved = parsed
    if not resolved and error is not None:
        raise error
    return resolved


def addresses_for(config: Any) -> VerpAddresses | None:
    """VERP from the app configuration: on when MAILPREFS_BOUNCE_DOMAIN is set."""
    domain = (config.get("MAILPREFS_BOUNCE_DOMAIN") or "").strip()
    return VerpAddresses(config["SECRET_KEYS"], domain) if domain else None
