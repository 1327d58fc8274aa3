"""DKIM for `bench send`: scratch keys, the settings that turn signing on, its cost."""

from __future__ import annotations

import time
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailprefs.delivery import dkim_sign
from mailprefs.delivery.message import DKIM_HEADERS
from mailprefs.delivery.types import BuiltMessage, DkimKey

DOMAIN = "mail.example.com"


def _write(path: Path, key) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def make_keys(work: Path) -> dict[str, Path]:
    """An RSA-2048 and an Ed25519 key, as PEM files in `work`."""
    return {
        "rsa": _write(work / "dkim-rsa.pem", rsa.generate_private_key(65537, 2048)),
        "ed25519": _write(work / "dkim-ed25519.pem", ed25519.Ed25519PrivateKey.generate()),
    }


def env(keys: dict[str, Path], *, ed: bool = False) -> dict[str, str]:
    """The environment that makes `run-due` sign with RSA (and Ed25519 beside it)."""
    values = {
        "MAILPREFS_DKIM_DOMAIN": DOMAIN,
        "MAILPREFS_DKIM_SELECTOR": "bench",
        "MAILPREFS_DKIM_KEY_FILE": str(keys["rsa"]),
    }
    if ed:
        values["MAILPREFS_DKIM_KEYS"] = f"bench-ed:{keys['ed25519']}"
    return values


def costs(keys: dict[str, Path], messages: list[BuiltMessage]) -> dict[str, float]:
    """Milliseconds to sign one message: each of our signers, and dkimpy's RSA (on a
    tenth as many: it is that much slower)."""
    head = messages[0].raw.split(b"\r\n\r\n", 1)[0].lower()
    names = [n for n in DKIM_HEADERS if b"\r\n" + n.lower().encode() + b":" in b"\r\n" + head]
    result = {}
    for kind, path in keys.items():
        key = DkimKey("bench", path.read_bytes())
        dkim_sign.load_key(key.private_key)
        started = time.perf_counter()
        for message in messages:
            dkim_sign.sign(message.raw, DOMAIN, [key], names, 0)
        result[kind] = (time.perf_counter() - started) * 1000 / len(messages)
    some = messages[: max(1, len(messages) // 10)]
    pem = keys["rsa"].read_bytes()
    started = time.perf_counter()
    for message in some:
        dkim.sign(
            message.raw,
            b"bench",
            DOMAIN.encode(),
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[n.encode() for n in names],
        )
    result["dkimpy"] = (time.perf_counter() - started) * 1000 / len(some)
    return result
