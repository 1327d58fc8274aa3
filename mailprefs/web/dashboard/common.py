"""What every dashboard view needs: the acting user, roles, audit of reads, paging."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user

from mailprefs.domain import audit
from mailprefs.domain.errors import NotFound
from mailprefs.domain.models import Role
from mailprefs.extensions import db_session

# (label, endpoint, condition): "admin" pages for admins only, "capture" where mail is
# captured. Jobs and Policies come with the scheduler; their slots are kept here.
NAV = [
    ("Overview", "dashboard.overview", None),
    ("Campaigns", "dashboard.campaigns", None),
    ("Subscribers", "dashboard.subscribers_page", None),
    ("Imports", "dashboard.imports_page", None),
    ("Jobs", "dashboard.jobs", None),
    ("Policies", "dashboard.policies", None),
    ("Suppressions", "dashboard.suppressions", None),
    ("Complaints", "dashboard.complaints", None),
    ("Audit log", "dashboard.audit_log", None),
    ("Webhooks", "dashboard.webhooks", None),
    ("Captured mail", "dashboard.mail", "capture"),
    ("Access", "dashboard.access", "admin"),
    ("Topics", "dashboard.topics", None),
    ("Settings", "dashboard.settings", None),
]
PAGE_SIZE = 25

T = TypeVar("T")


def actor() -> str:
    """How the audit log and the domain name the logged-in person: never by address."""
    return f"user:{current_user.id}"


def is_admin() -> bool:
    return bool(current_user.is_authenticated and current_user.role == Role.ADMIN)


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not is_admin():
            abort(403, "Only an admin may do this.")
        return view(*args, **kwargs)

    return wrapped


def record(
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """An audit entry for a staff read or action, by the logged-in user (the request's IP
    comes with it: `audit.set_origin`)."""
    audit.record(
        db_session(),
        actor(),
        action,
        target_type=target_type,
        target_id=target_id,
        detail=detail,
    )


def found_or_404(find: Callable[..., T], *args: Any) -> T:
    """What `find(*args)` finds; the 404 page where the domain finds no such thing."""
    try:
        return find(*args)
    except NotFound:
        abort(404)


def refused(message: str, endpoint: str, **values: Any) -> Any:
    """Back to the page a refused form came from (post/redirect/get), saying why nothing
    was done."""
    flash(message, "error")
    return redirect(url_for(endpoint, **values))


def page_number() -> int:
    raw = request.args.get("page", "1")
    return max(1, min(int(raw), 100_000)) if raw.isdigit() else 1


def last_page(total: int, size: int = PAGE_SIZE) -> int:
    """The number of the last page (1 when there is nothing): pages past it show it."""
    return max(1, -(-total // size))
