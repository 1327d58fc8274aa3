"""Build the MIME bytes of one campaign's messages, fast.

A MessageBuilder is made once per campaign (per worker batch): it compiles the templates,
encodes every header that is the same for all recipients, and renders the footers with
placeholders for the links. Per recipient it only signs the link tokens, renders the
templates, fills the footer links, quoted-printable-encodes the two bodies (binascii, in
C) and writes To, Date, Message-ID and List-Unsubscribe. That is what lets one worker
keep an SMTP connection busy; the `email` package costs about 3 ms a message.

The bytes are plain RFC 5322/2045: CRLF line endings, 7-bit, lines of at most 76
characters in the bodies, RFC 2047 encoded-words in headers that need them.
"""

from __future__ import annotations

import binascii
import functools
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import escape

from mailprefs import clock
from mailprefs.config import ConfigError
from mailprefs.delivery import dkim_sign
from mailprefs.delivery import headers as hdr
from mailprefs.delivery.types import (
    BuiltMessage,
    CampaignInfo,
    DkimKey,
    DkimSettings,
    MessageSettings,
    RecipientInfo,
    StreamIdentity,
)
from mailprefs.domain.templating import (
    compile_templates,
    mail_environment,
    make_context,
    one_line,
)
from mailprefs.domain.tokens import TokenService

TEST_COPY_ID = "test-copy"  # links in test copies carry this id: the pages answer not found

# Headers signed when present, in this order (Gmail and Yahoo require the first seven for
# bulk senders; the rest keep a relay from rewriting the stream's identity or structure).
DKIM_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Reply-To",
    "List-Id",
    "Feedback-ID",
    "MIME-Version",
    "Content-Type",
)

# Placeholders for the per-recipient links in pre-rendered footers; NUL never occurs in
# rendered template text and HTML escaping leaves it alone.
_UNSUB = "\x00unsubscribe\x00"
_PREFS = "\x00preferences\x00"
_BODY_END = re.compile(r"</body", re.IGNORECASE)
_QP_PART = (
    b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
)


@functools.lru_cache(maxsize=64)
def _footers(stream: str, topic_name: str, org_name: str, postal: str, privacy: str):
    """(text, html) footers of a stream with link placeholders, rendered once."""
    env = mail_environment()
    context = {
        "topic_name": topic_name,
        "org_name": org_name,
        "postal_address": postal,
        "privacy_url": privacy,
        "unsubscribe_url": _UNSUB,
        "preferences_url": _PREFS,
    }
    rendered = []
    for ext in ("txt", "html"):
        out = env.get_template(f"footer_{stream}.{ext}").render(context)
        # The footers are the promise that every mail says how to leave: refuse to run
        # with a footer that lost its links.
        needed = (_UNSUB, _PREFS) if stream == "marketing" else (_PREFS,)
        if any(out.count(mark) != 1 for mark in needed):
            raise RuntimeError(f"footer_{stream}.{ext} must show each link exactly once")
        rendered.append(out)
    return rendered[0], rendered[1]


