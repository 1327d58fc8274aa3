"""Header encoding for the message builder: fast, and no value can start a new header.

The `email` package does all of this too, but at a cost of milliseconds per message; the
builder needs microseconds. Every function here either refuses a value holding a line
break (addresses) or folds it to a space (free text) before anything is written.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from email.utils import format_datetime, formataddr

from mailprefs.domain.mailboxes import (
    DOT_ATOM,
    HARD_LIMIT,
    bare_address,
    mailbox,
    refuse_line_breaks,
)
from mailprefs.domain.templating import one_line

__all__ = ["bare_address", "mailbox", "refuse_line_breaks"]  # validated in the domain

# Header lines should stay under 78 characters (RFC 5322 2.1.1) and must stay under 998.
_SOFT_LIMIT = 78
# An encoded-word is at most 75 characters: "=?utf-8?b?" + base64 + "?=" leaves 63
# characters of base64, i.e. 45 bytes of UTF-8 per word.
_WORD_BYTES = 45

_LINK_BASE = re.compile(r"https?://[!#-;=?-~]+")  # printable ASCII except space " < >


def link_base(url: str) -> str:
    """The base URL of links, without a trailing slash; ValueError unless it is an
    ASCII http(s) URL with nothing that could end a header or an <...> bracket."""
    url = (url or "").strip().rstrip("/")
    if not _LINK_BASE.fullmatch(url):
        raise ValueError(f"base URL {url!r} must be an http(s) URL of ASCII characters")
    return url


def phrase_with_id(name: str, list_id: str) -> str:
    """`Name <list.id>` for List-Id (RFC 2919): the name folded to one line, encoded."""
    if not DOT_ATOM.fullmatch(list_id):
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
        if len(current) > HARD_LIMIT:
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
