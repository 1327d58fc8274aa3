"""The test SMTP sink itself: the behaviours other tests rely on."""

from __future__ import annotations

import smtplib
import threading
import time

import pytest

from tests.support.smtp_sink import (
    SmtpSink,
    maildir_files,
    read_maildir,
    start_sink_process,
    stop_and_count,
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


def _send_threads(port: int, count: int, connections: int) -> list[BaseException]:
    """`count` messages over `connections` smtplib connections at once."""
    errors: list[BaseException] = []

    def run(share: int, n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                for i in range(n):
                    to = f"t{share}.{i}@example.org"
                    client.sendmail("a@example.test", [to], RAW % to.encode())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(share, count // connections))
        for share in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_delay_holds_every_answer_but_serves_connections_concurrently():
    """Promise: with delay_ms each DATA answer waits that long, on every connection at
    once: eight connections take about as long as one, not eight times as long."""
    with SmtpSink(delay_ms=200) as sink:
        started = time.monotonic()
        assert _send_threads(sink.port, 8, 8) == []
        elapsed = time.monotonic() - started
        assert sink.accepted == 8
        assert elapsed >= 0.2
        # Served one after another, eight answers would take 1.6 s.
        assert elapsed < 1.6
        assert sink.stats()["peak_in_data"]["example.org"] == 8


def test_max_connections_answers_421_too_many_at_the_greeting():
    """Promise: a connection beyond max_connections open at once hears 421 "too many
    connections" at the greeting and is closed; the ones within the limit work."""
    with SmtpSink(max_connections=2) as sink:
        first = smtplib.SMTP("127.0.0.1", sink.port, timeout=5)
        second = smtplib.SMTP("127.0.0.1", sink.port, timeout=5)
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            smtplib.SMTP("127.0.0.1", sink.port, timeout=5)
        assert caught.value.smtp_code == 421
        assert b"too many connections" in caught.value.smtp_error
        first.sendmail("a@example.test", ["x@example.org"], RAW % b"x@example.org")
        first.quit()
        second.quit()
        assert sink.accepted == 1 and sink.refused_connections == 1
        assert sink.stats()["peak_connections"] >= 2


def test_rate_answers_451_slow_down_beyond_the_allowance():
    """Promise: rate=N accepts at most N messages a second; RCPT beyond it hears 451
    "slow down", and the same address is accepted again in a later second."""
    with SmtpSink(rate=3) as sink, smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as client:
        client.ehlo()
        codes = []
        for i in range(10):  # quick enough to span at most two one-second windows
            client.mail("a@example.test")
            code, reply = client.rcpt(f"r{i}@example.org")
            codes.append(code)
            if code == 250:
                client.data(RAW % b"r")
            else:
                assert b"slow down" in reply
                client.rset()
        assert codes.count(250) <= 6 and codes.count(451) == 10 - codes.count(250)
        time.sleep(1.05)
        client.sendmail("a@example.test", ["r0@example.org"], RAW % b"r")


@pytest.mark.parametrize(
    "to, code", [("throttle421.a@example.org", 421), ("slowdown451.a@example.org", 451)]
)
def test_back_pressure_answers_on_request_per_recipient(sink, to, code):
    """Promise: throttle421 and slowdown451 answer "slow down" with their code."""
    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send(sink.port, to)
    assert caught.value.recipients[to][0] == code
    assert b"slow down" in caught.value.recipients[to][1]
    assert sink.throttled == 1 and sink.messages == []


def test_idle_timeout_closes_an_idle_connection():
    """Promise: a connection idle for idle_timeout seconds is closed by the relay."""
    with SmtpSink(idle_timeout=0.2) as sink:
        client = smtplib.SMTP("127.0.0.1", sink.port, timeout=5)
        client.ehlo()
        time.sleep(0.5)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


@pytest.mark.slow
def test_the_sink_process_takes_delay_and_reports_peaks(tmp_path):
    """Promise: as a process, --delay and the COUNT report work as in a thread."""
    proc, port = start_sink_process(tmp_path / "sink", count_only=True, delay_ms=100)
    try:
        assert _send_threads(port, 4, 4) == []
    finally:
        report = stop_and_count(proc)
    assert report["accepted"] == 4
    assert report["peak_connections"] == 4
    assert report["peak_in_data"] == {"example.org": 4}
