"""A worker that survives: a bad row fails alone, recorded on its row and logged, and
the worker goes on for everyone else."""

from __future__ import annotations

import logging
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from mailprefs.delivery.worker import Worker
from mailprefs.domain.outbox_models import Delivery, DeliveryStatus
from tests.support.factories import person, started_campaign
from tests.support.processes import wait_until


@pytest.fixture
def app_config(sink):
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port, "MAILPREFS_BATCH_SIZE": 4}


def spoil(db, subscriber_id: int, stored: str) -> None:
    """Store attributes the service would never write (as an old bug or a hand edit
    might have), straight into the column."""
    cast = "CAST(:v AS json)" if db.engine.dialect.name == "postgresql" else ":v"
    with db.engine.begin() as connection:
        connection.execute(
            sa.text(f"UPDATE subscribers SET attributes = {cast} WHERE id = :id"),  # noqa: S608
            {"v": stored, "id": subscriber_id},
        )


def test_a_bad_row_fails_alone_recorded_and_logged_and_the_worker_goes_on(app, db, sink, caplog):
    """Rows whose stored attributes cannot make a message (not an object; on SQLite also
    text that is not JSON) each fail with `internal_error`, one log line each; everyone
    else is mailed exactly once, and the long-running worker is still running."""
    caplog.set_level(logging.INFO, logger="mailprefs.worker")
    spoiled = ["[1, 2]"] + (["{not json"] if db.engine.dialect.name == "sqlite" else [])
    with db.transaction() as s:
        people = [
            person(s, f"p{i}@example.com", opted_in=("offers",), attributes={"first_name": "A"})
            for i in range(9)
        ]
        bad_ids = {people[2 + 3 * i].id for i in range(len(spoiled))}
        started_campaign(s, text="Hello {{ first_name }}")
    for subscriber_id, stored in zip(sorted(bad_ids), spoiled, strict=True):
        spoil(db, subscriber_id, stored)

    worker = Worker(app)
    thread = threading.Thread(target=worker.run_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        good = 9 - len(bad_ids)
        assert wait_until(lambda: len(sink.messages) >= good, timeout=60)

        def settled() -> bool:
            with db.session(read_only=True) as s:
                rows = s.scalars(select(Delivery)).all()
                return len(rows) == 9 and all(r.status != DeliveryStatus.QUEUED for r in rows)

        assert wait_until(settled, timeout=60)
        assert thread.is_alive()  # it went on
    finally:
        worker.stop.set()
        thread.join(30)
    assert not thread.is_alive()

    with db.session(read_only=True) as s:
        rows = {r.subscriber_id: r for r in s.scalars(select(Delivery))}
    for subscriber_id, row in rows.items():
        if subscriber_id in bad_ids:
            assert row.status == DeliveryStatus.FAILED and row.reason == "internal_error"
            assert row.last_error.split(":")[0] in ("TypeError", "JSONDecodeError")
        else:
            assert row.status == DeliveryStatus.SENT
    mailed = sorted(r for _f, rcpts, _raw in sink.messages for r in rcpts)
    assert mailed == sorted(p.email for p in people if p.id not in bad_ids)  # once each
    failed_lines = [r for r in caplog.records if r.getMessage() == "worker.item_failed"]
    assert sorted(r.mailprefs_fields["delivery"] for r in failed_lines) == sorted(
        rows[i].id for i in bad_ids
    )
