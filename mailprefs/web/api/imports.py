"""Imports: `POST /api/v1/imports` stores the body on disk (streamed, never in memory),
checks it whole and queues it; the worker runs it. Status, the error report, cancel."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from flask import Response, current_app, request
from pydantic import BaseModel, Field
from werkzeug.exceptions import RequestEntityTooLarge

from mailprefs.domain import imports
from mailprefs.domain.errors import Conflict, Invalid
from mailprefs.domain.import_models import Import
from mailprefs.domain.import_read import FileProblem
from mailprefs.domain.people import neutralise
from mailprefs.extensions import get_db
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.idempotency import HEADER
from mailprefs.web.api.people import csv_lines
from mailprefs.web.problems import problem

routes = api.group("imports", roles=("ops",))
FORMATS = {"text/csv": "csv", "application/x-ndjson": "ndjson"}
CHUNK = 1 << 16
ImportStatusName = Literal["queued", "running", "done", "failed", "cancelled"]

QUERY = [
    {
        "name": "kind",
        "in": "query",
        "required": False,
        "description": "subscribers (default) or suppressions",
        "schema": {"type": "string", "enum": ["subscribers", "suppressions"]},
    },
    {
        "name": "dry_run",
        "in": "query",
        "required": False,
        "description": "count and report, write nothing",
        "schema": {"type": "boolean"},
    },
    {
        "name": "send_confirmations",
        "in": "query",
        "required": False,
        "description": "queue a confirmation mail for each new pending double opt-in "
        "(sent at the worker's configured rate); off by default",
        "schema": {"type": "boolean"},
    },
]


class ImportCreated(BaseModel):
    id: str
    status: ImportStatusName


class ImportCounts(BaseModel):
    rows: int
    created: int
    updated: int
    consents: int
    opt_outs: int
    no_evidence: int
    erased: int
    suppressed: int
    duplicates: int
    invalid: int


class ImportRowError(BaseModel):
    line: int
    field: str
    detail: str


class ImportOut(BaseModel):
    id: str
    kind: Literal["subscribers", "suppressions"]
    status: ImportStatusName
    dry_run: bool
    sha256: str
    size: int = Field(description="bytes in the file")
    done_bytes: int = Field(description="bytes imported so far (progress)")
    counts: ImportCounts
    errors: list[ImportRowError] = Field(description="the first 100 rejected rows")
    error: str | None = Field(description="why the import failed, when it did")
    created_at: Any
    started_at: Any
    finished_at: Any


def _flag(name: str) -> bool:
    raw = request.args.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise Invalid.field(name, "must be true or false")


def _options() -> dict[str, Any]:
    """The query's `kind`, `dry_run` and `send_confirmations`, as `imports.submit` takes them."""
    kind = request.args.get("kind", "subscribers")
    if kind not in ("subscribers", "suppressions"):
        raise Invalid.field("kind", "must be subscribers or suppressions")
    return {
        "kind": kind,
        "dry_run": _flag("dry_run"),
        "send_confirmations": _flag("send_confirmations"),
    }


def _replayed(call: Call, key: str | None, options: dict[str, Any], path: str) -> Import | None:
    """The import a retried request (the same Idempotency-Key) already made, its upload
    deleted; Conflict when the key was used for another file or kind."""
    first = imports.by_idempotency_key(call.session, call.actor, key) if key else None
    if first is None:
        return None
    same = (options["kind"], options["dry_run"], file_sha256(path)) == (
        first.kind.value,
        first.dry_run,
        first.sha256,
    )
    Path(path).unlink(missing_ok=True)
    if not same:
        raise Conflict("this Idempotency-Key was used for another file or kind")
    return first


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def store_upload(stream: Any, directory: str, limit: int, suffix: str) -> str:
    """Copy a request body to a new file, chunk by chunk; 413 past `limit` bytes."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{secrets.token_hex(12)}.{suffix}"
    written = 0
    try:
        with open(path, "wb") as out:
            while chunk := stream.read(CHUNK):
                written += len(chunk)
                if written > limit:
                    raise RequestEntityTooLarge()
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return str(path)


@routes.post(
    "/imports",
    responses={202: ImportCreated},
    errors=(409,),
    body_types=tuple(FORMATS),
    headers=[HEADER, *QUERY],
)
def create_import(call: Call):
    """Upload a CSV or NDJSON file to import (subscribers or suppressions)

    The body is stored as it arrives and checked whole before anything is queued: a file
    that cannot be imported (not UTF-8, no `email` column, duplicate or unknown columns,
    not CSV) answers 422 naming the line. Answers 202; the worker runs the import. Bodies
    above MAILPREFS_IMPORT_MAX_BYTES answer 413. See docs/imports.md.
    """
    fmt = FORMATS.get(request.mimetype or "")
    if fmt is None:
        return problem(415, "send the file as text/csv or application/x-ndjson")
    options = _options()
    key = call.header("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 255:
        raise Invalid.field("Idempotency-Key", "1 to 255 characters")
    config = current_app.config
    limit = config["MAILPREFS_IMPORT_MAX_BYTES"]
    request.max_content_length = limit  # this route alone takes large bodies
    path = store_upload(request.stream, config["MAILPREFS_IMPORT_DIR"], limit, fmt)
    try:
        first = _replayed(call, key, options, path)
        if first is not None:
            return 202, ImportCreated(id=first.public_id, status=first.status.value)
        row = imports.submit(
            call.session, path=path, fmt=fmt, actor=call.actor, idempotency_key=key, **options
        )
    except FileProblem as exc:
        Path(path).unlink(missing_ok=True)
        return problem(
            422,
            exc.detail,
            errors=[{"field": exc.field, "detail": exc.detail, "line": str(exc.line)}],
        )
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    call.audit("import.create", "import", row.public_id)
    return call.commit(202, ImportCreated(id=row.public_id, status=row.status.value))


@routes.get("/imports/<public_id>", responses={200: ImportOut})
def get_import(call: Call, public_id: str):
    """An import's status, counts and first 100 errors"""
    row = imports.find(call.session, public_id)
    return 200, ImportOut(**imports.view(call.session, row))


@routes.get("/imports/<public_id>/errors", responses={200: None})
def import_errors(call: Call, public_id: str):
    """Every rejected row as CSV: line,field,detail"""
    row = imports.find(call.session, public_id)

    db = get_db()  # the answer streams after the app context has ended

    def lines() -> Iterator[str]:
        # Its own session: the request's is closed as the view returns, before streaming.
        with db.session(read_only=True) as session:
            rows = (
                [str(p.line), neutralise(p.field), neutralise(p.detail)]
                for p in imports.all_errors(session, row)
            )
            yield from csv_lines(["line", "field", "detail"], rows)

    response = Response(lines(), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="import-{public_id}-errors.csv"'
    )
    return response


@routes.post("/imports/<public_id>/cancel", responses={200: ImportCreated}, errors=(409,))
def cancel_import(call: Call, public_id: str):
    """Stop an import: what was committed stays, nothing half-written

    A queued import is cancelled at once; a running one stops before its next batch. A
    finished import answers 409.
    """
    row = imports.cancel(call.session, imports.find(call.session, public_id))
    call.audit("import.cancel", "import", public_id)
    reply = ImportCreated(id=row.public_id, status=row.status.value)
    call.session.commit()
    imports.discard_file(get_db(), row.id)
    return 200, reply
