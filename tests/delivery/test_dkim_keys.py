"""DKIM through OpenSSL: RSA and Ed25519 (RFC 8463) side by side, rotation by selector,
and canonicalization that dkimpy, the independent verifier, agrees with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailprefs import clock
from mailprefs.config import ConfigError
from mailprefs.config import load as load_config
from mailprefs.delivery import dkim_sign
from mailprefs.delivery.message import MessageBuilder, message_settings, sign
from mailprefs.delivery.types import DkimKey, DkimSettings
from tests.support import mail
from tests.support.dkim_keys import dns_for, make_keys

DOMAIN = "news.example.test"


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    return make_keys("rsa2026", "rsa2027", "ed2026", "ed2027")


@pytest.fixture(scope="module")
def dns(keys):
    return dns_for(keys, DOMAIN)


def signatures(raw: bytes) -> list[dict[bytes, bytes]]:
    """The tags of each DKIM-Signature, top first."""
    found = []
    for name, value in dkim_sign._headers(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"):
        if name.lower() == b"dkim-signature":
            tags = dkim.util.parse_tag_value(value.replace(b"\r\n", b""))
            found.append(tags)
    return found


def verified(raw: bytes, dns) -> list[bool]:
    """dkimpy's verdict on each signature of `raw`."""
    checker = dkim.DKIM(raw)
    verdicts = []
    for i in range(len(signatures(raw))):
        try:
            verdicts.append(checker.verify(idx=i, dnsfunc=dns))
        except dkim.DKIMException:  # what dkim.verify() turns into False
            verdicts.append(False)
    return verdicts


def settings_with(keys, *more: DkimKey) -> DkimSettings:
    return DkimSettings(DOMAIN, "rsa2026", keys["rsa2026"], more=more)


def build(dkim_settings, campaign=None, recipient=None):
    builder = MessageBuilder(
        mail.settings(dkim=dkim_settings), mail.tokens(), campaign or mail.marketing()
    )
    return builder.build(recipient or mail.recipient())


def test_an_ed25519_key_signs_beside_the_rsa_one_and_both_verify(keys, dns):
    """Promise: with an Ed25519 key configured, each message carries an RSA-SHA256 and
    an Ed25519-SHA256 signature over the same headers, and dkimpy verifies both."""
    built = build(settings_with(keys, DkimKey("ed2026", keys["ed2026"])))
    tags = signatures(built.raw)
    assert [t[b"a"] for t in tags] == [b"rsa-sha256", b"ed25519-sha256"]
    assert [t[b"s"] for t in tags] == [b"rsa2026", b"ed2026"]
    assert tags[0][b"h"] == tags[1][b"h"] and tags[0][b"bh"] == tags[1][b"bh"]
    assert tags[0][b"c"] == b"relaxed/relaxed"
    assert verified(built.raw, dns) == [True, True]
    tampered = built.raw.replace(b"Here is our news.", b"Here is our n3ws.")
    assert verified(tampered, dns) == [False, False]


def test_a_new_selector_takes_over_on_its_date_while_the_old_one_signed_before(keys, dns):
    """Promise: a key with a date signs from that date in place of the older key of its
    algorithm (both stay published); before it, the old selector signs."""
    # In the past: dkimpy refuses a signature dated in the future.
    switch = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    dkim_settings = settings_with(
        keys,
        DkimKey("ed2026", keys["ed2026"]),
        DkimKey("rsa2027", keys["rsa2027"], switch),
        DkimKey("ed2027", keys["ed2027"], switch),
    )
    clock.freeze(switch - timedelta(seconds=1))
    before = build(dkim_settings)
    clock.freeze(switch)
    after = build(dkim_settings)
    assert [t[b"s"] for t in signatures(before.raw)] == [b"rsa2026", b"ed2026"]
    assert [t[b"s"] for t in signatures(after.raw)] == [b"rsa2027", b"ed2027"]
    assert verified(before.raw, dns) == [True, True] == verified(after.raw, dns)


