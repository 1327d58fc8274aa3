"""Finding people (ops): the filtered list, per-topic counts (any marketing or ops key),
and a streamed CSV export of a filtered set. Every read of a person is audited."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Response, current_app, request
from pydantic import BaseModel, Field

from mailprefs.domain import people
from mailprefs.domain.errors import Invalid
from mailprefs.extensions import get_db
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.schemas import SubscriberStatusName, TopicStateName

routes = api.group("subscribers", roles=("ops",))
DEFAULT_LIMIT = 50


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


FILTERS = [
    _query(
        "status", "active or deactivated", {"type": "string", "enum": ["active", "deactivated"]}
    ),
    _query("topic", "a topic slug: people with a recorded state for it", {"type": "string"}),
    _query(
        "state",
        "with `topic`: that topic's state",
        {"type": "string", "enum": ["none", "pending", "opted_in", "opted_out"]},
    ),
    _query("email", "an exact address", {"type": "string", "maxLength": 320}),
    _query(
        "created_after",
        "ISO 8601 with offset (inclusive)",
        {"type": "string", "format": "date-time"},
    ),
    _query(
        "created_before",
        "ISO 8601 with offset (exclusive)",
        {"type": "string", "format": "date-time"},
    ),
]
PAGING = [
    _query("cursor", "`next_cursor` of the previous page", {"type": "string"}),
    _query("limit", f"1 to {people.MAX_LIMIT}, default {DEFAULT_LIMIT}", {"type": "integer"}),
]


class PersonItem(BaseModel):
    id: str
    email: str | None
    status: SubscriberStatusName
    created_at: datetime
    updated_at: datetime
    topics: dict[str, TopicStateName]


class PersonPage(BaseModel):
    items: list[PersonItem]
    next_cursor: str | None = Field(description="null on the last page")


class AudienceCounts(BaseModel):
    total: int = Field(description="registered people (erased ones excluded)")
    status: dict[str, int]
    topics: dict[str, dict[str, int]] = Field(
        description="per marketing topic, active people by state"
    )


def _arg(name: str) -> str | None:
    """A query parameter; given but empty is an error, not "no filter"."""
    raw = request.args.get(name)
    if raw is not None and not raw.strip():
        raise Invalid.field(name, "must not be empty (leave it out for no filter)")
    return raw


def _time(name: str) -> datetime | None:
    raw = _arg(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid.field(name, "not an ISO 8601 date and time") from None
    if value.tzinfo is None:
        raise Invalid.field(name, "needs a UTC offset")
    return value


def filters_from_request() -> people.Filters:
    if "\x00" in request.query_string.decode("latin-1"):
        raise Invalid.field("query", "must not contain NUL")
    return people.Filters(
        status=_arg("status"),
        topic=_arg("topic"),
        state=_arg("state"),
        email=_arg("email"),
        created_after=_time("created_after"),
        created_before=_time("created_before"),
    )


def _limit() -> int:
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit():
        raise Invalid.field("limit", f"from 1 to {people.MAX_LIMIT}")
    return int(raw)


@routes.get("/subscribers", responses={200: PersonPage}, errors=(422,), headers=FILTERS + PAGING)
def list_subscribers(call: Call):
    """Find people: filtered, cursor-paginated (every person listed is an audited read)"""
    filters = filters_from_request()
    key = current_app.config["MAILPREFS_HASH_KEY"]
    found, states, next_cursor = people.page(
        call.session, filters, hash_key=key, cursor=request.args.get("cursor"), limit=_limit()
    )
    detail = {"via": "list", "filters": filters.described()}
    for person in found:
        call.audit("subscriber.read", "subscriber", person.public_id, detail)
    items = [
        PersonItem(
            id=p.public_id,
            email=p.email,
            status=p.status.value,
            created_at=p.created_at,
            updated_at=p.updated_at,
            topics=states[p.id],
        )
        for p in found
    ]
    return call.commit(200, PersonPage(items=items, next_cursor=next_cursor))


@routes.get(
    "/counts/topics", roles=("marketing", "ops"), responses={200: AudienceCounts}, tag="topics"
)
def subscriber_counts(call: Call):
    """How many people, by status and by marketing topic state (numbers only)"""
    return 200, AudienceCounts(**people.counts(call.session))


@routes.get("/exports/subscribers", responses={200: None}, errors=(422,), headers=FILTERS)
def export_subscribers(call: Call):
    """A filtered set of people as CSV, streamed (audited)

    Columns: id, email, status, created_at, updated_at, one per topic (its state),
    attributes (JSON). A cell that starts with =, +, -, @, tab or CR is prefixed with ' so
    a spreadsheet does not run it as a formula. Same filters as the list.
    """
    filters = filters_from_request()
    key = current_app.config["MAILPREFS_HASH_KEY"]
    header, _ = people.export_rows(call.session, filters, hash_key=key)  # 422 before any row
    call.audit("subscriber.export_list", "subscriber", detail={"filters": filters.described()})
    call.session.commit()

    db = get_db()  # the answer streams after the app context has ended

    def lines() -> Iterator[str]:
        # Its own read-only session, closed when the answer ends: the request's session
        # is closed as the view returns, before the body is streamed.
        with db.session(read_only=True) as session:
            _, rows = people.export_rows(session, filters, hash_key=key)
            yield from csv_lines(header, rows)

    return Response(
        lines(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'},
    )


def csv_lines(
    header: list[str], rows: Iterator[list[str]], flush_at: int = 1 << 16
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
        if buffer.tell() > flush_at:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
