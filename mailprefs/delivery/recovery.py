"""How the worker outlives failures: the database away, a bad row, a bug.

The send loop (`sendloop.PoolSending.process`) records each outcome before the
connection that sent it takes the next message; a failure anywhere in it leaves at most
this unsettled: the messages the relay accepted whose records were not committed, those
still on the wire (waited for here, then the same), the row being handled (leased,
still queued), and the rest of what was claimed (leased). `settle` puts that right once
the database answers; `survive` decides whom to blame and how long to wait.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import update

from mailprefs import clock
from mailprefs.delivery import outbox
from mailprefs.delivery.outbox import Claimed
from mailprefs.domain.outbox_models import Delivery, DeliveryStatus
from mailprefs.logs import event, scrub

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from mailprefs.delivery.worker import Summary, Worker

# After a failure (the database away, a bug), wait this long before the next try,
# doubling with each failure in a row up to the cap.
TROUBLE_BACKOFF_START = 0.5
TROUBLE_BACKOFF_MAX = 15.0

log = logging.getLogger("mailprefs.worker")


def survive(worker: Worker, exc: Exception, trouble: int) -> int:
    """Log the failure, note whom to blame, back off; the new count of failures."""
    _land(worker)
    worker._unsettled = True
    delay = min(TROUBLE_BACKOFF_START * 2**trouble, TROUBLE_BACKOFF_MAX)
    if database_away(worker, exc):
        event(
            log,
            "worker.database_unavailable",
            logging.WARNING,
            worker=worker.worker_id,
            failures=trouble + 1,
            retry_in=delay,
            error=type(exc).__name__,
        )
    else:
        # A bad row or a bug: the item being handled is to blame (see `settle`).
        worker._blame = worker._blame or exc
        log.error(
            "worker.error",
            exc_info=exc,
            extra={"mailprefs_fields": {"worker": worker.worker_id, "retry_in": delay}},
        )
    worker.stop.wait(delay)
    return trouble + 1


def _land(worker: Worker) -> None:
    """Wait for the messages still on the wire: those the relay accepted have left and
    are to be recorded as sent (`settle`); the others go back with the rest. Then close
    the connections, which may be mid-session."""
    try:
        while worker.pool.in_flight:
            worker.collect(None)
    finally:
        worker.pool.close()


def database_away(worker: Worker, exc: BaseException) -> bool:
    """The database cannot be reached (down, restarting, a dropped connection, SQLite
    locked), as opposed to a statement it refused."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return bool(exc.connection_invalidated)
    dbapi = worker.db.engine.dialect.loaded_dbapi
    return isinstance(exc, dbapi.OperationalError | dbapi.InterfaceError)


def settle(worker: Worker) -> None:
    """After a failure, once the database answers: record the messages in hand as
    sent (they left; sending them again would mail the people twice), fail the row that
    was being handled when it raised, and give back the rest of what was claimed."""
    if not worker._unsettled:
        return
    now = clock.now()
    failed: Claimed | None = None
    with worker.db.engine.begin() as connection:
        for delivery_id, message_id in worker._in_hand.items():
            sent = {"sent_at": now, "decided_at": now, "message_id": message_id}
            _settle(connection, delivery_id, worker.worker_id, DeliveryStatus.SENT, **sent)
        item, blame = worker._current, worker._blame
        if (
            blame is not None
            and item is not None
            and _fail(connection, item, worker.worker_id, blame)
        ):
            failed = item
        outbox.release(connection, [c.id for c in worker._in_flight], worker.worker_id)
    if failed is not None:
        event(
            log,
            "worker.item_failed",
            logging.ERROR,
            worker=worker.worker_id,
            delivery=failed.id,
            campaign=failed.campaign_id,
            error=type(worker._blame).__name__,
        )
    worker._in_flight, worker._in_hand, worker._blame, worker._current = [], {}, None, None
    worker._unsettled = False


def log_batch(worker: Worker, claimed: int, done: Summary, seconds: float) -> None:
    event(
        log,
        "worker.batch",
        worker=worker.worker_id,
        claimed=claimed,
        sent=done.sent,
        blocked=done.blocked,
        failed=done.failed,
        retrying=done.retrying,
        skipped=done.skipped,
        seconds=round(seconds, 3),
    )


def with_contexts(worker: Worker, batch: list[Claimed]) -> list[Claimed]:
    """Load the batch's campaigns before sending, so that no database read stands
    between a message sent and its record. A campaign whose messages cannot be built
    fails its rows here, each recorded; the batch goes on without them."""
    unusable: dict[int, Exception] = {}
    for campaign_id in dict.fromkeys(item.campaign_id for item in batch):
        try:
            worker._context(campaign_id)
        except Exception as exc:
            if database_away(worker, exc):
                raise
            unusable[campaign_id] = exc
    if not unusable:
        return batch
    with worker.db.engine.begin() as connection:
        for item in batch:
            exc = unusable.get(item.campaign_id)
            if exc is not None:
                _fail(connection, item, worker.worker_id, exc)
    for campaign_id, exc in unusable.items():
        event(
            log,
            "worker.campaign_unusable",
            logging.ERROR,
            worker=worker.worker_id,
            campaign=campaign_id,
            error=type(exc).__name__,
        )
    return [item for item in batch if item.campaign_id not in unusable]


# What a settled row no longer holds, unless its outcome says otherwise.
_CLEARED = {"reason": None, "last_error": None, "lease_owner": None, "lease_until": None}


def _settle(
    connection: Connection, delivery_id: int, owner: str, status: DeliveryStatus, **values: Any
) -> bool:
    """Give one row its outcome and its lease back, if it is still ours to settle (leased
    by us, still queued); whether it was."""
    marked = connection.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.lease_owner == owner,
            Delivery.status == DeliveryStatus.QUEUED,
        )
        .values({**_CLEARED, "status": status, **values})
    )
    return bool(marked.rowcount)


def _fail(connection: Connection, item: Claimed, owner: str, exc: BaseException) -> bool:
    """The row a bug or an unusable campaign stopped: failed, `internal_error`, with the
    exception's text (scrubbed of addresses)."""
    return _settle(
        connection,
        item.id,
        owner,
        DeliveryStatus.FAILED,
        reason="internal_error",
        attempts=item.attempts + 1,
        last_error=scrub(f"{type(exc).__name__}: {exc}")[:512],
    )
