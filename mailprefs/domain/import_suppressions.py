"""Suppression imports: another sender's unsubscribes, bounces and complaints, as
addresses or as plain SHA-256 hashes. They fill the suppression list and register nobody.

Counts: `suppressed` rows whose address is now suppressed, of which `created` are new
suppressions and `duplicates` were already on the list (or repeated in the file);
`invalid` rows refused.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import hashed, suppression
from mailprefs.domain.addresses import address_hash
from mailprefs.domain.errors import Invalid
from mailprefs.domain.import_apply import suppress
from mailprefs.domain.import_context import Context
from mailprefs.domain.import_models import HashedSuppression
from mailprefs.domain.import_read import SHA256, SUPPRESSION_REASONS, Record, fast_normalise
from mailprefs.domain.models import Subscriber


def apply_suppressions(session: Session, ctx: Context, records: list[Record]) -> None:
    """Suppress each address (or plain SHA-256 hash); registers nobody."""
    in_batch: set[str] = set()
    for record in records:
        ctx.counts["rows"] += 1
        values = record.values
        if values is None:
            ctx.problem(record.line, "row", record.problem or "unreadable row")
            continue
        raw_reason = values.get("reason")
        reason = raw_reason.strip() if isinstance(raw_reason, str) else ""
        if reason not in SUPPRESSION_REASONS:
            ctx.problem(record.line, "reason", f"must be one of {', '.join(SUPPRESSION_REASONS)}")
            continue
        email, sha = values.get("email") or "", values.get("email_sha256") or ""
        try:
            if isinstance(email, str) and email.strip():
                key = address_hash(fast_normalise(email), ctx.hash_key)
                plain = None
            elif isinstance(sha, str) and SHA256.match(sha.strip().lower()):
                key, plain = None, sha.strip().lower()
            else:
                raise Invalid.field("email", "an address or a SHA-256 hash (64 hex digits)")
        except Invalid as exc:
            ctx.problem(record.line, exc.errors[0]["field"] if exc.errors else "email", exc.detail)
            continue
        ctx.counts["suppressed"] += 1
        marker = key or plain or ""
        if marker in in_batch:
            ctx.counts["duplicates"] += 1
            continue
        in_batch.add(marker)
        if key is not None:
            known = _already(session, key)
            if not known:
                suppress(session, key, reason, ctx)
        else:
            known = session.get(HashedSuppression, plain) is not None
            if not known:
                session.add(
                    HashedSuppression(
                        sha256=plain, reason=reason, import_id=ctx.import_id, created_at=clock.now()
                    )
                )
                session.flush()
        ctx.counts["duplicates" if known else "created"] += 1


def _already(session: Session, key: str) -> bool:
    return suppression.active(session, key) is not None


def meet_existing(session: Session, ctx: Context, batch: int = 2000) -> None:
    """After a hash import: registered people whose address is on the hashed list get a
    keyed suppression now (their address is at hand; the hash alone was not)."""
    if not hashed.any_recorded(session):
        return
    last = 0
    while True:
        people = session.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.email_hash)
            .where(Subscriber.id > last, Subscriber.email.is_not(None))
            .order_by(Subscriber.id)
            .limit(batch)
        ).all()
        if not people:
            return
        last = people[-1].id
        plain = {hashed.plain_sha256(p.email): p for p in people}
        for sha, reason in session.execute(
            select(HashedSuppression.sha256, HashedSuppression.reason).where(
                HashedSuppression.sha256.in_(list(plain))
            )
        ):
            suppress(session, plain[sha].email_hash, reason, ctx)
