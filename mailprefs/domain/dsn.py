"""Reading what the mail world sends back: delivery status notifications (RFC 3464) and
abuse feedback reports (ARF, RFC 5965), both `multipart/report` (RFC 6522).

flufl.bounce finds the failed recipients (its DSN detector, and heuristics for the many
non-standard bounces in the wild); the email package reads the per-recipient `Action`,
`Status` and `Diagnostic-Code` fields that decide hard or soft. Nothing here touches the
database: the result is a list of `Report`s for `mailprefs.domain.bounces`.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from flufl.bounce import all_failures

from mailprefs.clock import as_utc
from mailprefs.domain.errors import Invalid

# RFC 3463 status codes that are permanent by class (5) but about a passing state of the
# mailbox or the system rather than the address: counted as soft, like a 4.x.x.
SOFT_PERMANENT_STATUSES = {"5.2.2", "5.3.4", "5.4.7"}
# ARF feedback types (RFC 5965 §7.3) that are a person saying "I did not want this".
COMPLAINT_FEEDBACK_TYPES = {"abuse", "fraud"}
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Report:
    """One recipient's bounce or complaint, as read from a message."""

    type: str  # "bounce" | "complaint" | "delayed"
    email: str
    bounce: str | None = None  # "hard" | "soft" for bounces
    diagnostic: str | None = None
    at: datetime | None = None
    message_id: str | None = None  # of the original message, when the report quotes it
    source: str = "dsn"  # "dsn" | "arf" | "bounce" (a non-standard bounce)


def clean(text: str | None, limit: int = 1000) -> str | None:
    """Text safe to store: no NUL or control characters (PostgreSQL refuses NUL), bounded."""
    if not text:
        return None
    text = _CONTROL.sub(" ", str(text)).replace("\r", " ").replace("\n", " ").strip()
    return re.sub(r"\s{2,}", " ", text)[:limit] or None


def parse(raw: bytes) -> list[Report]:
    """The reports in a raw message; Invalid if it is neither a DSN, an ARF report nor a
    bounce flufl.bounce recognises, or is nested too deeply to read."""
    try:
        return _parse(raw)
    except RecursionError:
        # A multipart nested thousands deep: the email package recurses per level.
        raise Invalid.field("body", "the message is nested too deeply to read") from None


def _failures(message: Message) -> tuple[set[bytes], set[bytes]]:
    """flufl.bounce's (temporary, permanent) addresses; none when one of its detectors
    trips over a message it was not written for (a bare `Subject: hi` raises IndexError
    inside it)."""
    try:
        return all_failures(message)
    except (IndexError, KeyError, ValueError, TypeError, AttributeError, UnicodeError):
        return set(), set()


def _parse(raw: bytes) -> list[Report]:
    if not raw.strip():
        raise Invalid.field("body", "the message is empty")
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if not message.keys():
        raise Invalid.field("body", "not an email message (no header fields)")
    report_type = (message.get_param("report-type") or "").lower()
    if message.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return _feedback_reports(message)
    reports = _delivery_reports(message)
    if not reports:
        raise Invalid.field(
            "body",
            "not a delivery status notification (RFC 3464), an ARF report (RFC 5965) or a "
            "recognised bounce",
        )
    return reports


# --- DSN ---------------------------------------------------------------------------------


def _delivery_reports(message: Message) -> list[Report]:
    temporary, permanent = _failures(message)
    fields = _recipient_fields(message)
    # When it bounced: the recipient's last attempt, else the report's date.
    reported = _date(message.get("Date")) or _date(_dsn_per_message(message).get("Arrival-Date"))
    original_id = _original_message_id(message)
    source = "dsn" if fields else "bounce"
    reports: list[Report] = []
    for address, permanent_failure in [(a, True) for a in sorted(permanent)] + [
        (a, False) for a in sorted(temporary - permanent)
    ]:
        text = address.decode("ascii", "replace").strip().lower()
        block = fields.get(text, {})
        action = (block.get("action") or "").lower()
        status = _status(block.get("status")) or _status(block.get("diagnostic-code"))
        diagnostic = clean(block.get("diagnostic-code") or block.get("status"))
        if not permanent_failure or action.startswith("delayed"):
            # A delay is a warning: the sending server is still trying. Not a bounce.
            kind = "delayed"
        elif status is None:
            # flufl.bounce found a permanent failure without a status (a non-standard
            # bounce): permanent it is.
            kind = "hard"
        elif status.startswith("4.") or status in SOFT_PERMANENT_STATUSES:
            kind = "soft"
        else:
            kind = "hard"
        reports.append(
            Report(
                type="delayed" if kind == "delayed" else "bounce",
                email=text,
                bounce=None if kind == "delayed" else kind,
                diagnostic=diagnostic,
                at=_date(block.get("last-attempt-date")) or reported,
                message_id=original_id,
                source=source,
            )
        )
    return reports


