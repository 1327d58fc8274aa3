"""Domain exceptions. The web layer maps them to HTTP answers; the domain never does."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class DomainError(Exception):
    """Base of every refusal the domain can give."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    @classmethod
    def unless(cls, found: T | None, detail: str) -> T:
        """What a lookup found, or NotFound(detail) when it found nothing."""
        if found is None:
            raise cls(detail)
        return found


class Conflict(DomainError):
    pass


class Gone(NotFound):
    """It existed, and was erased: answered as not found, with a detail saying so."""


class Forbidden(DomainError):
    pass


class Invalid(DomainError):
    """Input that breaks a rule; `errors` names each field and what is wrong with it."""

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []

    @classmethod
    def field(cls, field: str, message: str) -> Invalid:
        return cls(message, [{"field": field, "detail": message}])


def found(row: T | None, detail: str) -> T:
    """`row` from a lookup, or NotFound(detail) when the lookup found nothing."""
    if row is None:
        raise NotFound(detail)
    return row
