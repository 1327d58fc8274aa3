"""Imports survive `kill -9` of the worker: a real worker process is killed mid-import
several times and restarted; the final counts, people and events are exact (no row lost,
none applied twice)."""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import func, select

from mailprefs.domain import consent, imports
from mailprefs.domain.import_models import Import
from mailprefs.domain.models import ConsentEvent, Subscriber
from tests.imports.support import store
from tests.support import processes

pytestmark = pytest.mark.slow
ROWS = 4000


def generated(rows: int) -> tuple[str, dict[str, int]]:
    """A file with evidence, no evidence, invalid and duplicate rows; its exact counts."""
    lines = ["email,topics,consent_at,source,source_detail,attr.n"]
    counts = dict.fromkeys(imports.COUNT_KEYS, 0)
    for i in range(rows):
        counts["rows"] += 1
        if i % 50 == 1:
            lines.append(f"broken{i},offers,2025-01-01T00:00:00Z,api,,{i}")
            counts["invalid"] += 1
        elif i % 100 == 2:  # the person of row i - 2 again, another topic
            lines.append(f"p{i - 2}@example.com,newsletter,2025-01-02T00:00:00Z,api,again,")
            counts["duplicates"] += 1
            counts["consents"] += 1
        elif i % 10 == 0:
            lines.append(f"p{i}@example.com,offers,,,,{i}")
            counts["created"] += 1
            counts["no_evidence"] += 1
        else:
            lines.append(f"p{i}@example.com,offers,2025-01-01T00:00:00Z,web_form,form {i},{i}")
            counts["created"] += 1
            counts["consents"] += 1
    return "\n".join(lines) + "\n", counts


def progress(db, import_id: int) -> tuple[str, int]:
    with db.session(read_only=True) as s:
        row = s.get(Import, import_id)
        return row.status.value, row.done_records


def test_kill_9_mid_import_resumes_from_the_checkpoint_exactly(db, app, database_url, tmp_path):
    """Three kill -9s at different points; a restarted worker finishes with exact counts,
    one person per address, one event per consent, a ledger that rebuilds to the states."""
    content, expected = generated(ROWS)
    with db.transaction() as session:
        import_id = imports.submit(
            session, path=store(tmp_path, content), kind="subscribers", fmt="csv", actor="test"
        ).id
    env = processes.environment(
        database_url,
        tmp_path,
        MAILPREFS_IMPORT_BATCH_SIZE="40",
        MAILPREFS_LEASE_SECONDS="2",
        MAILPREFS_WORKER_IDLE_SECONDS="0.2",
    )
    for kill, fraction in enumerate((0.15, 0.4, 0.7)):
        worker = processes.start(["mailprefs", "worker"], env, tmp_path / f"worker{kill}.log")
        deadline = time.monotonic() + 300
        while progress(db, import_id)[1] < ROWS * fraction and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        status, done = progress(db, import_id)
        assert status == "running" and done < ROWS, "the kill came too late to test anything"
    worker = processes.start(["mailprefs", "worker"], env, tmp_path / "worker-last.log")
    try:
        deadline = time.monotonic() + 300
        while progress(db, import_id)[0] != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    with db.session(read_only=True) as s:
        row = s.get(Import, import_id)
        assert row.status.value == "done"
        assert row.counts == expected
        assert row.done_records == ROWS
        people = s.scalar(select(func.count(Subscriber.id)))
        events = s.scalar(select(func.count(ConsentEvent.id)))
        twice = s.execute(
            select(ConsentEvent.subscriber_id, ConsentEvent.topic_id, ConsentEvent.action)
            .group_by(ConsentEvent.subscriber_id, ConsentEvent.topic_id, ConsentEvent.action)
            .having(func.count() > 1)
        ).all()
    assert people == expected["created"]
    assert events == expected["consents"]
    assert twice == []
    with db.transaction() as s:
        assert consent.rebuild(s, fix=False) == []
