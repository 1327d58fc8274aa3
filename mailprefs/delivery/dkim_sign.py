"""DKIM signing (RFC 6376) through OpenSSL, with RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

dkimpy signs with pure-Python RSA: about 9 ms a message, which caps a signed campaign
near 100 messages a second per process. Here the canonicalization (relaxed/relaxed) is a
few regular expressions over bytes and the signature is OpenSSL's, through the
`cryptography` package: a fraction of a millisecond for RSA-2048, less for Ed25519.
dkimpy stays the independent verifier in the tests.

Keys rotate by selector: each key may carry a date from which it signs; for each
algorithm the newest key whose date has come signs, and the older selector stays
published in DNS meanwhile (docs/sending.md).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Sequence
from datetime import datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailprefs.delivery.types import DkimKey, DkimSettings

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"

_FOLD = re.compile(rb"\r\n(?=[ \t])")
_WSP = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+(?=\r\n)")
_HEADER = re.compile(rb"^([^ \t:\r\n][^:\r\n]*):", re.MULTILINE)


@functools.lru_cache(maxsize=16)
def load_key(pem: bytes) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """A PEM private key (RSA or Ed25519), parsed once. ValueError for anything else."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("a DKIM key is RSA or Ed25519")
    return key


def algorithm(pem: bytes) -> str:
    return RSA if isinstance(load_key(pem), rsa.RSAPrivateKey) else ED25519


def public_record(pem: bytes) -> str:
    """The DNS TXT record that publishes a key (`v=DKIM1; k=...; p=...`)."""
    key = load_key(pem)
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def signing_keys(settings: DkimSettings, now: datetime) -> list[DkimKey]:
    """The keys that sign at `now`: per algorithm, the newest one whose date has come."""
    chosen: dict[str, DkimKey] = {}
    for key in settings.all_keys():
        if key.not_before is not None and key.not_before > now:
            continue
        kind = algorithm(key.private_key)
        current = chosen.get(kind)
        if current is None or _since(key) >= _since(current):
            chosen[kind] = key
    return [chosen[kind] for kind in (RSA, ED25519) if kind in chosen]


def _since(key: DkimKey) -> float:
    return key.not_before.timestamp() if key.not_before else float("-inf")


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded value, runs of WSP as one SP, none at
    either end."""
    if b"\r\n" in value:
        value = _FOLD.sub(b"", value)
    if b"\t" in value or b"  " in value:
        value = _WSP.sub(b" ", value)
    value = value.strip(b" ")
    return name.strip(b" \t").lower() + b":" + value


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: no WSP at line ends, runs of WSP as one SP, no empty lines at the
    end, and a body that is not empty ends with one CRLF. A last line without its CRLF
    is read as it goes on the wire, where SMTP's DATA gives it one."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    # Our own bodies are quoted-printable: no tabs, no runs of spaces, nothing at line
    # ends. Looking is much cheaper than rewriting (this runs for every message).
    if b"\t" in body or b"  " in body or b" \r\n" in body:
        body = _WSP.sub(b" ", _TRAILING_WSP.sub(b"", body))
    end = len(body)
    while end >= 2 and body[end - 2 : end] == b"\r\n":
        end -= 2
    return body[:end] + b"\r\n" if end else b""


def _headers(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each header field, in order; value with its folding, no CRLF."""
    starts = [m.start() for m in _HEADER.finditer(head)]
    fields = []
    for start, end in zip(starts, [*starts[1:], len(head)], strict=True):
        field = head[start:end]
        if field.endswith(b"\r\n"):
            field = field[:-2]
        name, _, value = field.partition(b":")
        fields.append((name, value))
    return fields


def sign(
    raw: bytes, domain: str, keys: Sequence[DkimKey], names: Sequence[str], timestamp: int
) -> bytes:
    """`raw` with one DKIM-Signature per key prepended (RSA first); h= is `names`, each
    once (the bottom-most instance, RFC 6376 5.4.2), relaxed/relaxed."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    head += b"\r\n"
    if not sep:
        body = b""
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
    # The bottom-most instance of each name (RFC 6376 5.4.2): later ones overwrite.
    last = {name.strip().lower(): (name, value) for name, value in _headers(head)}
    signed = []
    for name in names:
        found = last.get(name.lower().encode("ascii"))
        if found is not None:
            signed.append(relaxed_header(*found) + b"\r\n")
    signed_data = b"".join(signed)
    h = _fold_list(":".join(name.lower() for name in names))
    signatures = []
    for key in keys:
        private = load_key(key.private_key)
        kind = RSA if isinstance(private, rsa.RSAPrivateKey) else ED25519
        tags = (
            f" v=1; a={kind}; c=relaxed/relaxed; d={domain}; s={key.selector};\r\n"
            f" t={timestamp}; h={h};\r\n bh={body_hash};\r\n b="
        ).encode("ascii")
        data = signed_data + relaxed_header(b"DKIM-Signature", tags)
        if kind == RSA:
            signature = private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:  # RFC 8463: Ed25519 over the SHA-256 of the data
            signature = private.sign(hashlib.sha256(data).digest())
        b = base64.b64encode(signature)
        folded = b"\r\n ".join(b[i : i + 72] for i in range(0, len(b), 72))
        signatures.append(b"DKIM-Signature:" + tags + folded + b"\r\n")
    return b"".join(signatures) + raw


@functools.lru_cache(maxsize=64)
def _fold_list(h: str, width: int = 64) -> str:
    """The h= list folded after colons, so no line of the header grows too long."""
    lines, line = [], ""
    for part in h.split(":"):
        candidate = f"{line}:{part}" if line else part
        if len(candidate) > width and line:
            lines.append(line + ":")
            line = part
        else:
            line = candidate
    lines.append(line)
    return "\r\n ".join(lines)
