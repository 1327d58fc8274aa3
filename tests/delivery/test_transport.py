"""Transports: only gate-allowed mail leaves, and SMTP outcomes are classified right."""

from __future__ import annotations

import dataclasses
import os
import socket

import pytest

from mailprefs import clock
from mailprefs.delivery import transport as transport_module
from mailprefs.delivery.message import MessageBuilder
from mailprefs.delivery.transport import (
    CaptureTransport,
    NotAllowed,
    PermanentFailure,
    SMTPTransport,
    TemporaryFailure,
    captured_files,
    remove_captured_for,
    transport_for,
)
from tests.support import mail
from tests.support.smtp_sink import SmtpSink


class Allowed:
    """Stand-in for the gate's Allowed (the transport only reads `allowed`)."""

    allowed = True
    reason = None


class Blocked:
    allowed = False

    def __init__(self, reason: str = "opted_out") -> None:
        self.reason = reason


class Lookalike:
    allowed = "yes"  # truthy, but not the gate's True


def message(to: str = "jane@example.org"):
    builder = MessageBuilder(mail.settings(), mail.tokens(), mail.marketing(html=None))
    return builder.build(mail.recipient(to))


@pytest.fixture(params=[True, False], ids=["pipelining", "no-pipelining"])
def pipelining(request) -> bool:
    """Whether the relay offers PIPELINING (RFC 2920): every SMTP promise holds both ways."""
    return request.param


@pytest.fixture
def sink(pipelining):
    with SmtpSink(pipelining=pipelining) as running:
        yield running


def smtp(sink, **settings) -> SMTPTransport:
    config = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port, "MAIL_TIMEOUT": 5}
    config.update(settings)
    return SMTPTransport(config)


def received(sink) -> list[str]:
    return [rcpt for _from, rcpts, _raw in sink.messages for rcpt in rcpts]


@pytest.mark.parametrize(
    "decision",
    [Blocked(), Blocked("suppressed_bounce"), None, "allowed", True, Allowed, Lookalike()],
)
def test_the_transport_refuses_what_the_gate_did_not_allow(sink, tmp_path, decision):
    """Promise: no decision, a blocked one, or anything that merely looks allowed sends
    nothing, over SMTP or to the capture folder."""
    with smtp(sink) as transport, pytest.raises(NotAllowed):
        transport.send(decision, message())
    assert sink.messages == [] and sink.connections == 0
    with CaptureTransport(tmp_path / "mail") as capture, pytest.raises(NotAllowed):
        capture.send(decision, message())
    assert captured_files(tmp_path / "mail") == []


def test_an_allowed_message_arrives_byte_for_byte(sink):
    """Promise: 250 means sent; the relay gets our bytes with the bare envelope."""
    built = message()
    with smtp(sink) as transport:
        transport.send(Allowed(), built)
    ((envelope_from, rcpts, raw),) = sink.messages
    assert envelope_from == "news@news.example.test" and rcpts == ["jane@example.org"]
    assert raw == built.raw


def test_one_connection_serves_many_messages(sink):
    """Promise (speed): sends reuse one SMTP connection."""
    with smtp(sink) as transport:
        for i in range(5):
            transport.send(Allowed(), message(f"p{i}@example.org"))
        assert transport.connections == 1
    assert sink.connections == 1 and len(sink.messages) == 5


def test_a_550_on_the_recipient_is_a_permanent_recipient_failure(sink):
    """Promise: a 5xx on RCPT TO says the address is bad (the worker suppresses it),
    and the connection stays usable for the next message."""
    with smtp(sink) as transport:
        with pytest.raises(PermanentFailure) as caught:
            transport.send(Allowed(), message("reject550.x@example.org"))
        assert caught.value.recipient is True and caught.value.code == 550
        transport.send(Allowed(), message("next@example.org"))
        assert transport.connections == 1
    assert received(sink) == ["next@example.org"]


def test_a_554_after_the_message_is_permanent_but_not_the_addresss_fault(sink):
    """Promise: a refused message (content) fails for good without suppressing anyone."""
    with smtp(sink) as transport, pytest.raises(PermanentFailure) as caught:
        transport.send(Allowed(), message("data554.x@example.org"))
    assert caught.value.recipient is False and caught.value.code == 554
    assert sink.messages == []


@pytest.mark.parametrize(
    "address, code", [("temp450.x@example.org", 450), ("data451.x@example.org", 451)]
)
def test_a_4xx_is_a_temporary_failure(sink, address, code):
    """Promise: 4xx on RCPT or after DATA is retried later, never a bounce."""
    with smtp(sink) as transport:
        with pytest.raises(TemporaryFailure) as caught:
            transport.send(Allowed(), message(address))
        assert caught.value.code == code and not caught.value.connection
        transport.send(Allowed(), message("next@example.org"))
    assert received(sink) == ["next@example.org"]


