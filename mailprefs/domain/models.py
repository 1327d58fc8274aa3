"""The data model: people and their consent (this module) and mail (`outbox_models`).

SQLAlchemy 2 typed mappings. Enumerations are stored as short strings with CHECK
constraints, so both databases hold the same values the API shows.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailprefs.db import Base, UTCDateTime

# SQLite only treats INTEGER PRIMARY KEY as the rowid alias that autoincrements.
BigId = BigInteger().with_variant(Integer, "sqlite")


def new_public_id() -> str:
    """A random public id: 128 bits, URL-safe, never sequential, never from the address."""
    return secrets.token_urlsafe(16)


def partial_index(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index over only the rows that meet `where` (SQL), the same on both databases."""
    condition = text(where)
    return Index(name, *columns, unique=unique, sqlite_where=condition, postgresql_where=condition)


def str_enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(m.value) for m in cls),  # type: ignore[arg-type]
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class TopicKind(enum.StrEnum):
    ADMINISTRATIVE = "administrative"
    MARKETING = "marketing"


class SubscriberStatus(enum.StrEnum):
    ACTIVE = "active"
    DEACTIVATED = "deactivated"
    ERASED = "erased"


class TopicState(enum.StrEnum):
    NONE = "none"
    PENDING = "pending"
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class ConsentAction(enum.StrEnum):
    OPT_IN = "opt_in"  # pending where the topic is double opt-in
    CONFIRM = "confirm"  # pending -> opted_in
    OPT_OUT = "opt_out"
    DEACTIVATE = "deactivate"  # account-level: opt out entirely
    REACTIVATE = "reactivate"  # account-level: re-registration
    ERASE = "erase"  # account-level: personal data erased


class SuppressionReason(enum.StrEnum):
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    ERASED = "erased"
    UNDERAGE = "underage"
    MANUAL = "manual"


class Role(enum.StrEnum):
    MARKETING = "marketing"
    OPS = "ops"
    ADMIN = "admin"
    TRANSACTIONAL = "transactional"


class Topic(Base):
    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[TopicKind] = mapped_column(str_enum(TopicKind, "topic_kind"))
    double_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A topic's own From ("Name <addr>"), instead of its stream's; None: the stream's.
    from_addr: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # Last changed in the product (dashboard or API): who and when. None: as seeded.
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    edited_by: Mapped[str | None] = mapped_column(String(100), nullable=True)

    @property
    def is_marketing(self) -> bool:
        return self.kind == TopicKind.MARKETING


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    # Normalised address; NULL once erased. Deliberately not indexed: an index keeps
    # copies of old values in its pages, where erasure could not reach them.
    email: Mapped[str | None] = mapped_column(String(320))
    # Keyed one-way hash of the address: the unique lookup key, and what meets the
    # suppression list. NULL once erased.
    email_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[SubscriberStatus] = mapped_column(
        str_enum(SubscriberStatus, "subscriber_status"), default=SubscriberStatus.ACTIVE
    )
    # Who or what moved the status: by_user, by_staff, underage, by_request ...
    status_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    subscriptions: Mapped[list[TopicSubscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan"
    )


class TopicSubscription(Base):
    """Current state per (subscriber, topic): a projection of the consent ledger."""

    __tablename__ = "topic_subscriptions"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), primary_key=True)
    state: Mapped[TopicState] = mapped_column(str_enum(TopicState, "topic_state"))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_id: Mapped[int] = mapped_column(BigId)

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    topic: Mapped[Topic] = relationship()

    __table_args__ = (Index("ix_topic_subscriptions_topic_state", "topic_id", "state"),)


class ConsentEvent(Base):
    """One line of the append-only consent ledger (who, what, when, how, under which policy).

    Rows are never updated or deleted; erasure alone blanks `ip` and `user_agent`
    (guarded in code by `consent.guard_ledger` and on PostgreSQL by a trigger).
    """

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    action: Mapped[ConsentAction] = mapped_column(str_enum(ConsentAction, "consent_action"))
    source: Mapped[str] = mapped_column(String(32))
    # Free text naming the form, event, page or wording behind the consent.
    source_detail: Mapped[str | None] = mapped_column(String(1000))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    policy_version: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(128))
    # Extra evidence that is not personal: campaign id of a one-click, complaint id ...
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # When the consent was given (may be earlier than recorded, for imports).
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)

    topic: Mapped[Topic | None] = relationship()


class Suppression(Base):
    """An address that must not be mailed, known only by its keyed hash."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[SuppressionReason] = mapped_column(
        str_enum(SuppressionReason, "suppression_reason")
    )
    source: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(128))
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[str | None] = mapped_column(String(128))
    lift_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # At most one active suppression per address; lifted ones stay as history.
        partial_index(
            "uq_suppressions_active_hash", "email_hash", where="lifted_at IS NULL", unique=True
        ),
        Index("ix_suppressions_email_hash", "email_hash"),
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(str_enum(Role, "api_role"))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    # SHA-256 of the whole key: keys carry 256 random bits, so a fast hash is enough.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Every staff read of personal data and every admin action. Holds no addresses."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64), index=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(45))


class User(Base):
    """A dashboard login (ops or admin). Speaks Flask-Login's user protocol."""

    __tablename__ = "users"
    is_anonymous = False

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        # The session cookie names the session version too: logging out or changing the
        # password moves it on, so a copied cookie stops working (issue 13 finding 8).
        return f"{self.id}.{self.session_version}"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(str_enum(Role, "user_role"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Two-factor login (TOTP, RFC 6238): the shared secret once confirmed, and since when.
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IdempotencyRecord(Base):
    """The first answer to a request carrying an `Idempotency-Key`, replayed on retries."""

    __tablename__ = "idempotency_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))  # the API key's prefix
    endpoint: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("scope", "endpoint", "key"),)
