"""Bounces by mail: read the bounce mailbox over IMAP (TLS only) and hand each DSN or ARF
report to the same ingestion as `POST /api/v1/events/bounces` (VERP first, then the
report's text: `domain.verp.events_of`, then `domain.reputation.ingest`).

Each message is handled in a transaction of its own and deleted from the mailbox only
after that transaction committed: a crash in between leaves the message in place, and
reading it again records nothing twice (the message's SHA-256 is remembered, as a signed
webhook's signature is). A message that is neither a report nor addressed to a valid VERP
address (spam, an auto-reply, a person writing back) is moved to MAILPREFS_BOUNCE_IMAP_ASIDE
for a person to look at, never deleted. An error reading one message leaves it where it is
and goes on with the next.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from mailprefs.config import ConfigError
from mailprefs.db import Database
from mailprefs.domain import bounces, idempotency, reputation, verp
from mailprefs.domain.errors import Invalid

log = logging.getLogger("mailprefs.bounces")

SCOPE, ENDPOINT = "imap", "bounces.fetch"
MAX_PER_RUN = 500
TIMEOUT_SECONDS = 30
ACTOR = "system:bounce-mailbox"


@dataclass(frozen=True)
class MailboxUrl:
    tls: str  # "implicit" (imaps://) | "starttls" (imap://, TLS required)
    host: str
    port: int
    user: str
    password: str
    folder: str

    @classmethod
    def parse(cls, url: str) -> MailboxUrl:
        """`imaps://USER:PASSWORD@HOST[:PORT][/FOLDER]` (or `imap://`, upgraded with
        STARTTLS, never read in the clear); user and password percent-encoded."""
        parts = urlsplit(url)
        if parts.scheme not in ("imaps", "imap") or not parts.hostname:
            raise ConfigError("MAILPREFS_BOUNCE_IMAP_URL must be imaps://user:password@host/INBOX")
        if not parts.username or parts.password is None:
            raise ConfigError("MAILPREFS_BOUNCE_IMAP_URL needs a user and a password")
        implicit = parts.scheme == "imaps"
        return cls(
            tls="implicit" if implicit else "starttls",
            host=parts.hostname,
            port=parts.port or (993 if implicit else 143),
            user=unquote(parts.username),
            password=unquote(parts.password),
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
        )


@dataclass
class FetchSummary:
    recorded: int = 0  # reports recorded (and deleted from the mailbox)
    duplicates: int = 0  # read before, recorded then: deleted now
    set_aside: int = 0  # neither a report nor VERP: moved aside
    errors: int = 0  # left in place, tried again next time
    outcome: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        figures = ", ".join(f"{k} {v}" for k, v in sorted(self.outcome.items()))
        return (
            f"recorded {self.recorded}, duplicates {self.duplicates}, set aside "
            f"{self.set_aside}, errors {self.errors}" + (f" ({figures})" if figures else "")
        )


def _connect(url: MailboxUrl, ca_file: str | None) -> imaplib.IMAP4:
    context = ssl.create_default_context(cafile=ca_file)
    if url.tls == "implicit":
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            url.host, url.port, ssl_context=context, timeout=TIMEOUT_SECONDS
        )
    else:
        client = imaplib.IMAP4(url.host, url.port, timeout=TIMEOUT_SECONDS)
        client.starttls(ssl_context=context)  # raises if the server cannot: no clear text
    client.login(url.user, url.password)
    return client


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BounceMailbox:
    def __init__(self, db: Database, config: Any) -> None:
        raw_url = config.get("MAILPREFS_BOUNCE_IMAP_URL")
        if not raw_url:
            raise ConfigError("MAILPREFS_BOUNCE_IMAP_URL is not set")
        self.url = MailboxUrl.parse(raw_url)
        self.ca_file = config.get("MAILPREFS_BOUNCE_IMAP_CA_FILE") or None
        self.aside = config["MAILPREFS_BOUNCE_IMAP_ASIDE"]
        self.db = db
        self.addresses = verp.addresses_for(config)
        self.hash_key = config["MAILPREFS_HASH_KEY"]
        self.thresholds = bounces.Thresholds(
            config["MAILPREFS_SOFT_BOUNCE_LIMIT"], config["MAILPREFS_SOFT_BOUNCE_DAYS"]
        )
        self.limits = reputation.Limits.from_config(config)

    def fetch(self) -> FetchSummary:
        """One pass over the mailbox (at most MAX_PER_RUN messages)."""
        summary = FetchSummary()
        client = _connect(self.url, self.ca_file)
        try:
            status, _ = client.select(_quote(self.url.folder))
            if status != "OK":
                raise ConnectionError(f"cannot open the folder {self.url.folder!r}")
            _, data = client.uid("SEARCH", None, "UNDELETED")
            uids = (data[0] or b"").split()[:MAX_PER_RUN]
            can_move = "MOVE" in client.capabilities
            if uids:
                client.create(_quote(self.aside))  # NO when it exists: fine
            for uid in uids:
                self._one(client, uid, summary, can_move)
            client.expunge()
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()
        return summary

    def _one(self, client: imaplib.IMAP4, uid: bytes, summary: FetchSummary, move: bool) -> None:
        try:
            status, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((part[1] for part in data if isinstance(part, tuple)), None)
            if status != "OK" or raw is None:
                raise ConnectionError(f"cannot read message {uid!r}")
            verdict = self._record(raw, summary)
        except (imaplib.IMAP4.error, OSError) as exc:
            log.warning("bounce mailbox: message %s left in place: %s", uid, exc)
            summary.errors += 1
            return
        except Exception:  # a database error, a bug: this message waits, the rest go on
            log.exception("bounce mailbox: message %s left in place", uid)
            summary.errors += 1
            return
        if verdict == "aside":
            if move:
                client.uid("MOVE", uid, _quote(self.aside))
            else:
                client.uid("COPY", uid, _quote(self.aside))
                client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
            summary.set_aside += 1
            return
        # Recorded (now or before) and committed: only now may it leave the mailbox.
        client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")

    def _record(self, raw: bytes, summary: FetchSummary) -> str:
        digest = idempotency.fingerprint(raw)
        with self.db.transaction() as session:
            if idempotency.find(session, SCOPE, ENDPOINT, digest, digest) is not None:
                summary.duplicates += 1
                return "duplicate"
            try:
                events = verp.events_of(session, raw, self.addresses)
            except Invalid:
                return "aside"
            outcome = reputation.ingest(
                session,
                events,
                hash_key=self.hash_key,
                thresholds=self.thresholds,
                actor=ACTOR,
                limits=self.limits,
            )
            idempotency.remember(session, SCOPE, ENDPOINT, digest, digest, 202, outcome.as_dict())
        for name, n in outcome.as_dict().items():
            summary.outcome[name] = summary.outcome.get(name, 0) + n
        if events and all(e.type == "forged_verp" for e in events):
            return "aside"  # recorded (audit log); kept for a person to look at
        summary.recorded += 1
        return "recorded"


def configured(config: Any) -> bool:
    return bool(config.get("MAILPREFS_BOUNCE_IMAP_URL"))


_SAFE = re.compile(r"//[^@/]*@")


def describe(config: Any) -> str:
    """The mailbox URL without its credentials, for logs and the CLI."""
    return _SAFE.sub("//", config.get("MAILPREFS_BOUNCE_IMAP_URL") or "")
