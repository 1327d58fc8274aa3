"""DKIM test keys made on the spot (RSA-2048 and Ed25519, PEM) and a DNS lookup for
dkimpy that publishes each one under its selector."""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailprefs.delivery import dkim_sign


def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_keys(*selectors: str) -> dict[str, bytes]:
    """A fresh key per selector: Ed25519 for a selector starting with "ed", else RSA-2048."""
    return {
        selector: pem(
            ed25519.Ed25519PrivateKey.generate()
            if selector.startswith("ed")
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        for selector in selectors
    }


def dns_for(keys: dict[str, bytes], domain: str) -> Callable[..., bytes]:
    """dkimpy's `dnsfunc`: every selector published, as DNS holds them during a rotation."""

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        for selector, key in keys.items():
            if name == f"{selector}._domainkey.{domain}.".encode():
                return dkim_sign.public_record(key).encode()
        return b""

    return lookup
