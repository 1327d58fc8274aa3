"""Reading an import file: streamed, byte-accurate (for checkpoints), strict about its shape.

A file-level problem (not UTF-8, no `email` column, duplicate or unknown columns, not
CSV at all) is a `FileProblem` naming the line; `prescan` finds every one of them before
anything is written. A row-level problem is a list of (field, detail) and that row alone
is refused. Nothing here touches the database.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from ipaddress import ip_address
from typing import IO, Any

from mailprefs.domain.addresses import normalise
from mailprefs.domain.errors import Invalid
from mailprefs.domain.subscribers import age_attribute, check_age

SUBSCRIBER_COLUMNS = frozenset(
    {
        "email",
        "topic",
        "topics",
        "consent_at",
        "source",
        "source_detail",
        "ip",
        "user_agent",
        "policy_version",
        "confirmed_at",
        "status",
    }
)
SUPPRESSION_COLUMNS = frozenset({"email", "email_sha256", "reason"})
SUPPRESSION_REASONS = ("bounce", "complaint", "unsubscribe", "manual")
SOURCES = ("api", "import", "web_form", "staff")
STATUSES = {"opted_in": "opted_in", "opted_out": "opted_out", "unsubscribed": "opted_out"}
ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_ATTRIBUTES = 50
SHA256 = re.compile(r"^[0-9a-f]{64}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LINE_BREAK_OR_NUL = re.compile(r"[\r\n\x00]")
# A plain ASCII dot-atom address: the common case, checked without email-validator's
# full parse (its domain check is still made, once per domain; see `fast_normalise`).
_DOT_ATOM = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+)$"
)
csv.field_size_limit(1 << 20)


class FileProblem(Exception):
    """The file as a whole cannot be imported; `line` is 0 when no line is to blame."""

    def __init__(self, line: int, detail: str, field: str = "file") -> None:
        super().__init__(detail)
        self.line, self.detail, self.field = line, detail, field


@dataclass(slots=True)
class Record:
    """One record as read: its first physical line, and where the file stands after it."""

    line: int
    end_line: int
    end_offset: int
    values: dict[str, Any] | None  # None: the record could not be read (see `problem`)
    problem: str | None = None


@dataclass(slots=True)
class Row:
    """A valid subscriber row (every field given by `subscriber_row`)."""

    line: int
    email: str
    topics: tuple[str, ...]
    consent_at: datetime | None
    source: str | None
    source_detail: str | None
    ip: str | None
    user_agent: str | None
    policy_version: str | None
    confirmed_at: datetime | None
    status: str
    attributes: dict[str, Any]

    @property
    def has_evidence(self) -> bool:
        return self.consent_at is not None and self.source is not None


@dataclass
class Scan:
    sha256: str
    size: int
    records: int
    columns: list[str]


class Reader:
    """Records of one file, from its start or from a checkpoint (offset and line)."""

    def __init__(self, stream: IO[bytes], fmt: str, kind: str) -> None:
        if fmt not in ("csv", "ndjson"):
            raise FileProblem(0, "the format must be csv or ndjson")
        self.stream, self.fmt, self.kind = stream, fmt, kind
        self.offset = 0
        self.line = 0
        self.columns: list[str] = []
        self._header_end = (0, 0)
        if fmt == "csv":
            self._read_header()

    # --- physical lines --------------------------------------------------------------

    def _lines(self) -> Iterator[str]:
        for raw in self.stream:
            self.line += 1
            self.offset += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FileProblem(
                    self.line,
                    f"line {self.line} is not UTF-8 (byte {exc.start + 1} of the line); "
                    "save the file as UTF-8 and upload it again",
                ) from None
            if self.line == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a byte order mark, as spreadsheet programs write
            yield text

    # --- CSV ---------------------------------------------------------------------------

    def _read_header(self) -> None:
        lines = self._lines()
        try:
            header = next(csv.reader(lines), None)
        except csv.Error as exc:
            raise FileProblem(1, f"line 1 is not a CSV header: {exc}") from None
        if not header or not any(h.strip() for h in header):
            raise FileProblem(1, "the file is empty: a header row (email, ...) is required")
        if header[0].lstrip().startswith(("{", "[")):
            raise FileProblem(
                1, "line 1 looks like JSON, not a CSV header: send NDJSON as application/x-ndjson"
            )
        self.columns = check_header([h.strip() for h in header], self.kind)
        self._header_end = (self.line, self.offset)

    def records(self, start_line: int = 0, start_offset: int = 0) -> Iterator[Record]:
        """Every record after the header (or after the checkpoint given)."""
        self._seek(start_line, start_offset)
        if self.fmt == "ndjson":
            yield from self._ndjson()
            return
        width = len(self.columns)
        for first, cells in self._rows():
            if len(cells) != width:
                yield Record(
                    first,
                    self.line,
                    self.offset,
                    None,
                    f"expected {width} fields as in the header, found {len(cells)}",
                )
                continue
            yield Record(first, self.line, self.offset, dict(zip(self.columns, cells, strict=True)))

    def count(self) -> int:
        """Read every record after the header, only to find the file's problems (raised);
        how many there are. Builds nothing per record: this is the whole-file check."""
        self._seek(0, 0)
        if self.fmt == "ndjson":
            return sum(1 for text in self._lines() if text.strip())
        return sum(1 for _ in self._rows())

    def _seek(self, line: int, offset: int) -> None:
        if self.fmt == "csv" and offset < self._header_end[1]:
            line, offset = self._header_end
        self.stream.seek(offset)
        self.line, self.offset = line, offset

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        """(first line, cells) of each CSV record that is not blank."""
        reader = csv.reader(self._lines(), strict=True)
        while True:
            first = self.line + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise FileProblem(first, f"line {first} is not valid CSV: {exc}") from None
            if cells and (len(cells) > 1 or cells[0].strip()):
                yield first, cells

    # --- NDJSON ------------------------------------------------------------------------

    def _ndjson(self) -> Iterator[Record]:
        for text in self._lines():
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError:
                yield Record(self.line, self.line, self.offset, None, "not a JSON object")
                continue
            if not isinstance(value, dict):
                yield Record(self.line, self.line, self.offset, None, "not a JSON object")
                continue
            values = dict(value)
            attributes = values.pop("attributes", None)
            if isinstance(attributes, dict):
                values.update({f"attr.{k}": v for k, v in attributes.items()})
            elif attributes is not None:
                yield Record(self.line, self.line, self.offset, None, "attributes: not an object")
                continue
            try:
                check_header(list(values), self.kind)
            except FileProblem as exc:
                yield Record(self.line, self.line, self.offset, None, exc.detail)
                continue
            yield Record(self.line, self.line, self.offset, values)


def check_header(columns: list[str], kind: str) -> list[str]:
    """The columns, or a FileProblem naming what is wrong with them."""
    allowed = SUBSCRIBER_COLUMNS if kind == "subscribers" else SUPPRESSION_COLUMNS
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise FileProblem(1, f"the column {name!r} appears twice in the header", field=name)
        seen.add(name)
    if kind == "subscribers" and "email" not in seen:
        raise FileProblem(1, "the header has no 'email' column", field="email")
    for name in columns:
        if name in allowed:
            continue
        if kind == "subscribers" and name.startswith("attr."):
            if not ATTRIBUTE.match(name[5:]):
                raise FileProblem(
                    1, f"{name!r}: an attribute name is letters, digits and _", field=name
                )
            continue
        raise FileProblem(
            1, f"unknown column {name!r}; expected: {', '.join(sorted(allowed))}", field=name
        )
    if kind == "subscribers":
        if "topic" in seen and "topics" in seen:
            raise FileProblem(1, "use either 'topic' or 'topics', not both", field="topics")
        if sum(1 for c in columns if c.startswith("attr.")) > MAX_ATTRIBUTES:
            raise FileProblem(1, f"at most {MAX_ATTRIBUTES} attribute columns")
    elif "email" not in seen and "email_sha256" not in seen:
        raise FileProblem(1, "the header has no 'email' or 'email_sha256' column", field="email")
    return columns


def prescan(path: str, fmt: str, kind: str) -> Scan:
    """Read the whole file once: its SHA-256, and every file-level problem (raised)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    with open(path, "rb") as stream:
        reader = Reader(stream, fmt, kind)
        records = reader.count()
    return Scan(digest.hexdigest(), size, records, reader.columns)


