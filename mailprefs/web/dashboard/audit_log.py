"""The audit log: searchable by actor, action, target and date range, paginated.
It holds no addresses, so reading it is not itself a read of personal data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import render_template, request

from mailprefs.domain import audit
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import page_number

AUDIT_PAGE_SIZE = 50


def _day(name: str) -> tuple[datetime | None, str]:
    raw = request.args.get(name, "").strip()
    try:
        return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC), raw
    except ValueError:
        return None, ""


def _text(name: str) -> str:
    value = request.args.get(name, "").strip()[:128]
    return "".join(c for c in value if c.isprintable())


@bp.get("/audit")
def audit_log():
    since, since_raw = _day("since")
    until, until_raw = _day("until")
    filters = {"actor": _text("actor"), "action": _text("action"), "target": _text("target")}
    page = page_number()
    rows, total = audit.search(
        db_session(),
        actor=filters["actor"] or None,
        action=filters["action"] or None,
        target=filters["target"] or None,
        since=since,
        until=until + timedelta(days=1) if until else None,  # the whole last day
        limit=AUDIT_PAGE_SIZE,
        offset=(page - 1) * AUDIT_PAGE_SIZE,
    )
    query = {k: v for k, v in {**filters, "since": since_raw, "until": until_raw}.items() if v}
    return render_template(
        "dashboard/audit.html",
        rows=rows,
        filters={**filters, "since": since_raw, "until": until_raw},
        query=query,
        page=page,
        pages=max(1, -(-total // AUDIT_PAGE_SIZE)),
        total=total,
    )
