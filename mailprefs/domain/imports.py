"""Import jobs: created from a file checked whole, found, cancelled, reported. Running
them (claim, batches, checkpoints) is `import_runner`'s, re-exported here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import import_models as models
from mailprefs.domain.errors import Conflict, Invalid, NotFound
from mailprefs.domain.import_models import Import, ImportProblem, ImportStatus
from mailprefs.domain.import_read import prescan
from mailprefs.domain.import_runner import Runner, claim, discard_file, run_pending

__all__ = ["Runner", "claim", "discard_file", "run_pending"]
COUNT_KEYS = models.COUNT_KEYS


def find(session: Session, public_id: str) -> Import:
    row = session.scalar(select(Import).where(Import.public_id == public_id))
    return NotFound.unless(row, "no import with this id")


def by_idempotency_key(session: Session, actor: str, key: str) -> Import | None:
    return session.scalar(
        select(Import).where(Import.created_by == actor, Import.idempotency_key == key)
    )


def cancel(session: Session, row: Import) -> Import:
    """A queued import stops at once; a running one at its next batch (what was committed
    stays, the batch in hand is not written). A finished one cannot be cancelled."""
    if row.status in models.FINISHED:
        raise Conflict(f"this import is already {row.status.value}")
    if row.status == ImportStatus.QUEUED:
        row.status, row.finished_at = ImportStatus.CANCELLED, clock.now()
    row.cancel_requested = True
    session.flush()
    return row


def first_errors(session: Session, row: Import, limit: int = 100) -> list[dict[str, Any]]:
    problems = session.scalars(
        select(ImportProblem)
        .where(ImportProblem.import_id == row.id)
        .order_by(ImportProblem.id)
        .limit(limit)
    )
    return [{"line": p.line, "field": p.field, "detail": p.detail} for p in problems]


def all_errors(session: Session, row: Import, batch: int = 5000) -> Iterator[ImportProblem]:
    """Every rejected row, in keyset batches (a report may hold a million lines)."""
    last = 0
    while True:
        chunk = session.scalars(
            select(ImportProblem)
            .where(ImportProblem.import_id == row.id, ImportProblem.id > last)
            .order_by(ImportProblem.id)
            .limit(batch)
        ).all()
        if not chunk:
            return
        yield from chunk
        last = chunk[-1].id


def view(session: Session, row: Import) -> dict[str, Any]:
    return {
        "id": row.public_id,
        "kind": row.kind.value,
        "status": row.status.value,
        "dry_run": row.dry_run,
        "sha256": row.sha256,
        "size": row.size,
        "done_bytes": row.done_offset,
        "counts": {k: int(row.counts.get(k, 0)) for k in models.COUNT_KEYS},
        "errors": first_errors(session, row),
        "error": row.error,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


def submit(
    session: Session,
    *,
    path: str,
    kind: str,
    fmt: str,
    actor: str,
    dry_run: bool = False,
    send_confirmations: bool = False,
    idempotency_key: str | None = None,
) -> Import:
    """Check a stored file from end to end (FileProblem if it cannot be imported at all),
    then queue its import. Nothing is written for a file that fails the check."""
    if kind not in (k.value for k in models.ImportKind):
        raise Invalid.field("kind", "must be subscribers or suppressions")
    scan = prescan(path, fmt, kind)
    row = Import(
        kind=models.ImportKind(kind),
        status=ImportStatus.QUEUED,
        format=fmt,
        dry_run=dry_run,
        send_confirmations=send_confirmations,
        sha256=scan.sha256,
        path=path,
        size=scan.size,
        counts=models.zero_counts(),
        done_records=0,
        done_lines=0,
        done_offset=0,
        cancel_requested=False,
        created_by=actor,
        idempotency_key=idempotency_key,
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return row
