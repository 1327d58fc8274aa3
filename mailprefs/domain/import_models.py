"""Bulk imports: the import job (its file, checkpoint and counts) and its rejected rows."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mailprefs.db import Base, UTCDateTime
from mailprefs.domain.models import BigId, new_public_id, str_enum

COUNT_KEYS = (
    "rows",
    "created",
    "updated",
    "consents",
    "opt_outs",
    "no_evidence",
    "erased",
    "suppressed",
    "duplicates",
    "invalid",
)


# Values are the members' names in lower case (what StrEnum's auto() gives).
class ImportKind(enum.StrEnum):
    SUBSCRIBERS = enum.auto()
    SUPPRESSIONS = enum.auto()


class ImportStatus(enum.StrEnum):
    QUEUED = enum.auto()
    RUNNING = enum.auto()
    DONE = enum.auto()
    FAILED = enum.auto()
    CANCELLED = enum.auto()


FINISHED = (ImportStatus.DONE, ImportStatus.FAILED, ImportStatus.CANCELLED)


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_KEYS, 0)


class Import(Base):
    """One uploaded file and how far its import got.

    The checkpoint (`done_records`, `done_offset`, `seen`) moves in the same transaction
    as the rows of a batch, so a killed worker resumes exactly where the last commit left.
    """

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    kind: Mapped[ImportKind] = mapped_column(str_enum(ImportKind, "import_kind"))
    status: Mapped[ImportStatus] = mapped_column(str_enum(ImportStatus, "import_status"))
    format: Mapped[str] = mapped_column(String(8))  # csv | ndjson
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    send_confirmations: Mapped[bool] = mapped_column(Boolean, default=False)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    counts: Mapped[dict[str, Any]] = mapped_column(default=zero_counts)
    # Records (not physical lines) fully applied, and the byte offset just after them.
    done_records: Mapped[int] = mapped_column(BigInteger, default=0)
    done_lines: Mapped[int] = mapped_column(BigInteger, default=0)
    done_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # zlib-compressed bitmap of the subscriber ids this file touched (to count duplicates).
    seen: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("created_by", "idempotency_key"),
        Index("ix_imports_status", "status"),
    )


class ImportProblem(Base):
    """A rejected row (or a whole-file problem, line 0): what the errors report lists."""

    __tablename__ = "import_errors"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(String(500))

    __table_args__ = (Index("ix_import_errors_import_id_id", "import_id", "id"),)


class HashedSuppression(Base):
    """An address another sender suppressed, known only by its plain SHA-256 (as other
    ESPs export them). Our own list is keyed, so these are kept apart and turned into a
    keyed suppression the moment the address is met (import, registration)."""

    __tablename__ = "hashed_suppressions"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(16))
    import_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