def test_a_421_is_temporary_and_the_next_send_reconnects(sink):
    """Promise: a relay closing the channel (421) fails this send temporarily and the
    next send opens a new connection and succeeds."""
    with smtp(sink) as transport:
        with pytest.raises(TemporaryFailure) as caught:
            transport.send(Allowed(), message("close421.x@example.org"))
        assert caught.value.code == 421 and caught.value.connection
        assert not transport.connected
        transport.send(Allowed(), message("after@example.org"))
        assert transport.connections == 2
    assert received(sink) == ["after@example.org"]


def test_a_connection_dropped_after_the_message_is_temporary_and_may_have_arrived(sink):
    """Promise: a drop before the answer is retried (temporary), flagged as possibly
    delivered, and the next send reconnects."""
    with smtp(sink) as transport:
        with pytest.raises(TemporaryFailure) as caught:
            transport.send(Allowed(), message("drop.x@example.org"))
        assert caught.value.maybe_delivered and caught.value.connection
        transport.send(Allowed(), message("after@example.org"))
    assert received(sink) == ["after@example.org"]


def test_a_flaky_address_fails_temporarily_then_goes_through(sink):
    """Promise: 451 twice, then 250: two temporary failures, then sent once."""
    outcomes = []
    with smtp(sink) as transport:
        for _ in range(3):
            try:
                transport.send(Allowed(), message("flaky2.x@example.org"))
                outcomes.append("sent")
            except TemporaryFailure as exc:
                outcomes.append(exc.code)
    assert outcomes == [451, 451, "sent"]
    assert received(sink) == ["flaky2.x@example.org"]


def test_a_refused_connection_is_temporary():
    """Promise: a relay that is down is a temporary failure of the relay, not a bounce."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        transport = SMTPTransport(
            {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": port, "MAIL_TIMEOUT": 2}
        )
        with pytest.raises(TemporaryFailure) as caught:
            transport.send(Allowed(), message())
    assert caught.value.connection and not caught.value.maybe_delivered


def test_a_relay_too_slow_to_answer_is_a_temporary_failure_that_may_have_arrived(sink):
    """Promise: a timeout waiting for the answer to DATA is temporary, possibly delivered."""
    with smtp(sink, MAIL_TIMEOUT=0.3) as transport, pytest.raises(TemporaryFailure) as caught:
        transport.send(Allowed(), message("slow2000.x@example.org"))
    assert caught.value.maybe_delivered


def test_a_relay_that_closes_idle_or_busy_connections_loses_no_message(pipelining):
    """Promise: when the relay hangs up between messages (after answering), the next
    message goes on a new connection without failing."""
    with SmtpSink(drop_every=2, pipelining=pipelining) as sink, smtp(sink) as transport:
        for i in range(7):
            transport.send(Allowed(), message(f"p{i}@example.org"))
    assert received(sink) == [f"p{i}@example.org" for i in range(7)]
    assert sink.connections == 4


class _CountingSocket:
    """The client's own socket, counting its writes (each write waits for an answer)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.writes = 0

    def sendall(self, data: bytes) -> None:
        self.writes += 1
        self.sock.sendall(data)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


@pytest.mark.parametrize("offered, writes", [(True, 2), (False, 4)])
def test_pipelining_halves_the_round_trips_where_the_relay_offers_it(offered, writes):
    """Promise (speed): where the relay offers PIPELINING, MAIL FROM, RCPT TO and DATA
    go out in one write and the message in another; where it does not, each command
    waits for its answer (RFC 2920 forbids pipelining to a relay that did not offer it).
    `MAILPREFS_SMTP_PIPELINING=false` turns it off whatever the relay offers."""
    with SmtpSink(pipelining=offered) as sink, smtp(sink) as transport:
        transport.send(Allowed(), message("first@example.org"))
        counting = _CountingSocket(transport._smtp.sock)
        transport._smtp.sock = counting
        for i in range(3):
            transport.send(Allowed(), message(f"p{i}@example.org"))
        assert counting.writes == 3 * writes
    with SmtpSink(pipelining=True) as sink, smtp(sink, MAILPREFS_SMTP_PIPELINING=False) as off:
        off.send(Allowed(), message("first@example.org"))
        counting = _CountingSocket(off._smtp.sock)
        off._smtp.sock = counting
        off.send(Allowed(), message("second@example.org"))
        assert counting.writes == 4
    assert received(sink) == ["first@example.org", "second@example.org"]


