"""Email addresses: normalisation and the keyed one-way hash used by the suppression list."""

from __future__ import annotations

import contextlib
import hmac
import re

import idna
from email_validator import EmailNotValidError, validate_email

from mailprefs.domain.errors import Invalid

MAX_LOCAL_PART = 64
MAX_ADDRESS = 254


def normalise(address: str, field: str = "email") -> str:
    """The canonical form of an address, or Invalid. No DNS lookups at request time.

    Addresses are compared case-insensitively: every large provider treats the local
    part so, and a suppression must not be dodged by a capital letter.
    """
    if not isinstance(address, str) or any(c in address for c in "\r\n\0"):
        raise Invalid.field(field, "not a valid email address")
    try:
        # No SMTPUTF8: the relay path sends ASCII envelopes, so a non-ASCII local part
        # could be stored but never sent. A Unicode domain is fine (sent as IDNA).
        result = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise Invalid.field(field, f"not a valid email address: {exc}") from None
    # RFC 5321 4.5.3.1: a local part of at most 64 octets, a path of at most 254.
    if len(result.local_part) > MAX_LOCAL_PART or len(result.ascii_email or "") > MAX_ADDRESS:
        raise Invalid.field(
            field,
            f"not a valid email address: at most {MAX_LOCAL_PART} characters before the @ "
            f"and {MAX_ADDRESS} in all (RFC 5321)",
        )
    return result.normalized.lower()


def address_hash(normalised_address: str, key: str) -> str:
    """HMAC-SHA-256 of the normalised address: stable, one-way without the key."""
    return hmac.digest(key.encode(), normalised_address.encode(), "sha256").hex()


def mask(address: str | None) -> str:
    """`jane.doe@example.com` -> `j***e@e***.com`, for pages a link scanner may read."""
    if not address or "@" not in address:
        return "(erased)"
    local, _, domain = address.partition("@")
    shown_local = local[0] + "***" + (local[-1] if len(local) > 1 else "")
    name, dot, tld = domain.rpartition(".")
    shown_domain = (name[:1] + "***" + dot + tld) if name else domain
    return f"{shown_local}@{shown_domain}"


REDACTED = "<recipient>"


def forms(address: str) -> set[str]:
    """Every spelling of an address that a relay, a report or a person may quote: as
    given and normalised, with its domain in Unicode and in IDNA (punycode) form."""
    address = address.strip().lower()
    local, _, domain = address.rpartition("@")
    if not local:
        return {address} if address else set()
    domains = {domain}
    with contextlib.suppress(idna.IDNAError, UnicodeError, ValueError):
        domains.add(idna.encode(domain, uts46=True).decode("ascii").lower())
    with contextlib.suppress(idna.IDNAError, UnicodeError, ValueError):
        domains.add(idna.decode(domain).lower())
    return {f"{local}@{d}" for d in domains if d}


def redact(text: str | None, address: str | None, *, limit: int = 1000) -> str | None:
    """`text` without `address` in any of its `forms()`, nor its local part on its own.

    A local part of 3 characters or more goes wherever it stands as a word. A shorter
    one (`jo`, `a`) would also match ordinary words, so it goes where a mail system
    quotes it: before `@` with any domain spelling, in `<jo>` or quotes, or as
    `jo... User unknown` (sendmail) and `user jo` (Postfix, Exim).
    """
    if not text:
        return None
    if not address:
        return text[:limit]
    for form in sorted(forms(address), key=len, reverse=True):
        text = re.sub(re.escape(form), REDACTED, text, flags=re.IGNORECASE)
    local = address.strip().lower().rpartition("@")[0]
    if local:
        quoted = re.escape(local)
        if len(local) >= 3:
            pattern = rf"(?<![\w.+-]){quoted}(?![\w+-]|\.\w)"
        else:
            pattern = (
                rf"(?<![\w.+-]){quoted}@[^\s<>\"'(),;]+"
                rf"|(?<=[<\"'`(]){quoted}(?=[>\"'`)])"
                rf"|(?<![\w.+-]){quoted}(?=\.\.\.)"
                rf"|(?<=\buser ){quoted}(?![\w.+-])"
            )
        text = re.sub(pattern, REDACTED, text, flags=re.IGNORECASE)
    return text[:limit]
