"""Captured mail (where MAIL_SERVER is unset): the `.eml` files, newest first, and a
viewer. Names are looked up in the listing, never joined onto a path as given, so no
request can reach outside the folder. A message's HTML is served from its own route
with a Content-Security-Policy that allows no script, no request and no navigation,
and shown in an `<iframe sandbox="">`. Captured mail holds addresses: viewing it is a
staff read, audited."""

from __future__ import annotations

import email
import email.policy
import re
from email.parser import BytesHeaderParser
from pathlib import Path

from flask import Response, abort, current_app, render_template, request

from mailprefs.delivery.transport import captured_files
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import PAGE_SIZE, page_number, record

# The same limits as the iframe's sandbox="" even when the route is opened directly:
# no script, no request, no form submission, no navigation.
HTML_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "form-action 'none'; base-uri 'none'; sandbox"
)
# A meta refresh navigates without script or form; it is taken out of what is served.
_META_REFRESH = re.compile(r"<meta\b[^>]*http-equiv\s*=\s*[\"']?refresh[^>]*>", re.IGNORECASE)
SUMMARY_HEADERS = ("Date", "From", "To", "Subject")


def _folder() -> Path:
    if not current_app.config.get("MAILPREFS_CAPTURE_MAIL"):
        abort(404)
    return Path(current_app.config["MAILPREFS_MAIL_CAPTURE_DIR"])


def _newest_first() -> list[Path]:
    return list(reversed(captured_files(_folder())))


def _find(name: str) -> Path:
    """The captured file with exactly this name, from the listing; 404 otherwise."""
    for path in captured_files(_folder()):
        if path.name == name:
            return path
    abort(404)


SEARCH_LIMIT = 5000  # a search reads headers of at most this many newest messages


def _summary(parser: BytesHeaderParser, path: Path) -> dict | None:
    try:
        with path.open("rb") as handle:
            headers = parser.parse(handle)
        size = path.stat().st_size
    except OSError:
        return None  # removed meanwhile (an erasure)
    return {
        "name": path.name,
        "size": size,
        **{h: str(headers.get(h, "")) for h in SUMMARY_HEADERS},
    }


@bp.get("/mail")
def mail():
    files = _newest_first()
    parser = BytesHeaderParser(policy=email.policy.default)
    query = "".join(c for c in request.args.get("q", "").strip()[:200] if c.isprintable())
    if query:
        # A search reads the headers it matches on (To, From, Subject), newest first.
        needle = query.casefold()
        found = []
        for path in files[:SEARCH_LIMIT]:
            row = _summary(parser, path)
            if row and any(needle in row[h].casefold() for h in ("To", "From", "Subject")):
                found.append(row)
        total = len(found)
    else:
        total = len(files)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page_number(), pages)  # never "page 999 of 51": past the end is the last
    start, end = (page - 1) * PAGE_SIZE, page * PAGE_SIZE
    if query:
        rows = found[start:end]
    else:
        rows = [r for r in (_summary(parser, p) for p in files[start:end]) if r is not None]
    record(
        "captured_mail.list",
        "captured_mail",
        None,
        {"page": page, "shown": len(rows), **({"searched": True} if query else {})},
    )
    db_session().commit()
    return render_template(
        "dashboard/mail.html",
        rows=rows,
        page=page,
        pages=pages,
        total=total,
        query=query,
        searched_all=len(files) <= SEARCH_LIMIT,
        folder=str(_folder()),
    )


def _message(path: Path) -> email.message.EmailMessage:
    try:
        return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    except OSError:
        abort(404)


@bp.get("/mail/<name>")
def mail_view(name: str):
    path = _find(name)
    message = _message(path)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    record("captured_mail.read", "captured_mail", name[:64], {"file": name})
    db_session().commit()
    return render_template(
        "dashboard/mail_view.html",
        name=name,
        headers=[(k, str(v)) for k, v in message.items()],
        subject=str(message.get("Subject", "")),
        text=text.get_content() if text is not None else None,
        has_html=html is not None,
    )


@bp.get("/mail/<name>/html")
def mail_html(name: str):
    html = _message(_find(name)).get_body(("html",))
    if html is None:
        abort(404)
    response = Response(_META_REFRESH.sub("", html.get_content()), mimetype="text/html")
    response.headers["Content-Security-Policy"] = HTML_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