def test_lines_that_start_with_a_dot_arrive_intact(sink):
    """Promise: the message's bytes arrive as built, even lines that begin with a dot or
    are a lone dot (dot-stuffed on the wire, RFC 5321 4.5.2), and a body without a final
    line break."""
    built = message()
    for raw in (
        built.raw + b"\r\n.\r\n..two\r\n.hidden\r\nend\r\n",
        built.raw.rstrip(b"\r\n") + b"\r\n.no final line break",
    ):
        with smtp(sink) as transport:
            transport.send(Allowed(), dataclasses.replace(built, raw=raw))
        assert sink.messages[-1][2].rstrip(b"\r\n") == raw.rstrip(b"\r\n")
    assert len(sink.messages) == 2


def test_close_quits_and_can_be_called_twice(sink):
    """Promise: closing says QUIT and a second close is harmless."""
    transport = smtp(sink)
    transport.send(Allowed(), message())
    transport.close()
    transport.close()
    assert not transport.connected
    transport.send(Allowed(), message("again@example.org"))  # reopens lazily
    transport.close()
    assert len(sink.messages) == 2


# -- capture ------------------------------------------------------------------------------
def test_captured_mail_is_written_as_parseable_eml_files(tmp_path):
    """Promise: with mail captured, each message is one whole .eml file, named by time
    and Message-ID, and never by address."""
    clock.freeze()
    folder = tmp_path / "instance" / "mail"
    built = [message("a@example.org"), message("b@example.org")]
    with CaptureTransport(folder) as capture:
        for each in built:
            capture.send(Allowed(), each)
    files = captured_files(folder)
    assert len(files) == 2
    assert sorted(p.read_bytes() for p in files) == sorted(b.raw for b in built)
    for path in files:
        assert path.name.startswith(clock.now().strftime("%Y%m%dT%H%M%S"))
        assert "example.org" not in path.name.replace("news.example.test", "")
        assert mail.parse(path.read_bytes())["Message-ID"] in {b.message_id for b in built}
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_captured_files_appear_whole(tmp_path, monkeypatch):
    """Promise: a reader never sees half a message: the file is complete under a hidden
    temporary name in the same folder before it is renamed into place."""
    folder = tmp_path / "mail"
    built = message()
    seen = []
    real_replace = os.replace

    def checking_replace(src, dst):
        src, dst = os.fspath(src), os.fspath(dst)
        seen.append((src, dst))
        assert os.path.dirname(src) == os.path.dirname(dst) == str(folder)
        assert os.path.basename(src).startswith(".") and not src.endswith(".eml")
        assert not os.path.exists(dst)
        with open(src, "rb") as handle:
            assert handle.read() == built.raw
        real_replace(src, dst)

    monkeypatch.setattr(transport_module.os, "replace", checking_replace)
    CaptureTransport(folder).send(Allowed(), built)
    assert len(seen) == 1 and captured_files(folder) == [folder / os.path.basename(seen[0][1])]


def test_erasure_removes_only_that_persons_captured_mail(tmp_path):
    """Promise: erasing a person deletes the captured copies of their mail, and no one
    else's."""
    folder = tmp_path / "mail"
    with CaptureTransport(folder) as capture:
        for to in (
            "jane@example.org",
            "john@example.org",
            "jane@example.org",
            "jane@bücher.example",
        ):
            capture.send(Allowed(), message(to))
    assert remove_captured_for(folder, "JANE@example.org") == 2
    remaining = [str(mail.parse(p.read_bytes())["To"]) for p in captured_files(folder)]
    assert sorted(remaining) == ["jane@xn--bcher-kva.example", "john@example.org"]
    assert remove_captured_for(folder, "jane@bücher.example") == 1
    assert remove_captured_for(tmp_path / "missing", "jane@example.org") == 0


def test_the_configuration_chooses_capture_or_smtp(tmp_path):
    """Promise: MAIL_SERVER unset captures to the folder; set, it sends over SMTP."""
    capture = transport_for(
        {"MAILPREFS_CAPTURE_MAIL": True, "MAILPREFS_MAIL_CAPTURE_DIR": str(tmp_path)}
    )
    assert isinstance(capture, CaptureTransport) and capture.directory == tmp_path
    relay = transport_for(
        {
            "MAILPREFS_CAPTURE_MAIL": False,
            "MAIL_SERVER": "relay.example",
            "MAIL_PORT": 587,
            "MAIL_USE_TLS": True,
        }
    )
    assert isinstance(relay, SMTPTransport)
    assert (relay.host, relay.port, relay.use_tls) == ("relay.example", 587, True)
