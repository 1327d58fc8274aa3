"""Structured logs for every process (web, worker, scheduler): one line per event.

`MAILPREFS_LOG_FORMAT=text` (default) writes `time LEVEL logger: event key=value ...`;
`json` writes one JSON object a line (`at`, `level`, `logger`, `event`, the event's
fields, `error` with the traceback where there is one), for a log collector. Code logs
through `event(log, "worker.batch", sent=12, ...)`; other libraries' records come out in
the same format.

No line carries an email address. We never log one on purpose (ids, counts and hashes
instead), and the formatter scrubs anything shaped like one from the whole line, the
traceback included, because relay replies ("550 <jane@...>: Recipient address
rejected") and database errors (SQL parameters) can quote one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
# An address: something@domain.tld, as loose as mail itself allows on either side.
_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:@]+\.[^\s<>()\[\]\"',;:@]+")
_REDACTED = "[address]"
_FIELDS = "mailprefs_fields"


def scrub(text: str) -> str:
    """`text` with every address-shaped run replaced by `[address]`."""
    return _ADDRESS.sub(_REDACTED, text) if "@" in text else text


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event: a short dotted name and its fields (ids, counts, reasons)."""
    logger.log(level, name, extra={_FIELDS: fields}, stacklevel=2)


class _Base(logging.Formatter):
    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        return dict(getattr(record, _FIELDS, None) or {})

    def error(self, record: logging.LogRecord) -> str | None:
        if record.exc_info:
            return self.formatException(record.exc_info)
        return record.exc_text or None


class TextFormatter(_Base):
    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line = f"{at} {record.levelname} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{k}={_text(v)}" for k, v in self.fields(record).items())
        if fields:
            line = f"{line} {fields}"
        error = self.error(record)
        if error:
            line = f"{line}\n{error}"
        return scrub(line)


class JsonFormatter(_Base):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in self.fields(record).items():
            entry.setdefault(key, value)
        error = self.error(record)
        if error:
            entry["error"] = error
        # Scrubbed value by value, before encoding: JSON escapes must stay whole.
        return json.dumps(_scrubbed(entry), default=str, ensure_ascii=False)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(str(k)): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_scrubbed(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub(str(value))


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (" " in text or not text) else text


class _Handler(logging.StreamHandler):
    """Ours, so that configuring again replaces it instead of adding a second one.
    Without a stream of its own it writes to whatever `sys.stderr` is at the time (a
    test runner swaps it per test)."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self.follows_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self.follows_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure(fmt: str = "text", level: int = logging.INFO, stream: Any = None) -> None:
    """Send every log record of this process to stderr in `fmt`, one line each."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    # APScheduler logs every run of every job at INFO; our jobs say what they did.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
