"""Imports in the worker process: between sending rounds the worker runs queued imports
for a bounded time, so a million-row import neither blocks sending nor waits for it."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click
from flask import Flask

from mailprefs.domain import imports
from mailprefs.domain.errors import Invalid
from mailprefs.domain.import_models import Import
from mailprefs.domain.import_read import FileProblem
from mailprefs.extensions import get_db

# Seconds of import work per round of the long-running worker.
SLICE_SECONDS = 5.0


def run_imports(
    app: Flask, owner: str, stop: threading.Event | None = None, seconds: float | None = None
) -> int:
    """Run queued imports (all to the end when `seconds` is None, as run-due does)."""
    config = app.config
    return imports.run_pending(
        get_db(app),
        owner,
        stop=stop,
        seconds=seconds,
        hash_key=config["MAILPREFS_HASH_KEY"],
        batch_size=config["MAILPREFS_IMPORT_BATCH_SIZE"],
        lease_seconds=config["MAILPREFS_LEASE_SECONDS"],
    )


def import_file(app: Flask, path: str, *, progress: bool = True, **options: Any) -> dict[str, Any]:
    """`flask mailprefs import FILE`: copy the file in, check it, run it here with a
    progress bar; returns the import's view. `options` are `imports.submit`'s (kind, fmt,
    dry_run, send_confirmations). A file that cannot be imported raises Invalid (nothing
    is written)."""
    config = app.config
    folder = Path(config["MAILPREFS_IMPORT_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    # A copy: the checkpoint's offsets must stay true even if the original is edited.
    stored = folder / f"{secrets.token_hex(12)}.{options.get('fmt', 'csv')}"
    shutil.copyfile(path, stored)
    db = get_db(app)
    owner = f"cli:{os.getpid()}"
    try:
        with db.transaction() as session:
            row = imports.submit(session, path=str(stored), actor="cli", **options)
            import_id, size = row.id, row.size
    except FileProblem as exc:
        stored.unlink(missing_ok=True)
        raise Invalid.field(exc.field, exc.detail) from None
    if imports.claim(db, owner, config["MAILPREFS_LEASE_SECONDS"], import_id) != import_id:
        raise Invalid("the import was taken by a worker")  # pragma: no cover - a race
    bar = (
        click.progressbar(length=max(size, 1), label="importing", file=sys.stderr)
        if progress
        else None
    )
    shown = 0

    def advance(current: Import) -> None:
        nonlocal shown
        if bar is not None:
            bar.update(current.done_offset - shown)
            shown = current.done_offset

    runner = imports.Runner(
        db,
        owner,
        hash_key=config["MAILPREFS_HASH_KEY"],
        batch_size=config["MAILPREFS_IMPORT_BATCH_SIZE"],
        lease_seconds=config["MAILPREFS_LEASE_SECONDS"],
        on_progress=advance,
    )
    with bar if bar is not None else nullcontext():
        runner.run(import_id)
    with db.session(read_only=True) as session:
        return imports.view(session, session.get(Import, import_id))
