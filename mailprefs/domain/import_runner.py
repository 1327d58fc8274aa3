"""Running imports: claimed by one worker under a lease, run in bounded batches, each
committed together with its checkpoint.

A `kill -9` loses at most the batch in hand, which was never committed: the next worker
to claim the job (once the lease expires) reopens the file at the checkpoint's byte
offset, with the counts and the "already seen" bitmap as they were committed. So no row
is lost and none is applied twice.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, or_, select, text, update
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.db import Database
from mailprefs.domain import hashed
from mailprefs.domain.import_apply import apply_batch
from mailprefs.domain.import_context import Context, Seen, load_context
from mailprefs.domain.import_models import (
    FINISHED,
    Import,
    ImportKind,
    ImportProblem,
    ImportStatus,
    zero_counts,
)
from mailprefs.domain.import_read import FileProblem, Reader, Record
from mailprefs.domain.import_suppressions import apply_suppressions, meet_existing
from mailprefs.domain.outbox_models import Campaign, CampaignKind
from mailprefs.domain.policies import OPEN

log = logging.getLogger(__name__)
ATTEMPTS = 3  # a batch that fails (a racing registration, a lost connection) is retried
ProgressFn = Callable[[Import], None]
# SQLite settings of the connection that applies the batches, put back afterwards. A
# batch dirties pages all over the two random-keyed unique indexes (email_hash,
# public_id): a larger page cache keeps them from spilling mid-transaction and from being
# read again by the next batch (SQLite keeps one connection's cache across its
# transactions), and a longer write-ahead log before a checkpoint copies each hot index
# page into the database file once for many batches instead of once for a few.
# synchronous stays as configured: a commit must survive `kill -9` as every other does.
SQLITE_BULK = {"cache_size": -16384, "wal_autocheckpoint": 16384}


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """A batch allocates a few objects a row, nearly all freed by their reference counts;
    left on, the cycle collector would walk every live object of the process (the app's
    included) many times a batch. It runs once after the batch instead."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
            gc.collect(1)


