"""Email addresses: normalisation and the keyed one-way hash used by the suppression list."""

from __future__ import annotations

import hashlib
import hmac

from email_validator import EmailNotValidError, validate_email

from mailprefs.domain.errors import Invalid


def normalise(address: str, field: str = "email") -> str:
    """The canonical form of an address, or Invalid. No DNS lookups at request time.

    Addresses are compared case-insensitively: every large provider treats the local
    part so, and a suppression must not be dodged by a capital letter.
    """
    if not isinstance(address, str) or any(c in address for c in "\r\n\0"):
        raise Invalid.field(field, "not a valid email address")
    try:
        result = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise Invalid.field(field, f"not a valid email address: {exc}") from None
    return result.normalized.lower()


def address_hash(normalised_address: str, key: str) -> str:
    """HMAC-SHA-256 of the normalised address: stable, one-way without the key."""
    return hmac.new(key.encode(), normalised_address.encode(), hashlib.sha256).hexdigest()


def mask(address: str | None) -> str:
    """`jane.doe@example.com` -> `j***e@e***.com`, for pages a link scanner may read."""
    if not address or "@" not in address:
        return "(erased)"
    local, _, domain = address.partition("@")
    shown_local = local[0] + "***" + (local[-1] if len(local) > 1 else "")
    name, dot, tld = domain.rpartition(".")
    shown_domain = (name[:1] + "***" + dot + tld) if name else domain
    return f"{shown_local}@{shown_domain}"