def test_long_folded_headers_non_ascii_subjects_and_trailing_blank_lines_verify(keys, dns):
    """Promise: what a relay cannot change under relaxed canonicalization (folding,
    runs of spaces, trailing blank lines) the signature covers as dkimpy reads it."""
    subject = "Grüße {{ first_name }}, " + "ein sehr langer Betreff mit Umlauten äöü " * 4
    campaign = mail.marketing(subject=subject, text="Hello\n\n\n\n", html=None)
    built = build(settings_with(keys, DkimKey("ed2026", keys["ed2026"])), campaign)
    head = built.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\n =?utf-8?" in head, "the subject was folded"
    assert verified(built.raw, dns) == [True, True]
    raw = (
        b"From: News <news@news.example.test>\r\n"
        b"To: jane@example.org\r\n"
        b"Subject:   spaced\t\tout \r\n   and folded\r\n"
        b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        b"Message-ID: <x@news.example.test>\r\n"
        b"\r\n"
        b"body  with \t spaces   \r\n\r\n \r\n\r\n\r\n"
    )
    signed = sign(raw, settings_with(keys, DkimKey("ed2026", keys["ed2026"])))
    assert verified(signed, dns) == [True, True]
    # What relaxed canonicalization forgives, a relay may change:
    relayed = signed.replace(
        b"body  with \t spaces   \r\n\r\n \r\n\r\n\r\n", b"body with spaces\r\n"
    )
    assert verified(relayed, dns) == [True, True]


@settings(max_examples=60, deadline=None)
@given(
    value=st.text(alphabet=" \tabc:;=<>@.,-xyz\r\n", min_size=1, max_size=60),
    body=st.lists(st.text(alphabet=" \tabcdefgh.=-", max_size=20), max_size=6),
    # As on the wire: SMTP's DATA ends the last line with CRLF.
    ending=st.sampled_from(["\r\n", "\r\n\r\n", "\r\n \r\n\t\r\n"]),
)
def test_any_header_and_body_spacing_signs_what_dkimpy_verifies(keys, dns, value, body, ending):
    """Promise: our relaxed canonicalization matches dkimpy's for arbitrary spacing,
    folding and trailing lines (so receivers verify what we sign)."""
    lines = value.replace("\r", "").split("\n")
    subject = "\r\n ".join(lines).strip("\r\n") or "x"
    raw = (
        b"From: news@news.example.test\r\nTo: jane@example.org\r\nSubject: "
        + subject.encode()
        + b"\r\n\r\n"
        + "\r\n".join(body).encode()
        + ending.encode()
    )
    signed = sign(raw, settings_with(keys, DkimKey("ed2026", keys["ed2026"])))
    assert verified(signed, dns) == [True, True]


def test_the_dkim_keys_setting_loads_ed25519_and_dated_keys(tmp_path, keys):
    """Promise: MAILPREFS_DKIM_KEYS adds keys (selector:path[@date], UTC by default)."""
    for name, key in keys.items():
        (tmp_path / f"{name}.pem").write_bytes(key)
    config = load_config(
        {
            "MAILPREFS_DKIM_DOMAIN": DOMAIN,
            "MAILPREFS_DKIM_SELECTOR": "rsa2026",
            "MAILPREFS_DKIM_KEY_FILE": str(tmp_path / "rsa2026.pem"),
            "MAILPREFS_DKIM_KEYS": f"ed2026:{tmp_path / 'ed2026.pem'}, "
            f"rsa2027:{tmp_path / 'rsa2027.pem'}@2027-01-15",
        }
    )
    dkim_settings = message_settings(config).dkim
    assert dkim_settings.more == (
        DkimKey("ed2026", keys["ed2026"]),
        DkimKey("rsa2027", keys["rsa2027"], datetime(2027, 1, 15, tzinfo=UTC)),
    )


@pytest.mark.parametrize(
    "entry, message",
    [
        ("nocolon", "selector:path"),
        ("bad selector:/x.pem", "selector:path"),
        ("s1:{missing}", "cannot read"),
        ("s1:{notakey}", "PEM RSA or Ed25519"),
        ("s1:{ed}@someday", "not a date"),
    ],
)
def test_a_bad_dkim_keys_entry_is_a_config_error_naming_it(tmp_path, keys, entry, message):
    (tmp_path / "rsa.pem").write_bytes(keys["rsa2026"])
    (tmp_path / "ed.pem").write_bytes(keys["ed2026"])
    (tmp_path / "junk.pem").write_text("not a key")
    entry = entry.format(
        missing=tmp_path / "missing.pem", notakey=tmp_path / "junk.pem", ed=tmp_path / "ed.pem"
    )
    config = load_config(
        {
            "MAILPREFS_DKIM_DOMAIN": DOMAIN,
            "MAILPREFS_DKIM_SELECTOR": "rsa2026",
            "MAILPREFS_DKIM_KEY_FILE": str(tmp_path / "rsa.pem"),
            "MAILPREFS_DKIM_KEYS": entry,
        }
    )
    with pytest.raises(ConfigError, match=message) as caught:
        message_settings(config)
    assert "MAILPREFS_DKIM_KEYS" in str(caught.value)
