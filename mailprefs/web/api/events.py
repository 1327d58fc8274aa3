"""`POST /api/v1/events/bounces`: bounces and complaints from a relay, a provider's
webhook or a mailbox that receives DSNs and ARF reports.

Two ways in: an ops (or admin) API key, or a webhook signed with
MAILPREFS_WEBHOOK_SECRET (see SIGNATURE_DOC). A signed request is accepted once: a
replay inside the time window gets the first answer and stores nothing new.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Literal

from flask import current_app, request
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, ValidationError
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from mailprefs import clock
from mailprefs.domain import bounces, idempotency, reputation, verp
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call, authenticate
from mailprefs.web.api.idempotency import HEADER, once
from mailprefs.web.api.schemas import EmailAddress, Strict
from mailprefs.web.api.spec import validation_errors
from mailprefs.web.problems import problem

SIGNATURE_HEADER = "X-Mailprefs-Signature"
TIMESTAMP_HEADER = "X-Mailprefs-Timestamp"
WINDOW_SECONDS = 300
BODY_TYPES = ("application/json", "message/rfc822")

SIGNATURE_DOC = (
    "**Authentication.** Either `Authorization: Bearer KEY` with an ops or admin key, or "
    f"a webhook signature: `{TIMESTAMP_HEADER}: <unix seconds>` and "
    f"`{SIGNATURE_HEADER}: sha256=<hex>`, where hex is HMAC-SHA256 keyed with "
    'MAILPREFS_WEBHOOK_SECRET over the bytes `timestamp + "." + body`. A timestamp more '
    f"than {WINDOW_SECONDS // 60} minutes from the server's clock is refused (401); the "
    "same signed request sent again within the window gets the first answer and records "
    "nothing new."
)
BODY_DOC = (
    "**Bodies.** `application/json`: "
    '`{"events": [{"type": "bounce", "bounce": "hard"|"soft", "email", "diagnostic"?, '
    '"at"?} or {"type": "complaint", "email", "at"?}]}` (1 to 500 events; `at` is ISO '
    "8601 with an offset). `message/rfc822`: one raw message, a delivery status "
    "notification (RFC 3464, multipart/report; report-type=delivery-status; at most 500 "
    "recipients, else 422) or an abuse "
    "report (ARF, RFC 5965, report-type=feedback-report). Events are written 100 to a "
    "transaction. A hard bounce suppresses the "
    "address; soft bounces suppress it after MAILPREFS_SOFT_BOUNCE_LIMIT within "
    "MAILPREFS_SOFT_BOUNCE_DAYS days; a complaint suppresses marketing and opens a "
    "complaint to investigate. Delays (`Action: delayed`) and feedback other than "
    "abuse or fraud are counted as ignored. Unknown addresses are suppressed by hash."
)

Diagnostic = Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")]


class BounceIn(Strict):
    type: Literal["bounce"]
    bounce: Literal["hard", "soft"]
    email: EmailAddress
    diagnostic: Diagnostic | None = None
    at: AwareDatetime | None = None


class ComplaintIn(Strict):
    type: Literal["complaint"]
    email: EmailAddress
    at: AwareDatetime | None = None


class EventsIn(Strict):
    events: list[Annotated[BounceIn | ComplaintIn, Field(discriminator="type")]] = Field(
        min_length=1, max_length=bounces.MAX_EVENTS
    )


class EventsAccepted(BaseModel):
    hard: int = Field(description="hard bounces recorded")
    soft: int = Field(description="soft bounces recorded")
    complaints: int = Field(description="complaints opened")
    suppressed: int = Field(description="addresses newly suppressed")
    ignored: int = Field(description="delays, other feedback, duplicates, unusable addresses")


SIGNATURE_HEADERS = [
    {
        "name": TIMESTAMP_HEADER,
        "in": "header",
        "required": False,
        "description": "Unix time of signing (webhooks only).",
        "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
    },
    {
        "name": SIGNATURE_HEADER,
        "in": "header",
        "required": False,
        "description": 'sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>',
        "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
    },
]


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The signature header value a webhook sender computes (also used by the tests)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _refuse(detail: str) -> Unauthorized:
    return Unauthorized(detail, www_authenticate=WWWAuthenticate("bearer"))


def verify_signature(raw: bytes) -> str:
    """The request's signature (hex) if it is valid and fresh; else 401."""
    secret = current_app.config.get("MAILPREFS_WEBHOOK_SECRET")
    stamp = request.headers.get(TIMESTAMP_HEADER, "")
    presented = request.headers.get(SIGNATURE_HEADER, "")
    if not secret:
        raise _refuse("webhook signatures are not configured; send an API key")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise _refuse(f"{TIMESTAMP_HEADER} must be the unix time of signing")
    if abs(clock.now().timestamp() - int(stamp)) > WINDOW_SECONDS:
        raise _refuse(f"the signature is older than {WINDOW_SECONDS} seconds (or from the future)")
    expected = sign(secret, stamp, raw)
    if not hmac.compare_digest(expected.encode(), presented.strip().encode()):
        raise _refuse("the signature does not match the body")
    return expected.removeprefix("sha256=")


