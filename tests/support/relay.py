"""Fixtures for a real SMTP relay (registered for every test by tests/conftest.py):
`sink` in this process (aiosmtpd in a thread), `sink_process` as a process of its own
writing a maildir, for tests whose senders are processes too; `relay_config`, the app
settings that send through `sink`."""

from __future__ import annotations

import pytest

from tests.support.smtp_sink import SmtpSink, start_sink_process, stop_sink_process


@pytest.fixture
def sink():
    with SmtpSink() as running:
        yield running


@pytest.fixture
def relay_config(sink) -> dict:
    """App settings that send through `sink` (an `app_config` returns or extends them)."""
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port}


@pytest.fixture
def sink_process(tmp_path):
    """(maildir, port) of a sink process, stopped after the test."""
    maildir = tmp_path / "received"
    proc, port = start_sink_process(maildir)
    yield maildir, port
    stop_sink_process(proc)
