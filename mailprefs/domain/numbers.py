"""Finite numbers only: NaN and infinities are not JSON (RFC 8259), and a stored one
breaks every query that reads the document (SQLite's json_extract: "malformed JSON")."""

from __future__ import annotations

import math
from typing import Any

NON_FINITE_DETAIL = "must be a finite number (NaN and infinities are not JSON)"


def first_non_finite(value: Any, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinity inside `value`, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "body")
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = first_non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None
