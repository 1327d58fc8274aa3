"""Forgetting an address in every free text the service stores (issue 12 item 1).

Erasure blanks the person's row; but relays, reports, staff and clients quote
addresses in text that is not linked to the person: a suppression's evidence, an audit
entry's detail, a stored idempotent answer, a complaint's resolution, a transactional
message's body. Each such column is searched for every spelling of the address
(`addresses.forms`: Unicode and punycode domains, and the \\u-escaped form JSON
documents store) and the address is redacted out of the rows that hold it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Text, cast, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from mailprefs.domain.addresses import forms, redact
from mailprefs.domain.import_models import ImportProblem
from mailprefs.domain.models import AuditEntry, IdempotencyRecord, Suppression
from mailprefs.domain.outbox_models import BounceEvent, Campaign, Complaint, Delivery

# Every column where free text may quote an address (JSON columns are searched in their
# stored text and redacted value by value). The consent ledger is not here: its context
# holds ids only, and it is append-only.
FREE_TEXT: tuple[InstrumentedAttribute, ...] = (
    Delivery.last_error,
    BounceEvent.diagnostic,
    Complaint.detail,
    Complaint.resolution,
    Suppression.lift_reason,
    Suppression.evidence,
    AuditEntry.detail,
    IdempotencyRecord.response,
    Campaign.subject,
    Campaign.text_body,
    Campaign.html_body,
    Campaign.meta,
    ImportProblem.detail,
)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _spellings(address: str) -> set[str]:
    spelled = forms(address)
    # JSON documents are stored with non-ASCII characters escaped (\u00fc).
    return spelled | {json.dumps(f)[1:-1] for f in spelled}


def _redact_value(value: Any, address: str) -> Any:
    if isinstance(value, str):
        return redact(value, address, limit=len(value) + 1000)
    if isinstance(value, dict):
        return {_redact_value(k, address): _redact_value(v, address) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, address) for v in value]
    return value


def forget(session: Session, address: str, *, subscriber_id: int, email_hash: str | None) -> int:
    """Blank what was written about this person and redact the address out of every
    other free text; returns how many rows changed. The caller commits."""
    linked_bounce = BounceEvent.subscriber_id == subscriber_id
    linked_complaint = Complaint.subscriber_id == subscriber_id
    if email_hash:
        # Reports can arrive before a person registers: linked by the hash only.
        linked_bounce = or_(linked_bounce, BounceEvent.email_hash == email_hash)
        linked_complaint = or_(linked_complaint, Complaint.email_hash == email_hash)
    session.execute(
        update(Delivery).where(Delivery.subscriber_id == subscriber_id).values(last_error=None)
    )
    session.execute(update(BounceEvent).where(linked_bounce).values(diagnostic=None))
    session.execute(update(Complaint).where(linked_complaint).values(detail=None))
    patterns = [_like(s) for s in _spellings(address)]
    changed = 0
    for column in FREE_TEXT:
        entity, is_json = column.class_, isinstance(column.type, JSON)
        matches = or_(*(cast(column, Text).ilike(p, escape="\\") for p in patterns))
        for row in session.scalars(select(entity).where(matches)):
            value = getattr(row, column.key)
            limit = getattr(column.type, "length", None) or len(value) + 1000
            redacted = (
                _redact_value(value, address) if is_json else redact(value, address, limit=limit)
            )
            if redacted != value:
                setattr(row, column.key, redacted)
                changed += 1
    session.flush()
    return changed
