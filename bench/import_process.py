"""Run by bench_import in a process of its own: import a file (or export everyone), then
print one JSON line: seconds and the process's peak resident memory (VmHWM)."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import time
from pathlib import Path

from mailprefs import create_app
from mailprefs.domain import imports, people
from mailprefs.domain.import_models import Import
from mailprefs.extensions import get_db


def peak_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))


def run_import(path: str) -> dict:
    app = create_app()
    db = get_db(app)
    config = app.config
    started = time.perf_counter()
    with db.transaction() as session:
        import_id = imports.submit(
            session, path=path, kind="subscribers", fmt="csv", actor="bench"
        ).id
    imports.claim(db, "bench", 600, import_id)
    imports.Runner(
        db,
        "bench",
        hash_key=config["MAILPREFS_HASH_KEY"],
        batch_size=config["MAILPREFS_IMPORT_BATCH_SIZE"],
        lease_seconds=600,
    ).run(import_id)
    seconds = time.perf_counter() - started
    with db.session(read_only=True) as session:
        row = session.get(Import, import_id)
        return {"seconds": seconds, "status": row.status.value, "counts": row.counts}


def run_export() -> dict:
    app = create_app()
    started = time.perf_counter()
    rows = 0
    with get_db(app).session(read_only=True) as session, open(os.devnull, "w") as sink:
        header, body = people.export_rows(
            session, people.Filters(), hash_key=app.config["MAILPREFS_HASH_KEY"]
        )
        writer = csv.writer(sink)
        writer.writerow(header)
        for row in body:
            writer.writerow(row)
            rows += 1
    return {"seconds": time.perf_counter() - started, "rows": rows}


if __name__ == "__main__":
    result = run_import(sys.argv[2]) if sys.argv[1] == "import" else run_export()
    result["peak_kb"] = peak_kb()
    print(json.dumps(result), flush=True)
