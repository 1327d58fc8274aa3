"""Subscribers and imports in the dashboard: find people (by status and topic, or by
address, POSTed so it never lands in a URL or a log), a person's page with their
consent history and its evidence, mail, suppressions and complaints (an audited read),
export, erase, mark under 13; and the Import page (upload, live progress, counts, errors).
"""

from __future__ import annotations

import json
from pathlib import Path

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from mailprefs.domain import imports, people, subscribers
from mailprefs.domain.errors import DomainError, Invalid
from mailprefs.domain.import_models import Import
from mailprefs.domain.import_read import FileProblem
from mailprefs.domain.models import Topic
from mailprefs.extensions import db_session, get_db
from mailprefs.web.api.imports import store_upload
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import actor, found_or_404, record
from mailprefs.web.dashboard.forms import ActionForm, AddressForm

PAGE = 50
STATES = ("none", "pending", "opted_in", "opted_out")


def _hash_key() -> str:
    return current_app.config["MAILPREFS_HASH_KEY"]


def _list(filters: people.Filters, cursor: str | None) -> str:
    db = db_session()
    found, states, next_cursor = people.page(
        db, filters, hash_key=_hash_key(), cursor=cursor, limit=PAGE
    )
    for person in found:
        record("subscriber.read", "subscriber", person.public_id, {"via": "search"})
    db.commit()
    return render_template(
        "dashboard/subscribers.html",
        found=found,
        states=states,
        next_cursor=next_cursor,
        filters=filters,
        topics=[t.slug for t in db.scalars(select(Topic).where(Topic.active).order_by(Topic.id))],
        state_names=STATES,
        search_form=AddressForm(prefix="search"),
    )


@bp.get("/subscribers")
def subscribers_page():
    args = request.args
    filters = people.Filters(
        status=args.get("status") or None,
        topic=args.get("topic") or None,
        state=(args.get("state") or None) if args.get("topic") else None,
    )
    try:
        return _list(filters, args.get("cursor") or None)
    except Invalid as exc:
        flash(exc.detail, "error")
        return redirect(url_for("dashboard.subscribers_page"))


@bp.post("/subscribers/search")
def search_subscribers():
    form = AddressForm(prefix="search")
    if not form.validate_on_submit():
        abort(400, "The form expired or the address is missing; try again.")
    try:
        return _list(people.Filters(email=form.email.data), None)
    except Invalid:
        flash("That is not a valid email address.", "error")
        return redirect(url_for("dashboard.subscribers_page"))


def _person(public_id: str):
    try:
        return subscribers.find_by_public_id(db_session(), public_id)
    except DomainError:
        abort(404)


@bp.get("/subscribers/<public_id>")
def subscriber_page(public_id: str):
    db = db_session()
    person = _person(public_id)
    held = subscribers.export(db, person)
    record("subscriber.read", "subscriber", public_id, {"via": "person page"})
    db.commit()
    return render_template("dashboard/subscriber.html", person=person, held=held, form=ActionForm())


@bp.get("/subscribers/<public_id>/export")
def subscriber_export(public_id: str):
    db = db_session()
    held = subscribers.export(db, _person(public_id))
    record("subscriber.export", "subscriber", public_id)
    db.commit()
    return Response(
        json.dumps(held, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="subscriber-{public_id}.json"'},
    )


@bp.post("/subscribers/<public_id>/erase")
@bp.post("/subscribers/<public_id>/underage", endpoint="subscriber_underage")
def subscriber_erase(public_id: str):
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; try again.")
    db = db_session()
    person = _person(public_id)
    reason = "underage" if request.path.endswith("/underage") else "by_request"
    subscribers.erase(db, person, hash_key=_hash_key(), actor=actor(), reason=reason)
    db.commit()
    get_db().purge_erased()
    flash("Erased: only the hash of the address is kept, on the suppression list.", "info")
    return redirect(url_for("dashboard.subscribers_page"))


# --- imports ------------------------------------------------------------------------------


@bp.get("/imports")
def imports_page():
    db = db_session()
    rows = db.scalars(select(Import).order_by(Import.id.desc()).limit(20)).all()
    return render_template("dashboard/imports.html", rows=rows, form=ActionForm())


@bp.post("/imports")
def upload_import():
    config = current_app.config
    request.max_content_length = config["MAILPREFS_IMPORT_MAX_BYTES"]
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; try again.")
    upload = request.files.get("file")
    kind = request.form.get("kind", "subscribers")
    if upload is None or not upload.filename:
        flash("Choose a file to import.", "error")
        return redirect(url_for("dashboard.imports_page"))
    fmt = "ndjson" if upload.filename.endswith((".ndjson", ".jsonl")) else "csv"
    path = store_upload(
        upload.stream, config["MAILPREFS_IMPORT_DIR"], config["MAILPREFS_IMPORT_MAX_BYTES"], fmt
    )
    db = db_session()
    try:
        row = imports.submit(
            db,
            path=path,
            kind=kind,
            fmt=fmt,
            actor=actor(),
            dry_run=request.form.get("dry_run") == "yes",
        )
    except (FileProblem, Invalid) as exc:
        Path(path).unlink(missing_ok=True)
        flash(f"This file cannot be imported: {exc.detail}", "error")
        return redirect(url_for("dashboard.imports_page"))
    record("import.create", "import", row.public_id)
    db.commit()
    return redirect(url_for("dashboard.import_page", public_id=row.public_id))


@bp.get("/imports/<public_id>")
def import_page(public_id: str):
    db = db_session()
    row = found_or_404(imports.find, db, public_id)
    return render_template(
        "dashboard/import.html", row=row, view=imports.view(db, row), form=ActionForm()
    )


@bp.post("/imports/<public_id>/cancel")
def cancel_import_page(public_id: str):
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; try again.")
    db = db_session()
    try:
        row = imports.cancel(db, imports.find(db, public_id))
    except DomainError as exc:
        flash(exc.detail, "error")
        return redirect(url_for("dashboard.import_page", public_id=public_id))
    record("import.cancel", "import", public_id)
    db.commit()
    imports.discard_file(get_db(), row.id)
    return redirect(url_for("dashboard.import_page", public_id=public_id))