def _events(call: Call, raw: bytes) -> list[bounces.Event] | tuple[int, list[dict[str, str]]]:
    if request.mimetype == "message/rfc822":
        # A VERP return path names the delivery; else what the report says (domain.verp).
        return verp.events_of(call.session, raw, verp.addresses_for(current_app.config))
    try:
        body = EventsIn.model_validate_json(raw or b"")
    except ValidationError as exc:
        return validation_errors(exc)
    return [
        bounces.Event(
            type=e.type,
            email=e.email,
            bounce=getattr(e, "bounce", None),
            diagnostic=getattr(e, "diagnostic", None),
            at=e.at,
            source="json",
        )
        for e in body.events
    ]


@api.route(
    "/events/bounces",
    "POST",
    summary="Bounces and complaints: JSON events, a raw DSN or an ARF report",
    description=SIGNATURE_DOC + "\n\n" + BODY_DOC,
    roles=None,
    responses={202: EventsAccepted},
    errors=(401, 403, 409, 429),
    tag="events",
    body_types=BODY_TYPES,
    headers=SIGNATURE_HEADERS + [HEADER],
)
def receive_bounces(call: Call):
    raw = request.get_data(cache=True)
    signature = None
    if request.headers.get("Authorization") or not request.headers.get(SIGNATURE_HEADER):
        call.key = authenticate(("ops",))
    else:
        signature = verify_signature(raw)
    if request.mimetype not in BODY_TYPES:
        return problem(415, f"send the body as {' or '.join(BODY_TYPES)}")
    events = _events(call, raw)
    if isinstance(events, tuple):
        status, errors = events
        detail = "the body is not valid JSON" if status == 400 else "invalid input"
        return problem(status, detail, errors=errors)
    config = current_app.config
    actor = call.actor if signature is None else "webhook"

    bounces.check(events)  # all or nothing: refused before the first chunk is written

    def produce() -> tuple[int, EventsAccepted]:
        total = bounces.Outcome()
        step = bounces.EVENTS_PER_TRANSACTION
        for start in range(0, len(events), step):
            if start:
                call.session.commit()  # short transactions: others may write in between
            outcome = reputation.ingest(
                call.session,
                events[start : start + step],
                hash_key=config["MAILPREFS_HASH_KEY"],
                thresholds=bounces.Thresholds(
                    config["MAILPREFS_SOFT_BOUNCE_LIMIT"], config["MAILPREFS_SOFT_BOUNCE_DAYS"]
                ),
                actor=actor,
                limits=reputation.Limits.from_config(config),
            )
            for name, value in outcome.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
        return 202, EventsAccepted(**total.as_dict())

    if signature is None:
        return once(call, "events.bounces", produce)
    return _once_per_signature(call, signature, raw, produce)


def _once_per_signature(call: Call, signature: str, raw: bytes, produce):
    """A signed request is acted on once; a replay gets the first answer."""
    digest = idempotency.fingerprint(raw)
    stored = idempotency.find(call.session, "webhook", "events.bounces", signature, digest)
    if stored is not None:
        return stored.status_code, stored.response
    status, reply = produce()
    body = reply.model_dump(mode="json")
    try:
        idempotency.remember(
            call.session, "webhook", "events.bounces", signature, digest, status, body
        )
        call.session.commit()
    except IntegrityError:
        # The same signed request, racing: the first one's work stands; answer as it did.
        call.session.rollback()
        stored = idempotency.find(call.session, "webhook", "events.bounces", signature, digest)
        if stored is None:
            raise
        return stored.status_code, stored.response
    return status, body
