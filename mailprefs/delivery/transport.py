"""Transports: the only way a message leaves the service.

A transport sends only what the gate allowed: `send(decision, message)` refuses any
decision that is not an allowed one, so no caller can skip the gate by accident.

SMTP failures are sorted into what the worker needs to know: try again later
(TemporaryFailure: 4xx, 421, a dropped connection, a timeout, a refused connection) or
never (PermanentFailure: 5xx; `recipient` says whether it was the address that was
refused, which makes it a hard bounce). One connection is reused across sends and opened
again after a drop. Where the relay offers PIPELINING (RFC 2920), MAIL FROM, RCPT TO and
DATA go out together: two round trips a message instead of four. A transport is not
thread-safe: one per worker thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Mapping
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from types import TracebackType
from typing import Any

from mailprefs import clock
from mailprefs.delivery.headers import bare_address
from mailprefs.delivery.types import BuiltMessage


class DeliveryError(Exception):
    """A message could not be handed over."""

    def __init__(self, detail: str, code: int | None = None) -> None:
        super().__init__(f"{code} {detail}" if code else detail)
        self.code = code
        self.detail = detail


class TemporaryFailure(DeliveryError):
    """Try again later. `connection` is True when the relay, not this recipient, failed
    (the rest of a batch would fail too); `maybe_delivered` when the connection was lost
    after the whole message was sent, so the relay may have accepted it."""

    def __init__(
        self,
        detail: str,
        code: int | None = None,
        *,
        connection: bool = False,
        maybe_delivered: bool = False,
    ) -> None:
        super().__init__(detail, code)
        self.connection = connection
        self.maybe_delivered = maybe_delivered


class PermanentFailure(DeliveryError):
    """Never retry. `recipient` is True when the relay refused the address itself."""

    def __init__(self, detail: str, code: int | None = None, *, recipient: bool = False) -> None:
        super().__init__(detail, code)
        self.recipient = recipient


class NotAllowed(Exception):
    """The transport was handed a message without an allowed gate decision."""


def _require_allowed(decision: Any) -> None:
    # The gate's Allowed carries `allowed = True` and Blocked `allowed = False`; anything
    # else (None, a reason string, the Allowed class itself) is not a decision to send.
    if isinstance(decision, type) or getattr(decision, "allowed", False) is not True:
        reason = getattr(decision, "reason", None) or repr(decision)
        raise NotAllowed(f"the gate did not allow this message ({reason})")


class Transport:
    """Base: `send` checks the decision, subclasses deliver in `_deliver`."""

    def open(self) -> None:
        """Get ready to send (a no-op where there is nothing to prepare)."""

    def close(self) -> None:
        """Release what `open` or sending took; safe to call more than once."""

    def send(self, decision: Any, message: BuiltMessage) -> None:
        """Hand `message` over, only if `decision` is an allowed gate decision.

        Raises NotAllowed (nothing sent), TemporaryFailure or PermanentFailure.
        """
        _require_allowed(decision)
        self._deliver(message)

    def _deliver(self, message: BuiltMessage) -> None:
        raise NotImplementedError

    def __enter__(self) -> Transport:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SMTPTransport(Transport):
    """SMTP over one reused connection, configured by Flask-Mail's MAIL_* settings.

    Takes a plain mapping (an app's config will do), so a worker needs no app context.
    The connection is opened on the first send, not by `open()`: a relay that is down
    then shows as a TemporaryFailure of that send, which the worker already handles.
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.host = settings.get("MAIL_SERVER") or "localhost"
        self.port = int(settings.get("MAIL_PORT") or 25)
        self.use_tls = bool(settings.get("MAIL_USE_TLS"))
        self.use_ssl = bool(settings.get("MAIL_USE_SSL"))
        self.username = settings.get("MAIL_USERNAME")
        self.password = settings.get("MAIL_PASSWORD")
        self.timeout = float(settings.get("MAIL_TIMEOUT") or 30)
        self.pipelining = bool(settings.get("MAILPREFS_SMTP_PIPELINING", True))
        self._smtp: smtplib.SMTP | None = None
        self.connections = 0  # how many times a connection was opened (for tests, stats)

    @property
    def connected(self) -> bool:
        return self._smtp is not None

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.use_ssl:
                context = ssl.create_default_context()
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            try:
                smtp.ehlo()
                if self.use_tls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.username and self.password:
                    smtp.login(self.username, self.password)
            except BaseException:
                smtp.close()
                raise
        except smtplib.SMTPResponseException as exc:
            # A 5xx at greeting, EHLO or login is our relay or our credentials, not the
            # recipient's fault: retry later (and let ops see the errors).
            raise TemporaryFailure(_text(exc.smtp_error), exc.smtp_code, connection=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(
                f"cannot connect to {self.host}:{self.port}: {exc}", connection=True
            ) from None
        self.connections += 1
        return smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()

    def close(self) -> None:
        """QUIT politely; errors are ignored (the connection is going away anyway)."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        with contextlib.suppress(OSError):
            smtp.close()

    def _deliver(self, message: BuiltMessage) -> None:
        reused = self._smtp is not None
        try:
            self._transaction(message)
        except _Stale:
            # The relay closed an idle connection before this message's MAIL FROM was
            # answered: nothing of this message was accepted, so sending it again on a
            # new connection cannot duplicate it.
            if not reused:
                raise TemporaryFailure(
                    "connection lost before MAIL FROM", connection=True
                ) from None
            self._transaction(message, stale_is_failure=True)

    def _transaction(self, message: BuiltMessage, *, stale_is_failure: bool = False) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        smtp = self._smtp
        if self.pipelining and smtp.has_extn("pipelining"):
            self._pipelined(smtp, message, stale_is_failure)
            return
        stage = "MAIL FROM"
        try:
            code, reply = smtp.mail(message.envelope_from)
            if code != 250:
                self._refused(smtp, code, reply, stage)
            stage = "RCPT TO"
            code, reply = smtp.rcpt(message.to)
            if code not in (250, 251):
                self._refused(smtp, code, reply, stage)
            stage = "DATA"
            code, reply = smtp.data(message.raw)
            if code != 250:
                self._refused(smtp, code, reply, stage)
        except DeliveryError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            # smtplib raises SMTPDataError itself for a refused DATA command (before the
            # message is sent) and SMTPServerDisconnected / OSError for a lost connection.
            if isinstance(exc, smtplib.SMTPResponseException):
                self._refused(smtp, exc.smtp_code, exc.smtp_error, stage)
            self._drop()
            if stage == "MAIL FROM" and not stale_is_failure:
                raise _Stale from None
            raise TemporaryFailure(
                f"connection lost at {stage}: {exc or type(exc).__name__}",
                connection=True,
                # Lost while waiting for the answer to the message: it may have arrived.
                maybe_delivered=stage == "DATA",
            ) from None

    def _pipelined(self, smtp: smtplib.SMTP, message: BuiltMessage, stale_is_failure: bool) -> None:
        """One transaction with RFC 2920 pipelining: MAIL FROM, RCPT TO and DATA in one
        write, their three answers read in order, then the message once DATA said 354.

        What can be known stays as precise as without pipelining: a connection lost
        before the first answer is a stale connection (nothing was accepted); lost before
        the 354, the message was never sent; lost after the message, it may have arrived.
        """
        for address in (message.envelope_from, message.to):
            if "\r" in address or "\n" in address:
                raise PermanentFailure("an envelope address contains a line break")
        commands = (
            f"MAIL FROM:{smtplib.quoteaddr(message.envelope_from)}\r\n"
            f"RCPT TO:{smtplib.quoteaddr(message.to)}\r\n"
            "DATA\r\n"
        )
        replies: list[tuple[int, bytes]] = []
        lost: BaseException | None = None
        try:
            smtp.send(commands)
            for _ in _PIPELINED_STAGES:
                replies.append(smtp.getreply())
        except (smtplib.SMTPException, OSError) as exc:
            lost = exc
        for (stage, accepted), (code, reply) in zip(_PIPELINED_STAGES, replies, strict=False):
            if code in accepted:
                continue
            if lost is None and replies[-1][0] == 354:
                # DATA accepted although an earlier command was refused: send the empty
                # message's end (RFC 2920, 3.1) so the conversation stays in step; the
                # refusal below resets the transaction.
                try:
                    smtp.send(b".\r\n")
                    smtp.getreply()
                except (smtplib.SMTPException, OSError):
                    self._drop()
            self._refused(smtp, code, reply, stage)
        if lost is not None:
            self._drop()
            stage = _PIPELINED_STAGES[len(replies)][0]
            if not replies and not stale_is_failure:
                raise _Stale from None
            raise TemporaryFailure(
                f"connection lost at {stage}: {lost or type(lost).__name__}", connection=True
            ) from None
        try:
            smtp.send(_data_payload(message.raw))
            code, reply = smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TemporaryFailure(
                f"connection lost at DATA: {exc or type(exc).__name__}",
                connection=True,
                maybe_delivered=True,  # the message went out; its answer did not come back
            ) from None
        if code != 250:
            self._refused(smtp, code, reply, "DATA")

    def _refused(self, smtp: smtplib.SMTP, code: int, reply: bytes | str, stage: str) -> None:
        detail = f"{stage}: {_text(reply)}"
        if code == 421 or code < 400 or code == -1:
            # 421: the relay is closing the channel. Anything else unexpected: the
            # conversation is in an unknown state. Either way, start afresh next time.
            self._drop()
            raise TemporaryFailure(detail, code, connection=True)
        try:
            smtp.rset()  # keep the connection usable for the next message
        except (smtplib.SMTPException, OSError):
            self._drop()
        if code >= 500:
            raise PermanentFailure(detail, code, recipient=stage == "RCPT TO")
        # 4xx. A refused sender is our configuration (or a throttled relay): the whole
        # batch would meet it.
        raise TemporaryFailure(detail, code, connection=stage == "MAIL FROM")


# The pipelined commands, with the answers that let the transaction go on.
_PIPELINED_STAGES = (("MAIL FROM", (250,)), ("RCPT TO", (250, 251)), ("DATA", (354,)))


def _data_payload(raw: bytes) -> bytes:
    """The message as DATA sends it: leading dots doubled, ended by CRLF.CRLF (as
    smtplib's `data()` does for bytes)."""
    payload = re.sub(rb"(?m)^\.", b"..", raw)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    return payload + b".\r\n"


class _Stale(Exception):
    """A reused connection died before the transaction began."""


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


class CaptureTransport(Transport):
    """Writes each message as an `.eml` file in a folder (development, `make run`).

    Files appear whole: each is written under a temporary dot-name in the same folder
    and renamed into place, so a reader (the dashboard) never sees half a message.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def _deliver(self, message: BuiltMessage) -> None:
        self.open()
        stamp = clock.now().strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{_safe_name(message.message_id)}.eml"
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.raw)
            os.replace(temp, self.directory / name)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _safe_name(message_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", message_id.strip("<>"))[:120]


def captured_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The captured messages in a folder, oldest first (names start with the time)."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.eml") if not p.name.startswith("."))


def remove_captured_for(directory: str | os.PathLike[str], address: str) -> int:
    """Delete the captured messages addressed to `address` (erasure); returns how many."""
    wanted = {address.strip().lower()}
    with contextlib.suppress(ValueError):
        wanted.add(bare_address(address).lower())  # the form written in To (IDNA domain)
    removed = 0
    parser = BytesHeaderParser()
    for path in captured_files(directory):
        try:
            with path.open("rb") as handle:
                headers = parser.parse(handle)
        except OSError:
            continue
        recipients = {addr.lower() for _, addr in getaddresses(headers.get_all("To", []))}
        if wanted & recipients:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def transport_for(config: Mapping[str, Any]) -> Transport:
    """The configured transport: capture to a folder when MAIL_SERVER is unset, else SMTP."""
    if config.get("MAILPREFS_CAPTURE_MAIL"):
        return CaptureTransport(config["MAILPREFS_MAIL_CAPTURE_DIR"])
    return SMTPTransport(config)
