"""Running an import in the test process: store a file, queue it, claim it, run it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from mailprefs.domain import imports
from mailprefs.domain.models import ConsentEvent, Subscriber, Suppression, TopicSubscription
from mailprefs.extensions import get_db

_files = itertools.count(1)


def store(tmp_path: Path, content: str | bytes, suffix: str = "csv") -> str:
    path = tmp_path / f"import-{next(_files)}.{suffix}"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def run_import(
    app: Flask,
    tmp_path: Path,
    content: str | bytes,
    *,
    kind: str = "subscribers",
    fmt: str = "csv",
    dry_run: bool = False,
    batch_size: int = 2,
    on_progress=None,
) -> dict[str, Any]:
    """Queue and run one import to its end (small batches: many checkpoints); its view."""
    db = get_db(app)
    path = store(tmp_path, content, "ndjson" if fmt == "ndjson" else "csv")
    with db.transaction() as session:
        row = imports.submit(session, path=path, kind=kind, fmt=fmt, actor="test", dry_run=dry_run)
        import_id = row.id
    assert imports.claim(db, "test-worker", 60, import_id) == import_id
    runner = imports.Runner(
        db,
        "test-worker",
        hash_key=app.config["MAILPREFS_HASH_KEY"],
        batch_size=batch_size,
        lease_seconds=60,
        on_progress=on_progress,
    )
    runner.run(import_id)
    return view(db, import_id)


def view(db, import_id: int) -> dict[str, Any]:
    with db.session(read_only=True) as session:
        from mailprefs.domain.import_models import Import

        return imports.view(session, session.get(Import, import_id))


def ledger(db) -> list[tuple]:
    """Every consent event (subscriber, topic id, action, source, occurred_at)."""
    with db.session(read_only=True) as s:
        return s.execute(
            select(
                ConsentEvent.subscriber_id,
                ConsentEvent.topic_id,
                ConsentEvent.action,
                ConsentEvent.source,
                ConsentEvent.occurred_at,
            ).order_by(ConsentEvent.id)
        ).all()


def everything(db) -> dict[str, Any]:
    """All that an import could write, to compare before and after."""
    with db.session(read_only=True) as s:
        return {
            "people": s.execute(
                select(Subscriber.email, Subscriber.status, Subscriber.attributes).order_by(
                    Subscriber.id
                )
            ).all(),
            "events": s.execute(select(ConsentEvent.id)).all(),
            "states": s.execute(
                select(
                    TopicSubscription.subscriber_id,
                    TopicSubscription.topic_id,
                    TopicSubscription.state,
                ).order_by(TopicSubscription.subscriber_id, TopicSubscription.topic_id)
            ).all(),
            "suppressions": s.execute(
                select(Suppression.email_hash, Suppression.reason, Suppression.lifted_at)
            ).all(),
        }
