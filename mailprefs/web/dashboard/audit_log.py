"""The audit log: searchable by actor, action, target and date range, paginated.
It holds no addresses, so reading it is not itself a read of personal data.

Staff search with what they know, often an address: an address typed as the target is
looked up (the person's public id, or a staff login's id) and the search runs on that,
saying so; an address typed as the actor finds that staff login. Such a lookup is a
staff use of an address, so it is audited like the suppression search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import current_app, render_template, request, url_for
from sqlalchemy import select

from mailprefs.domain import audit, subscribers
from mailprefs.domain.addresses import normalise
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import User
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import is_admin, last_page, page_number, record

AUDIT_PAGE_SIZE = 50


def _day(name: str, errors: list[str], label: str) -> tuple[datetime | None, str]:
    raw = request.args.get(name, "").strip()[:32]
    if not raw:
        return None, ""
    try:
        return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC), raw
    except ValueError:
        errors.append(f"{label} must be a date like 2026-12-01.")
        return None, ""


def _text(name: str) -> str:
    value = request.args.get(name, "").strip()[:128]
    return "".join(c for c in value if c.isprintable())


def _staff_login(address: str) -> User | None:
    try:
        return db_session().scalar(select(User).where(User.email == normalise(address)))
    except Invalid:
        return None


def _resolve_addresses(filters: dict[str, str], notes: list[str]) -> dict[str, str]:
    """Actor and target as the log stores them, when an address was typed."""
    search = dict(filters)
    if "@" in filters["actor"]:
        login = _staff_login(filters["actor"])
        search["actor"] = f"user:{login.id}" if login else "-"
        notes.append(
            f"The log names staff by login: searching actor user:{login.id}."
            if login
            else "No staff login has this address; the log holds no addresses."
        )
    if "@" in filters["target"]:
        try:
            person = subscribers.find_by_address(
                db_session(), filters["target"], current_app.config["MAILPREFS_HASH_KEY"]
            )
        except Invalid:
            person = None
        login = None if person else _staff_login(filters["target"])
        if person is not None:
            search["target"] = person.public_id
            notes.append(f"The log names people by id: searching subscriber {person.public_id}.")
            record("subscriber.lookup", "subscriber", person.public_id, {"via": "audit_log"})
        elif login is not None:
            search["target"] = str(login.id)
            notes.append(f"The log names staff by login: searching login #{login.id}.")
        else:
            search["target"] = "-"
            notes.append("Nobody registered has this address; the log holds no addresses.")
    return search


def target_url(target_type: str | None, target_id: str | None) -> str | None:
    """Where a target can be seen in the dashboard (None where there is no page)."""
    if not target_type or not target_id:
        return None
    if target_type == "campaign":
        return url_for("dashboard.campaign", public_id=target_id)
    if target_type == "complaint":
        return url_for("dashboard.complaint", public_id=target_id)
    if target_type == "suppression" and target_id.isdigit():
        return url_for("dashboard.suppression", suppression_id=int(target_id))
    if target_type == "policy":
        return url_for("dashboard.policies", _anchor=f"policy-{target_id}")
    if target_type == "job":
        return url_for("dashboard.jobs")
    if target_type in ("user", "api_key") and is_admin():
        return url_for("dashboard.access")
    if target_type == "subscriber":
        # Everything recorded about this person (a subscriber page, where one exists).
        if "dashboard.subscriber" in current_app.view_functions:
            return url_for("dashboard.subscriber", public_id=target_id)
        return url_for("dashboard.audit_log", target=target_id)
    return None


@bp.get("/audit")
def audit_log():
    errors: list[str] = []
    notes: list[str] = []
    since, since_raw = _day("since", errors, "From")
    until, until_raw = _day("until", errors, "To")
    if since and until and since > until:
        errors.append("From is after To: nothing can match. Swap the dates.")
    filters = {"actor": _text("actor"), "action": _text("action"), "target": _text("target")}
    search = _resolve_addresses(filters, notes)
    db = db_session()
    page = page_number()
    rows, total = [], 0
    if not errors:
        criteria = {
            "actor": search["actor"] or None,
            "action": search["action"] or None,
            "target": search["target"] or None,
            "since": since,
            "until": until + timedelta(days=1) if until else None,  # the whole last day
        }
        rows, total = audit.search(
            db, **criteria, limit=AUDIT_PAGE_SIZE, offset=(page - 1) * AUDIT_PAGE_SIZE
        )
        if page > 1 and page > last_page(total, AUDIT_PAGE_SIZE):
            page = last_page(total, AUDIT_PAGE_SIZE)  # past the end shows the last page
            rows, total = audit.search(
                db, **criteria, limit=AUDIT_PAGE_SIZE, offset=(page - 1) * AUDIT_PAGE_SIZE
            )
    db.commit()  # the address lookup's own audit entry, if any
    query = {k: v for k, v in {**filters, "since": since_raw, "until": until_raw}.items() if v}
    return render_template(
        "dashboard/audit.html",
        rows=rows,
        filters={**filters, "since": since_raw, "until": until_raw},
        errors=errors,
        notes=notes,
        target_url=target_url,
        query=query,
        page=page,
        pages=last_page(total, AUDIT_PAGE_SIZE),
        total=total,
    )