# --- values ----------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def _domain_ok(domain: str) -> bool:
    try:
        normalise("x@" + domain)
    except Invalid:
        return False
    return True


def fast_normalise(address: str) -> str:
    """`addresses.normalise`, sped up for plain ASCII addresses: the same result (the
    lower-cased address), its domain checked by email-validator once per domain."""
    candidate = address.strip().lower()
    match = _DOT_ATOM.match(candidate)
    short = match is not None and len(candidate) <= 254 and candidate.index("@") <= 64
    if short and _domain_ok(match.group(1)):
        return candidate
    return normalise(address)


def parse_time(value: str, name: str, now: datetime) -> datetime:
    when = _utc(value.strip())
    if when is None:
        raise Invalid.field(name, "not an ISO 8601 date and time")
    if when.tzinfo is None:
        raise Invalid.field(name, "needs a UTC offset (e.g. 2024-05-01T10:00:00Z or +02:00)")
    if when > now:
        raise Invalid.field(name, "is in the future")
    return when


@lru_cache(maxsize=4096)
def _utc(value: str) -> datetime | None:
    """The time in UTC (naive if it has no offset; None if it is no ISO 8601 time): a
    file's dates repeat (one export, one campaign), so each is parsed once."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is None else when.astimezone(UTC)


def _text(values: dict[str, Any], name: str, limit: int) -> str | None:
    raw = values.get(name)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise Invalid.field(name, "must be text")
    raw = raw.strip()
    if not raw:
        return None
    if CONTROL.search(raw):
        raise Invalid.field(name, "must not contain line breaks, NUL or control characters")
    if len(raw) > limit:
        raise Invalid.field(name, f"at most {limit} characters")
    return raw


def _topics(values: dict[str, Any]) -> tuple[str, ...]:
    raw = values.get("topics", values.get("topic"))
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str) and ";" not in raw:
        slug = raw.strip()  # one topic, the common case
        return (slug,) if slug else ()
    items = raw if isinstance(raw, list) else str(raw).split(";")
    slugs = tuple(dict.fromkeys(str(s).strip() for s in items if str(s).strip()))
    return slugs


def _attributes(values: dict[str, Any], today: date) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in values.items():
        if not name.startswith("attr."):
            continue
        key = name[5:]
        if not ATTRIBUTE.match(key):
            raise Invalid.field(name, "an attribute name is letters, digits and _")
        if raw is None or raw == "":
            continue  # an empty cell sets nothing (it does not clear a value)
        if isinstance(raw, str):
            if LINE_BREAK_OR_NUL.search(raw):
                raise Invalid.field(name, "must not contain CR, LF or NUL")
            if len(raw) > 2000:
                raise Invalid.field(name, "at most 2000 characters")
            if key == "age" and raw.strip().isdigit():
                raw = int(raw.strip())
        elif isinstance(raw, bool) or not isinstance(raw, int | float):
            raise Invalid.field(name, "must be text, a number, true or false")
        out[key] = raw
    if len(out) > MAX_ATTRIBUTES:
        raise Invalid.field("attributes", f"at most {MAX_ATTRIBUTES} attributes")
    if not any(map(_means_age, out)):
        return out  # no attribute names an age or a birth date: nothing to check
    try:
        check_age(out, today)
    except Invalid as exc:
        raise Invalid.field("attr." + exc.errors[0]["field"].split(".", 1)[1], exc.detail) from None
    return out


@lru_cache(maxsize=1024)
def _means_age(name: str) -> bool:
    # Once per attribute name, not once per row: the names are the file's columns.
    return age_attribute(name) is not None


def subscriber_row(record: Record, now: datetime) -> Row:
    """A valid row, or Invalid naming the first field at fault."""
    values = record.values or {}
    raw_email = values.get("email")
    if not isinstance(raw_email, str) or not raw_email.strip():
        raise Invalid.field("email", "is required")
    email = fast_normalise(raw_email)
    raw_status = values.get("status") or "opted_in"
    status = raw_status.strip() if isinstance(raw_status, str) else None
    if status not in STATUSES:
        raise Invalid.field("status", "must be opted_in, opted_out or unsubscribed")
    source = _text(values, "source", 32)
    if source is not None and source not in SOURCES:
        raise Invalid.field("source", f"must be one of {', '.join(SOURCES)}")
    ip = _text(values, "ip", 45)
    if ip is not None:
        try:
            ip = str(ip_address(ip))
        except ValueError:
            raise Invalid.field("ip", "not an IPv4 or IPv6 address") from None
    consent_at = _text(values, "consent_at", 64)
    confirmed_at = _text(values, "confirmed_at", 64)
    row = Row(
        line=record.line,
        email=email,
        topics=_topics(values),
        consent_at=parse_time(consent_at, "consent_at", now) if consent_at else None,
        source=source,
        source_detail=_text(values, "source_detail", 1000),
        ip=ip,
        user_agent=_text(values, "user_agent", 512),
        policy_version=_text(values, "policy_version", 64),
        confirmed_at=parse_time(confirmed_at, "confirmed_at", now) if confirmed_at else None,
        status=STATUSES[status],
        attributes=_attributes(values, now.date()),
    )
    if row.confirmed_at and row.consent_at and row.confirmed_at < row.consent_at:
        raise Invalid.field("confirmed_at", "is earlier than consent_at")
    return row