def _qp(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends (binascii: C speed)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    # Some MTAs mangle a body line starting "From " (mbox); encoding the F keeps it exact.
    if encoded.startswith(b"From "):
        encoded = b"=46" + encoded[1:]
    if b"\nFrom " in encoded:
        encoded = encoded.replace(b"\nFrom ", b"\n=46rom ")
    return encoded.replace(b"\n", b"\r\n")


def _insert_html_footer(html: str, footer: str) -> str:
    """Put the footer inside <body> when there is one, else at the end."""
    at = html.rfind("</body")
    if at < 0:
        at = html.rfind("</BODY")
    if at < 0:
        match = _BODY_END.search(html, max(0, len(html) - 4096))
        if match is None:
            return html + "\n" + footer
        at = match.start()
    return html[:at] + footer + html[at:]


class MessageBuilder:
    """Builds the messages of one campaign; make one per campaign and batch."""

    def __init__(
        self,
        settings: MessageSettings,
        tokens: TokenService,
        campaign: CampaignInfo,
        *,
        test_copy: bool = False,
        sign_later: bool = False,
    ) -> None:
        self._tokens = tokens
        # The send loop leaves the DKIM signature to the pool's sender threads: OpenSSL
        # signs there while the loop asks the gate and builds the next message.
        self._sign_later = sign_later
        self._campaign = campaign
        self._test_copy = test_copy
        self._marketing = campaign.topic_kind == "marketing"
        self._confirm_topic: str | None = None
        # A request to reopen a closed account: its link names the topics asked for.
        self._reactivate: list[str] | None = None
        if campaign.kind == "confirmation":
            self._confirm_topic = (campaign.meta or {}).get("confirm_topic")
            self._reactivate = (campaign.meta or {}).get("reactivate")
            if not self._confirm_topic and not self._reactivate:
                raise ValueError("a confirmation message needs meta['confirm_topic']")
        identity = settings.marketing if self._marketing else settings.administrative
        if campaign.topic_from:
            # The topic's own sender (set in the product), within its stream's headers.
            identity = StreamIdentity(campaign.topic_from, identity.reply_to)
        from_header, self.envelope_from = hdr.mailbox(identity.from_addr, "From")
        self._msgid_domain = self.envelope_from.rpartition("@")[2]
        self._dkim = settings.dkim
        self._verp = settings.verp
        self._feedback_sender = settings.feedback_sender_id
        self._templates = compile_templates(campaign.subject, campaign.text, campaign.html)
        self._date = hdr.DateHeader()
        self._list_id_domain = settings.list_id_domain
        self._boundary = b""

        base = hdr.link_base(settings.base_url)
        self._unsub_prefix = f"{base}/u/"
        self._prefs_prefix = f"{base}/preferences/"
        self._confirm_prefix = f"{base}/confirm/"
        self._rejoin_prefix = f"{base}/rejoin/"
        # Tokens are URL-safe base64 and dots, so only the base needs HTML escaping.
        self._html_unsub_prefix = str(escape(self._unsub_prefix))
        self._html_prefs_prefix = str(escape(self._prefs_prefix))
        self._mailto = ""
        if self._marketing and settings.unsubscribe_mailto:
            mailto = hdr.bare_address(settings.unsubscribe_mailto, "unsubscribe mailto")
            self._mailto = f",\r\n <mailto:{mailto}?subject=unsubscribe>"
        self._reserved = {
            "org_name": settings.org_name,
            "postal_address": settings.postal_address,
            "topic_name": campaign.topic_name,
        }
        self._footer_text, self._footer_html = _footers(
            "marketing" if self._marketing else "administrative",
            campaign.topic_name,
            settings.org_name,
            settings.postal_address,
            settings.privacy_url,
        )
        self._head, self._tail = self._static_headers(identity, from_header)
        self._signed = [name for name in DKIM_HEADERS if self._has_header(name, identity)]

    def _has_header(self, name: str, identity: StreamIdentity) -> bool:
        if name.startswith("List-") or name == "Feedback-ID":
            return self._marketing
        if name == "Reply-To":
            return bool(identity.reply_to)
        return True

    def _subject(self, subject: str) -> bytes:
        if self._test_copy:
            subject = "[TEST] " + subject
        return hdr.unstructured("Subject", subject)

    def _static_headers(self, identity: StreamIdentity, from_header: str) -> tuple[bytes, bytes]:
        head = [f"From: {from_header}\r\n".encode()]
        if identity.reply_to:
            reply_to, _ = hdr.mailbox(identity.reply_to, "Reply-To")
            head.append(f"Reply-To: {reply_to}\r\n".encode())
        if self._templates.subject_is_constant:
            head.append(self._subject(self._templates.subject.constant or ""))
        tail = []
        if self._marketing:
            list_id = f"{self._campaign.topic_slug}.{self._list_id_domain}"
            tail.append(f"List-Id: {hdr.phrase_with_id(self._campaign.topic_name, list_id)}\r\n")
            tail.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
            # Gmail's feedback loop: complaint rates per campaign, topic and stream.
            campaign = self._campaign
            feedback = f"{campaign.public_id}:{campaign.topic_slug}:marketing"
            tail.append(f"Feedback-ID: {feedback}:{self._feedback_sender}\r\n")
        if self._test_copy:
            tail.append("X-Mailprefs-Test: yes\r\n")
        tail.append("MIME-Version: 1.0\r\n")
        if self._templates.html is None:
            tail.append('Content-Type: text/plain; charset="utf-8"\r\n')
            tail.append("Content-Transfer-Encoding: quoted-printable\r\n")
        else:
            # "=_" never occurs in quoted-printable output, so one boundary per campaign
            # can never collide with a body.
            self._boundary = b"=_mp_" + os.urandom(12).hex().encode()
            tail.append(
                f'Content-Type: multipart/alternative; boundary="{self._boundary.decode()}"\r\n'
            )
        return b"".join(head), "".join(tail).encode("utf-8")

    def build(self, recipient: RecipientInfo) -> BuiltMessage:
        """The message for one recipient. ValueError for an address that cannot be a
        header; TemplateInvalid when the templates fail for this recipient."""
        to = hdr.bare_address(recipient.email, "To")
        subscriber = TEST_COPY_ID if self._test_copy else recipient.public_id
        campaign = self._campaign
        prefs_token = self._tokens.preferences(subscriber, campaign.public_id)
        reserved = dict(self._reserved)
        reserved["email"] = recipient.email
        reserved["subscriber_id"] = subscriber
        reserved["preferences_url"] = self._prefs_prefix + prefs_token
        unsub_token = ""
        if self._marketing:
            unsub_token = self._tokens.unsubscribe(
                subscriber, campaign.topic_slug, campaign.public_id
            )
            reserved["unsubscribe_url"] = self._unsub_prefix + unsub_token
        else:
            reserved["unsubscribe_url"] = ""
        if self._reactivate:
            token = self._tokens.reactivate(subscriber, self._reactivate)
            reserved["confirm_url"] = self._rejoin_prefix + token
        elif self._confirm_topic:
            token = self._tokens.confirm(subscriber, self._confirm_topic)
            reserved["confirm_url"] = self._confirm_prefix + token
        else:
            reserved["confirm_url"] = ""

        subject, text, html = self._templates.render(make_context(recipient.attributes, reserved))

        footer = self._footer_text.replace(_PREFS, reserved["preferences_url"])
        if self._marketing:
            footer = footer.replace(_UNSUB, reserved["unsubscribe_url"])
        text = text.rstrip() + "\n\n-- \n" + footer

        message_id = f"<{os.urandom(16).hex()}@{self._msgid_domain}>"
        lines = [
            self._head,
            f"To: {to}\r\n".encode("ascii"),
            self._date.line(clock.now()),
            f"Message-ID: {message_id}\r\n".encode("ascii"),
        ]
        if not self._templates.subject_is_constant:
            lines.append(self._subject(one_line(subject)))
        if self._marketing:
            lines.append(
                f"List-Unsubscribe: <{reserved['unsubscribe_url']}>{self._mailto}\r\n".encode()
            )
        lines.append(self._tail)
        lines.append(b"\r\n")
        if html is None:
            lines.append(_qp(text))
        else:
            footer_html = self._footer_html.replace(_PREFS, self._html_prefs_prefix + prefs_token)
            if self._marketing:
                footer_html = footer_html.replace(_UNSUB, self._html_unsub_prefix + unsub_token)
            html = _insert_html_footer(html, footer_html)
            boundary = self._boundary
            lines += [
                b"--", boundary, b"\r\n", _QP_PART % b"plain", b"\r\n", _qp(text),
                b"\r\n--", boundary, b"\r\n", _QP_PART % b"html", b"\r\n", _qp(html),
                b"\r\n--", boundary, b"--\r\n",
            ]  # fmt: skip
        raw = b"".join(lines)
        signer = None
        if self._dkim is not None:
            if self._sign_later:
                signer = functools.partial(sign, settings=self._dkim, names=self._signed)
            else:
                raw = sign(raw, self._dkim, self._signed)
        envelope_from = self.envelope_from
        if self._verp is not None and recipient.delivery_id is not None:
            envelope_from = self._verp.address(recipient.delivery_id)
        return BuiltMessage(
            raw=raw, message_id=message_id, envelope_from=envelope_from, to=to, signer=signer
        )


def sign(raw: bytes, settings: DkimSettings, names: list[str] | None = None) -> bytes:
    """`raw` with a DKIM-Signature per signing key prepended (RSA, and Ed25519 when one
    is configured; the keys in force now, see `dkim_sign.signing_keys`); h= names
    `names` (default: those of DKIM_HEADERS present in `raw`), each once,
    relaxed/relaxed canonicalization."""
    if names is None:
        head = b"\r\n" + raw.split(b"\r\n\r\n", 1)[0].lower()
        names = [n for n in DKIM_HEADERS if b"\r\n" + n.lower().encode() + b":" in head]
    now = clock.now()
    keys = dkim_sign.signing_keys(settings, now)
    return dkim_sign.sign(raw, settings.domain, keys, names, int(now.timestamp()))


def message_settings(config: Mapping[str, Any]) -> MessageSettings:
    """MessageSettings from the app configuration; ConfigError naming a bad variable."""

    def value(name: str) -> str | None:
        raw = config.get(name)
        return raw.strip() or None if isinstance(raw, str) else None

    def identity(prefix: str) -> StreamIdentity:
        from_addr = value(f"{prefix}_FROM")
        if not from_addr:
            raise ConfigError(f"{prefix}_FROM is required")
        reply_to = value(f"{prefix}_REPLY_TO")
        for name, raw in ((f"{prefix}_FROM", from_addr), (f"{prefix}_REPLY_TO", reply_to)):
            if raw is not None:
                try:
                    hdr.mailbox(raw, name)
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
        return StreamIdentity(from_addr=from_addr, reply_to=reply_to)

    try:
        base_url = hdr.link_base(value("MAILPREFS_BASE_URL") or "")
    except ValueError as exc:
        raise ConfigError(f"MAILPREFS_BASE_URL: {exc}") from None
    mailto = value("MAILPREFS_UNSUBSCRIBE_MAILTO")
    if mailto:
        mailto = mailto.removeprefix("mailto:")
        try:
            hdr.bare_address(mailto, "MAILPREFS_UNSUBSCRIBE_MAILTO")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return MessageSettings(
        org_name=value("MAILPREFS_ORG_NAME") or "",
        postal_address=value("MAILPREFS_POSTAL_ADDRESS") or "",
        base_url=base_url,
        privacy_url=value("MAILPREFS_PRIVACY_POLICY_URL") or "",
        marketing=identity("MAILPREFS_MARKETING"),
        administrative=identity("MAILPREFS_ADMIN"),
        list_id_domain=value("MAILPREFS_LIST_ID_DOMAIN") or "",
        unsubscribe_mailto=mailto,
        dkim=_dkim_settings(value),
        verp=_verp(config),
        feedback_sender_id=_feedback_sender(value("MAILPREFS_FEEDBACK_SENDER_ID")),
    )


def _dkim_settings(value: Any) -> DkimSettings | None:
    names = ("MAILPREFS_DKIM_DOMAIN", "MAILPREFS_DKIM_SELECTOR", "MAILPREFS_DKIM_KEY_FILE")
    domain, selector, key_file = (value(name) for name in names)
    more = value("MAILPREFS_DKIM_KEYS")
    if not (domain or selector or key_file or more):
        return None
    if not (domain and selector and key_file):
        raise ConfigError("DKIM needs all of " + ", ".join(names))
    key = _read_key("MAILPREFS_DKIM_KEY_FILE", key_file)
    return DkimSettings(
        domain=domain, selector=selector, private_key=key, more=_more_keys(more or "")
    )


def _read_key(setting: str, path: str) -> bytes:
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    try:
        dkim_sign.load_key(key)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{setting}: {path} does not hold a PEM RSA or Ed25519 private key"
        ) from None
    return key