def claim(db: Database, owner: str, lease_seconds: int, import_id: int | None = None) -> int | None:
    """Take the oldest queued import (or one whose worker's lease ran out); its id."""
    now = clock.now()
    claimable = or_(
        Import.status == ImportStatus.QUEUED,
        (Import.status == ImportStatus.RUNNING)
        & ((Import.lease_until < now) | (Import.owner == owner)),
    )
    query = select(Import.id).where(claimable).order_by(Import.id).limit(1)
    if import_id is not None:
        query = query.where(Import.id == import_id)
    # Looked for without the write lock: an idle worker asks every few seconds.
    with db.session(read_only=True) as session:
        found = session.scalar(query)
    if found is None:
        return None
    with db.transaction() as session:
        taken = session.execute(
            update(Import)
            .where(Import.id == found, claimable)
            .values(
                status=ImportStatus.RUNNING,
                owner=owner,
                lease_until=now + timedelta(seconds=lease_seconds),
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken != 1:
            return None
        session.execute(
            update(Import)
            .where(Import.id == found, Import.started_at.is_(None))
            .values(started_at=now)
            .execution_options(synchronize_session=False)
        )
    return found


class Runner:
    """Runs one claimed import to its end (or until stopped, cancelled or its lease lost)."""

    def __init__(
        self,
        db: Database,
        owner: str,
        *,
        hash_key: str,
        batch_size: int,
        lease_seconds: int,
        stop: threading.Event | None = None,
        on_progress: ProgressFn | None = None,
    ) -> None:
        self.db, self.owner, self.hash_key = db, owner, hash_key
        self.batch_size, self.lease = batch_size, timedelta(seconds=lease_seconds)
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.deadline: float | None = None

    def run(self, import_id: int, *, seconds: float | None = None) -> ImportStatus:
        """Run until done (or for about `seconds`, keeping the lease to come back to it)."""
        self.deadline = None if seconds is None else time.monotonic() + seconds
        status = self._attempts(import_id)
        if status in FINISHED:
            discard_file(self.db, import_id)
        return status

    def _attempts(self, import_id: int) -> ImportStatus:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._run(import_id)
            except FileProblem as exc:
                return self._fail(import_id, exc.detail, exc.line, exc.field)
            except Exception as exc:  # noqa: BLE001 - retried from the checkpoint, then failed
                log.warning(
                    "import %s: batch failed (attempt %s): %s",
                    import_id,
                    attempt,
                    exc,
                    exc_info=True,
                )
                if attempt == ATTEMPTS:
                    return self._fail(import_id, f"unexpected error: {exc}"[:500], 0, "file")
        raise AssertionError("unreachable")

    def _context(self, session: Session, row: Import) -> Context:
        open_broadcasts = session.scalar(
            select(Campaign.id)
            .where(
                Campaign.kind == CampaignKind.POLICY,
                Campaign.status.in_(OPEN),
                Campaign.started_at.is_not(None),
            )
            .limit(1)
        )
        return load_context(
            session,
            import_id=row.id,
            public_id=row.public_id,
            sha256=row.sha256,
            actor=f"import:{row.public_id}",
            hash_key=self.hash_key,
            seen=Seen(row.seen, row.dry_run),
            counts={**zero_counts(), **row.counts},
            dry_run=row.dry_run,
            send_confirmations=row.send_confirmations,
            open_broadcasts=open_broadcasts is not None,
            hashed_suppressions=row.kind == ImportKind.SUBSCRIBERS and hashed.any_recorded(session),
        )

    def _run(self, import_id: int) -> ImportStatus:
        with self.db.session(read_only=True) as session:
            row = session.get(Import, import_id)
            if row is None or row.owner != self.owner:
                return ImportStatus.QUEUED if row is None else row.status
            ctx = self._context(session, row)
            start = (row.done_lines, row.done_offset)
        with open(Path(row.path), "rb") as stream, self._connection() as connection:
            reader = Reader(stream, row.format, row.kind.value)
            records = reader.records(*start)
            while True:
                if self.stop.is_set():
                    self._release(import_id)
                    return ImportStatus.RUNNING
                if self.deadline is not None and time.monotonic() > self.deadline:
                    return ImportStatus.RUNNING  # our turn is over; the lease stays ours
                with _no_cycle_collection():
                    batch = list(islice(records, self.batch_size))
                    status = self._commit_batch(connection, row, ctx, batch)
                if status is not ImportStatus.RUNNING or not batch:
                    return status

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The one connection every batch of this run is applied on (see SQLITE_BULK)."""
        with self.db.engine.connect() as connection:
            raw = connection.connection.driver_connection if self.db.is_sqlite else None
            saved = {}
            if raw is not None:
                for name, value in SQLITE_BULK.items():
                    saved[name] = raw.execute(f"PRAGMA {name}").fetchone()[0]
                    raw.execute(f"PRAGMA {name}={int(value)}")
            try:
                yield connection
            finally:
                if raw is not None and not connection.invalidated:
                    # The longer log is folded into the file by the import, not by
                    # whichever request commits next.
                    raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    for name, value in saved.items():
                        raw.execute(f"PRAGMA {name}={int(value)}")

    def _commit_batch(
        self, connection: Connection, row: Import, ctx: Context, batch: list[Record]
    ) -> ImportStatus:
        """Apply one batch and move the checkpoint, in one transaction."""
        with Session(bind=connection, expire_on_commit=False) as session, session.begin():
            current = session.execute(
                select(Import.owner, Import.cancel_requested)
                .where(Import.id == row.id)
                .with_for_update()
            ).one()
            if current.owner != self.owner:
                return ImportStatus.RUNNING  # our lease ran out and another worker took over
            now = clock.now()
            if current.cancel_requested:
                self._finish(session, row.id, ImportStatus.CANCELLED, now)
                return ImportStatus.CANCELLED
            if batch:
                if not self.db.is_sqlite:
                    # A batch's commit need not wait for the disk: should the server crash
                    # before it is flushed, the batch and its checkpoint are lost together
                    # and applied again on resume (never corrupted, never half-kept). The
                    # commits that end the import (done, cancelled, failed) stay synchronous.
                    session.execute(text("SET LOCAL synchronous_commit = off"))
                savepoint = session.begin_nested() if ctx.dry_run else None
                if row.kind == ImportKind.SUBSCRIBERS:
                    apply_batch(session, ctx, batch)
                else:
                    apply_suppressions(session, ctx, batch)
                if savepoint is not None:
                    savepoint.rollback()
            if ctx.problems:
                session.execute(
                    insert(ImportProblem),
                    [
                        {"import_id": row.id, "line": line, "field": f, "detail": d}
                        for line, f, d in ctx.problems
                    ],
                )
                ctx.problems.clear()
            values: dict[str, Any] = {
                "counts": dict(ctx.counts),
                "lease_until": now + self.lease,
                "seen": ctx.seen.dump() if ctx.seen.bits else None,
            }
            if batch:
                values.update(
                    done_records=Import.done_records + len(batch),
                    done_lines=batch[-1].end_line,
                    done_offset=batch[-1].end_offset,
                )
                row.done_offset = batch[-1].end_offset
            session.execute(
                update(Import)
                .where(Import.id == row.id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if not batch:
                if row.kind == ImportKind.SUPPRESSIONS:
                    meet_existing(session, ctx)
                self._finish(session, row.id, ImportStatus.DONE, now)
                status = ImportStatus.DONE
            else:
                status = ImportStatus.RUNNING
        if self.on_progress:
            self.on_progress(row)
        return status

    def _finish(self, session: Session, import_id: int, status: ImportStatus, now) -> None:
        session.execute(
            update(Import)
            .where(Import.id == import_id)
            .values(status=status, finished_at=now, owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )

    def _release(self, import_id: int) -> None:
        """Stopped (SIGTERM): hand the job back at once rather than when the lease ends."""
        with self.db.transaction() as session:
            session.execute(
                update(Import)
                .where(Import.id == import_id, Import.owner == self.owner)
                .values(status=ImportStatus.QUEUED, owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )

    def _fail(self, import_id: int, detail: str, line: int, field: str) -> ImportStatus:
        with self.db.transaction() as session:
            session.add(ImportProblem(import_id=import_id, line=line, field=field, detail=detail))
            session.execute(
                update(Import)
                .where(Import.id == import_id)
                .values(error=detail)
                .execution_options(synchronize_session=False)
            )
            self._finish(session, import_id, ImportStatus.FAILED, clock.now())
        return ImportStatus.FAILED


def discard_file(db: Database, import_id: int) -> None:
    """A finished import's upload holds addresses: it is not kept once it is done."""
    with db.session(read_only=True) as session:
        row = session.get(Import, import_id)
        if row is not None and row.status in FINISHED:
            Path(row.path).unlink(missing_ok=True)


def run_pending(
    db: Database,
    owner: str,
    *,
    stop: threading.Event | None = None,
    seconds: float | None = None,
    **settings: Any,
) -> int:
    """Run claimable imports one after the other (for about `seconds` in all, if given,
    so a worker goes back to sending in between); how many were worked on."""
    ran = 0
    runner = Runner(db, owner, stop=stop, **settings)
    deadline = None if seconds is None else time.monotonic() + seconds
    while not runner.stop.is_set():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return ran
        import_id = claim(db, owner, int(runner.lease.total_seconds()))
        if import_id is None:
            return ran
        ran += 1
        if runner.run(import_id, seconds=left) == ImportStatus.RUNNING:
            return ran
    return ran
