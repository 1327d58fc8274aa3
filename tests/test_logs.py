"""Structured logs: one line per event, text or JSON, and never an email address."""

from __future__ import annotations

import io
import json
import logging

import pytest

from mailprefs import config, logs


def emit(fmt: str, build) -> str:
    stream = io.StringIO()
    logs.configure(fmt, stream=stream)
    try:
        build(logging.getLogger("mailprefs.test"))
    finally:
        logs.configure("text")
    return stream.getvalue()


def test_json_lines_carry_the_event_and_its_fields_one_object_a_line():
    """`event()` in json: one parseable object a line with level, logger, event, fields."""
    out = emit("json", lambda log: logs.event(log, "worker.batch", sent=3, failed=0))
    (line,) = out.splitlines()
    entry = json.loads(line)
    assert entry["event"] == "worker.batch" and entry["logger"] == "mailprefs.test"
    assert entry["level"] == "info" and entry["sent"] == 3 and entry["failed"] == 0
    assert entry["at"].endswith("+00:00")


def test_text_lines_say_the_event_and_its_fields():
    out = emit("text", lambda log: logs.event(log, "outbox.retry", delivery=7, error="451 later"))
    assert out.rstrip().endswith('mailprefs.test: outbox.retry delivery=7 error="451 later"')
    assert out.count("\n") == 1


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_address_survives_in_a_message_a_field_or_a_traceback(fmt):
    """Relay replies and database errors quote addresses: every one is scrubbed, in the
    message, the fields and the traceback alike, and a JSON line stays valid JSON."""

    def build(log):
        logs.event(log, "outbox.retry", error='550 5.1.1 <jane.doe+x@example.co.uk>: "no"')
        log.warning("refused bob@example.com and Zoë@exämple.de")
        try:
            raise ValueError("(parameters: ('carol@example.org', 1))")
        except ValueError:
            log.exception("worker.error")

    out = emit(fmt, build)
    for address in ("jane.doe", "example.co.uk", "bob@", "Zoë", "carol@", "example.org"):
        assert address not in out
    assert "@" not in out and out.count("[address]") >= 4
    if fmt == "json":
        for line in out.splitlines():
            json.loads(line)


def test_configuring_again_replaces_the_handler_and_a_bad_format_is_refused():
    logs.configure("json")
    logs.configure("text")
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logs._Handler)]
    assert len(ours) == 1
    with pytest.raises(ValueError):
        logs.configure("xml")
    with pytest.raises(config.ConfigError, match="MAILPREFS_LOG_FORMAT"):
        config.load({"MAILPREFS_LOG_FORMAT": "xml"})