def _more_keys(raw: str) -> tuple[DkimKey, ...]:
    """MAILPREFS_DKIM_KEYS: `selector:path[@date]`, comma-separated. A key with a date
    (ISO 8601, UTC unless it says otherwise) signs from then on, in place of the older
    key of its algorithm; one without signs always (an Ed25519 key beside the RSA one)."""
    keys = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        selector, sep, rest = entry.partition(":")
        path, _, since = rest.partition("@")
        if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", selector) or not path:
            raise ConfigError(f"MAILPREFS_DKIM_KEYS: {entry!r} is not selector:path[@date]")
        not_before = None
        if since:
            try:
                not_before = datetime.fromisoformat(since.strip())
            except ValueError:
                raise ConfigError(
                    f"MAILPREFS_DKIM_KEYS: {since!r} is not a date (2027-01-31 or 2027-01-31T09:00)"
                ) from None
            if not_before.tzinfo is None:
                not_before = not_before.replace(tzinfo=UTC)
        keys.append(DkimKey(selector, _read_key("MAILPREFS_DKIM_KEYS", path.strip()), not_before))
    return tuple(keys)


def _verp(config: Mapping[str, Any]) -> Any:
    from mailprefs.domain.verp import addresses_for

    verp = addresses_for(config)
    if verp is not None:
        try:
            hdr.bare_address(f"bounces@{verp.domain}", "MAILPREFS_BOUNCE_DOMAIN")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return verp


def _feedback_sender(value: str | None) -> str:
    value = value or "mailprefs"
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value):
        raise ConfigError("MAILPREFS_FEEDBACK_SENDER_ID: letters, digits, '.', '_', '-' only")
    return value
