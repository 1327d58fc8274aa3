"""DKIM: messages are signed over the headers receivers require, and verify."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest

from mailprefs.config import load as load_config
from mailprefs.delivery.message import MessageBuilder, message_settings
from mailprefs.delivery.types import DkimSettings, StreamIdentity
from tests.support import mail

SELECTOR, DOMAIN = "mp2026", "news.example.test"


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory) -> tuple[Path, str]:
    """A fresh 2048-bit RSA key (PEM file) and its DNS TXT record."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test key")
    directory = tmp_path_factory.mktemp("dkim")
    private = directory / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True
    )
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return private, f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


@pytest.fixture
def dns(key_pair):
    _, record = key_pair
    asked = []

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode():
            return record.encode()
        return b""

    lookup.asked = asked
    return lookup


@pytest.fixture
def dkim_settings(key_pair):
    private, _ = key_pair
    return DkimSettings(domain=DOMAIN, selector=SELECTOR, private_key=private.read_bytes())


def build(dkim_settings, campaign=None, **settings):
    builder = MessageBuilder(
        mail.settings(dkim=dkim_settings, **settings), mail.tokens(), campaign or mail.marketing()
    )
    return builder.build(mail.recipient())


def signed_headers(raw: bytes) -> list[str]:
    signature = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert signature.startswith("DKIM-Signature:")
    h = re.search(r"\bh=([^;]+);", re.sub(r"\r\n[ \t]+", " ", signature)).group(1)
    return [name.strip() for name in h.split(":")]


def test_a_signed_message_verifies_against_the_published_key(dkim_settings, dns):
    """Promise: with a key configured, mail is DKIM-signed and verifies with dkimpy."""
    built = build(dkim_settings)
    assert built.raw.startswith(b"DKIM-Signature: ")
    assert dkim.verify(built.raw, dnsfunc=dns)
    assert dns.asked == [f"{SELECTOR}._domainkey.{DOMAIN}.".encode()]
    assert not mail.parse(built).defects


def test_marketing_signatures_cover_exactly_the_headers_gmail_and_yahoo_require(dkim_settings):
    """Promise: h= covers From, To, Subject, Date, Message-ID, List-Unsubscribe and
    List-Unsubscribe-Post, plus the identity and structure headers present."""
    assert signed_headers(build(dkim_settings).raw) == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "reply-to",
        "list-id",
        "feedback-id",  # Gmail's feedback loop identifiers (docs/reputation.md)
        "mime-version",
        "content-type",
    ]


def test_administrative_signatures_name_only_headers_that_are_present(dkim_settings, dns):
    """Promise: administrative mail, which has no list headers, is signed over what it has."""
    built = build(dkim_settings, mail.administrative())
    assert signed_headers(built.raw) == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
    ]
    assert dkim.verify(built.raw, dnsfunc=dns)


@pytest.mark.parametrize(
    "old, new",
    [
        (
            b"List-Unsubscribe: <https://mail.example.test/u/",
            b"List-Unsubscribe: <https://evil.example/u/",
        ),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nothing"),
        (b"To: jane@example.org", b"To: eve@example.org"),
        (b"Subject: News for Jane", b"Subject: News for Eve"),
        (b"Here is our news.", b"Here is our n3ws."),
    ],
)
def test_a_tampered_message_fails_verification(dkim_settings, dns, old, new):
    """Promise: changing a signed header (List-Unsubscribe above all) or the body breaks
    the signature."""
    built = build(dkim_settings)
    assert old in built.raw
    assert dkim.verify(built.raw, dnsfunc=dns)
    assert not dkim.verify(built.raw.replace(old, new, 1), dnsfunc=dns)


def test_an_unsigned_stream_is_not_signed():
    """Promise: no key configured, no DKIM-Signature (nothing half-done)."""
    assert (
        b"DKIM-Signature"
        not in mail.parse(
            MessageBuilder(mail.settings(), mail.tokens(), mail.marketing()).build(mail.recipient())
        ).as_bytes()
    )


def test_the_configured_key_file_is_used(key_pair, dns):
    """Promise: MAILPREFS_DKIM_* settings produce verifying signatures."""
    private, _ = key_pair
    settings = message_settings(
        load_config(
            {
                "MAILPREFS_DKIM_DOMAIN": DOMAIN,
                "MAILPREFS_DKIM_SELECTOR": SELECTOR,
                "MAILPREFS_DKIM_KEY_FILE": str(private),
                "MAILPREFS_MARKETING_FROM": "News <news@news.example.test>",
            }
        )
    )
    assert settings.dkim == DkimSettings(DOMAIN, SELECTOR, private.read_bytes())
    built = MessageBuilder(settings, mail.tokens(), mail.marketing()).build(mail.recipient())
    assert dkim.verify(built.raw, dnsfunc=dns)


def test_a_non_ascii_sender_and_subject_still_verify(dkim_settings, dns):
    """Promise: encoded headers are signed as sent."""
    identity = StreamIdentity(
        '"Zoë Café" <news@news.example.test>', "Réponses <replies@example.test>"
    )
    built = build(
        dkim_settings, mail.marketing(subject="Grüße {{ first_name }} 🎉"), marketing=identity
    )
    assert dkim.verify(built.raw, dnsfunc=dns)
