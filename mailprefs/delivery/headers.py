"""Header encoding for the message builder: fast, and no value can start a new header.

The `email` package does all of this too, but at a cost of milliseconds per message; the
builder needs microseconds. Every function here either refuses a value holding a line
break (addresses) or folds it to a space (free text) before anything is written.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from email.utils import format_datetime, formataddr, getaddresses

import idna

from mailprefs.domain.templating import one_line

# Header lines should stay under 78 characters (RFC 5322 2.1.1) and must stay under 998.
_SOFT_LIMIT = 78
_HARD_LIMIT = 998
# An encoded-word is at most 75 characters: "=?utf-8?b?" + base64 + "?=" leaves 63
# characters of base64, i.e. 45 bytes of UTF-8 per word.
_WORD_BYTES = 45

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_LINK_BASE = re.compile(r"https?://[!#-;=?-~]+")  # printable ASCII except space " < >
_UNSAFE = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def refuse_line_breaks(value: str, what: str) -> str:
    """`value` unchanged, or ValueError if it holds CR, LF, NUL or another line break."""
    if not isinstance(value, str) or _UNSAFE.search(value):
        raise ValueError(f"{what} must not contain line breaks or NUL")
    return value


def link_base(url: str) -> str:
    """The base URL of links, without a trailing slash; ValueError unless it is an
    ASCII http(s) URL with nothing that could end a header or an <...> bracket."""
    url = (url or "").strip().rstrip("/")
    if not _LINK_BASE.fullmatch(url):
        raise ValueError(f"base URL {url!r} must be an http(s) URL of ASCII characters")
    return url


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
    if not _DOT_ATOM.fullmatch(local) or not _DOMAIN.fullmatch(domain):
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
    if len(header) > _HARD_LIMIT - 40:
        raise ValueError(f"{what} is too long")
    return header, addr


def phrase_with_id(name: str, list_id: str) -> str:
    """`Name <list.id>` for List-Id (RFC 2919): the name folded to one line, encoded."""
    if not _DOT_ATOM.fullmatch(list_id):
        raise ValueError(f"{list_id!r} cannot be a List-Id")
    name = one_line(name)
    return formataddr((name, list_id), charset="utf-8") if name else f"<{list_id}>"


def _encoded_words(value: str) -> list[str]:
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in value:
        width = len(char.encode("utf-8"))
        if size + width > _WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    if chunk:
        words.append("".join(chunk))
    return [
        "=?utf-8?b?" + base64.b64encode(word.encode("utf-8")).decode("ascii") + "?="
        for word in words
    ]


def _fold_ascii(name: str, value: str) -> str | None:
    """Fold ASCII text at spaces into lines under 78 characters; None if a word is too
    long to fit a line at all."""
    lines: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        if len(current) + 1 + len(word) <= _SOFT_LIMIT or current == f"{name}:":
            current = f"{current} {word}"
        else:
            lines.append(current)
            current = f" {word}"
        if len(current) > _HARD_LIMIT:
            return None
    lines.append(current)
    return "\r\n".join(lines)


def unstructured(name: str, value: str) -> bytes:
    """A complete `Name: value\\r\\n` line for free text (Subject): one line, folded,
    RFC 2047 encoded when not plain ASCII."""
    value = one_line(value)
    if value.isascii() and "=?" not in value:
        if len(name) + 2 + len(value) <= _SOFT_LIMIT:
            return f"{name}: {value}\r\n".encode("ascii")
        folded = _fold_ascii(name, value)
        if folded is not None:
            return (folded + "\r\n").encode("ascii")
    # Non-ASCII, or text that a reader would mistake for encoded-words: encode it all.
    return (f"{name}: " + "\r\n ".join(_encoded_words(value)) + "\r\n").encode("ascii")


class DateHeader:
    """`Date: ...\\r\\n` for a moment; formatting is cached for the current second."""

    __slots__ = ("_second", "_line")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self, moment: datetime) -> bytes:
        second = int(moment.timestamp())
        if second != self._second:
            self._line = f"Date: {format_datetime(moment.replace(microsecond=0))}\r\n".encode()
            self._second = second
        return self._line
