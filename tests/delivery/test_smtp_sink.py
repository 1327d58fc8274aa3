"""The test SMTP sink itself: the behaviours other tests rely on."""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.support.smtp_sink import (
    SmtpSink,
    maildir_files,
    read_maildir,
    start_sink_process,
    stop_sink_process,
)

RAW = b"From: a@example.test\r\nTo: %s\r\nSubject: hi\r\n\r\nbody\r\n.leading dot\r\n"


def send(port: int, to: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.sendmail("a@example.test", [to], RAW % to.encode())


@pytest.fixture
def sink():
    with SmtpSink() as running:
        yield running


def test_the_sink_keeps_accepted_mail_exactly(sink):
    """Promise: what a test reads from the sink is what the client sent."""
    send(sink.port, "x@example.org")
    assert sink.messages == [("a@example.test", ["x@example.org"], RAW % b"x@example.org")]


@pytest.mark.parametrize(
    "to, code",
    [
        ("reject550.a@example.org", 550),
        ("temp450.a@example.org", 450),
        ("close421.a@example.org", 421),
    ],
)
def test_the_sink_refuses_recipients_on_request(sink, to, code):
    """Promise: the local part chooses the RCPT answer; nothing is kept."""
    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send(sink.port, to)
    assert caught.value.recipients[to][0] == code
    assert sink.messages == []


def test_close421_really_closes_the_connection(sink):
    """Promise: after a 421 the sink hangs up."""
    client = smtplib.SMTP("127.0.0.1", sink.port, timeout=5)
    client.ehlo()
    client.mail("a@example.test")
    assert client.rcpt("close421.b@example.org")[0] == 421
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()


def test_drop_hangs_up_before_answering_and_keeps_nothing(sink):
    """Promise: a drop leaves the client not knowing; the sink did not keep it."""
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(sink.port, "drop.a@example.org")
    assert sink.messages == [] and sink.accepted == 0


def test_flaky_fails_n_times_per_address_then_accepts(sink):
    """Promise: flaky{N} answers 451 N times for that address, then 250."""
    codes = []
    for _ in range(4):
        try:
            send(sink.port, "flaky3.a@example.org")
            codes.append(250)
        except smtplib.SMTPRecipientsRefused as exc:
            codes.append(exc.recipients["flaky3.a@example.org"][0])
    assert codes == [451, 451, 451, 250]
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(sink.port, "flaky1.other@example.org")  # counted per address


def test_slow_delays_the_answer_but_keeps_the_message(sink):
    """Promise: slow{MS} holds the answer to DATA for MS ms; the message is kept."""
    started = time.monotonic()
    send(sink.port, "slow300.a@example.org")
    assert time.monotonic() - started >= 0.3
    assert len(sink.messages) == 1


def test_drop_every_hangs_up_after_each_kth_message():
    """Promise: drop_every=K closes the connection after answering every K-th message."""
    with SmtpSink(drop_every=2) as sink:
        client = smtplib.SMTP("127.0.0.1", sink.port, timeout=5)
        client.sendmail("a@example.test", ["1@example.org"], RAW % b"1")
        client.sendmail("a@example.test", ["2@example.org"], RAW % b"2")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.sendmail("a@example.test", ["3@example.org"], RAW % b"3")
        assert len(sink.messages) == 2


@pytest.mark.slow
def test_the_sink_process_writes_whole_files_and_stops_cleanly_on_sigterm(tmp_path):
    """Promise: as its own process the sink writes every accepted message as one file
    (envelope on top), never a temporary one, and exits 0 on SIGTERM."""
    maildir = tmp_path / "received"
    proc, port = start_sink_process(maildir)
    try:
        for i in range(3):
            send(port, f"p{i}@example.org")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(port, "reject550.x@example.org")
    finally:
        assert stop_sink_process(proc) == 0
    messages = read_maildir(maildir)
    assert [m["Delivered-To"] for m in messages] == [f"p{i}@example.org" for i in range(3)]
    assert [m["To"] for m in messages] == [f"p{i}@example.org" for i in range(3)]
    assert all(m["Return-Path"] == "<a@example.test>" for m in messages)
    assert len(maildir_files(maildir)) == 3 == len(list(maildir.iterdir()))