def _dsn_blocks(message: Message) -> list[Message]:
    """The header blocks of every message/delivery-status part: per-message, then one per
    recipient (RFC 3464 §2.1)."""
    blocks: list[Message] = []
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status" and part.is_multipart():
            blocks.extend(p for p in part.get_payload() if isinstance(p, Message))
    return blocks


def _dsn_per_message(message: Message) -> Message:
    blocks = _dsn_blocks(message)
    return blocks[0] if blocks else Message()


def _recipient_fields(message: Message) -> dict[str, dict[str, str]]:
    """Per-recipient fields (RFC 3464 §2.3), keyed by the lower-cased address."""
    found: dict[str, dict[str, str]] = {}
    for block in _dsn_blocks(message):
        fields = {k.lower(): str(v) for k, v in block.items()}
        for name in ("original-recipient", "final-recipient"):
            value = fields.get(name, "")
            kind, _, address = value.partition(";")
            address = address.strip().strip("<>").strip().lower()
            if kind.strip().lower() == "rfc822" and address:
                found.setdefault(address, fields)
    return found


def _status(value: str | None) -> str | None:
    match = _STATUS.search(value or "")
    return ".".join(match.groups()) if match else None


# --- ARF ---------------------------------------------------------------------------------


def _feedback_reports(message: Message) -> list[Report]:
    feedback = None
    original: Message | None = None
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/feedback-report" and feedback is None:
            feedback = _feedback_fields(part)
        elif content_type in ("message/rfc822", "text/rfc822-headers") and original is None:
            original = _embedded(part)
    if feedback is None:
        raise Invalid.field("body", "an ARF report needs a message/feedback-report part")
    feedback_type = (feedback.get("feedback-type") or "").strip().lower()
    if not feedback_type:
        raise Invalid.field("body", "the feedback report has no Feedback-Type")
    recipients = [a for _, a in getaddresses(feedback.get_all("original-rcpt-to", []))]
    if not recipients and original is not None:
        recipients = [a for _, a in getaddresses(original.get_all("To", []))]
    recipients = [r.strip().lower() for r in recipients if r and "@" in r]
    if not recipients:
        raise Invalid.field(
            "body", "the report names no recipient (no Original-Rcpt-To, no To in the original)"
        )
    at = _date(feedback.get("arrival-date") or feedback.get("received-date"))
    message_id = original.get("Message-ID") if original is not None else None
    kind = "complaint" if feedback_type in COMPLAINT_FEEDBACK_TYPES else "ignored"
    return [
        Report(
            type=kind,
            email=r,
            diagnostic=clean(f"feedback-type {feedback_type}"),
            at=at,
            message_id=clean(message_id, 255),
            source="arf",
        )
        for r in dict.fromkeys(recipients)
    ]


def _feedback_fields(part: Message) -> Message:
    # The email package parses message/feedback-report as one block of header fields
    # (or leaves it as text, depending on how it was declared): read it as headers.
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = part.get_payload(decode=True) or b""
    return email.message_from_bytes(text.lstrip(), policy=email.policy.compat32)


def _embedded(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = part.get_payload(decode=True)
    if not text:
        return None
    return email.message_from_bytes(text.lstrip(), policy=email.policy.compat32)


def _original_message_id(message: Message) -> str | None:
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            embedded = _embedded(part)
            if embedded is not None and embedded.get("Message-ID"):
                return clean(str(embedded["Message-ID"]), 255)
    return None


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return as_utc(parsed)
