"""Addresses and mailboxes fit for a header and an envelope: what a configured identity
or a topic's sender may be. Used by the domain to validate (a topic's From) and by the
message builder to write headers (`mailprefs.delivery.headers`)."""

from __future__ import annotations

import re
from email.utils import formataddr, getaddresses

import idna

# A header line must stay under 998 characters (RFC 5322 2.1.1).
HARD_LIMIT = 998

ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
DOT_ATOM = re.compile(rf"{ATEXT}(?:\.{ATEXT})*")
_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_UNSAFE = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def refuse_line_breaks(value: str, what: str) -> str:
    """`value` unchanged, or ValueError if it holds CR, LF, NUL or another line break."""
    if not isinstance(value, str) or _UNSAFE.search(value):
        raise ValueError(f"{what} must not contain line breaks or NUL")
    return value


def bare_address(address: str, what: str = "address") -> str:
    """A plain `local@domain` safe for an envelope and a header, or ValueError.

    Internationalised domains are written in their ASCII (IDNA) form; a non-ASCII local
    part would need SMTPUTF8, which this service does not speak yet, so it is refused.
    """
    refuse_line_breaks(address, what)
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{what} {address!r} is not an address")
    if not domain.isascii():
        try:
            # IDNA 2008 (the `idna` package, as email-validator uses), not Python's
            # IDNA 2003 codec, which maps "faß.de" to a different domain, "fass.de".
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise ValueError(f"{what} has a domain that cannot be encoded") from None
    if not DOT_ATOM.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        raise ValueError(f"{what} {address!r} is not a plain address")
    return f"{local}@{domain}"


def mailbox(value: str, what: str) -> tuple[str, str]:
    """(`Name <addr>` encoded for a header, bare addr) from a configured identity."""
    refuse_line_breaks(value, what)
    parsed = getaddresses([value])
    if len(parsed) != 1 or not parsed[0][1]:
        raise ValueError(f"{what} must hold exactly one address, not {value!r}")
    name, addr = parsed[0]
    addr = bare_address(addr, what)
    header = formataddr((name, addr), charset="utf-8") if name else addr
    if len(header) > HARD_LIMIT - 40:
        raise ValueError(f"{what} is too long")
    return header, addr
