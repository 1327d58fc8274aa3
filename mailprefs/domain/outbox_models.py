"""The data model of mail: campaigns, the outbox, policy versions, what comes back.

A transactional message, a confirmation mail and a policy notice are campaigns too (of
another `kind`), so every message leaves through the same outbox and the same gate.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailprefs.db import Base, UTCDateTime
from mailprefs.domain.models import BigId, Topic, new_public_id, partial_index, str_enum


class CampaignKind(enum.StrEnum):
    CAMPAIGN = "campaign"
    TRANSACTIONAL = "transactional"
    POLICY = "policy"
    CONFIRMATION = "confirmation"
    # A marked copy of a campaign for one staff address (domain/test_copies.py).
    TEST = "test"


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    BLOCKED = "blocked"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PolicyKind(enum.StrEnum):
    CHANGE = "change"
    TRANSFER = "transfer"


class ComplaintStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class BounceKind(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"


# Lower sends first: a password reset must not wait behind a newsletter.
PRIORITY = {
    CampaignKind.TRANSACTIONAL: 0,
    CampaignKind.CONFIRMATION: 0,
    CampaignKind.TEST: 0,
    CampaignKind.POLICY: 5,
    CampaignKind.CAMPAIGN: 10,
}


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    kind: Mapped[CampaignKind] = mapped_column(str_enum(CampaignKind, "campaign_kind"))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    subject: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    audience: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Kind-specific data: a confirmation's topic, a policy notice's version ...
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[CampaignStatus] = mapped_column(
        str_enum(CampaignStatus, "campaign_status"), default=CampaignStatus.DRAFT
    )
    priority: Mapped[int] = mapped_column(SmallInteger, default=10)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Expansion into the outbox runs in keyset batches; `expanded_through` is the last
    # subscriber id whose delivery row is committed, moved in the same transaction.
    expanded_through: Mapped[int] = mapped_column(BigId, default=0)
    expansion_done: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why a paused campaign is paused: `manual`, or the reputation guard's
    # `complaint_rate` / `bounce_rate` (with the figures it saw in `pause_detail`).
    pause_reason: Mapped[str | None] = mapped_column(String(32))
    pause_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Counts when ops last resumed after the guard tripped: it then judges only what
    # came after, so a resume is not undone by the very figures it overruled.
    rates_baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    topic: Mapped[Topic] = relationship()

    __table_args__ = (Index("ix_campaigns_status_send_at", "status", "send_at"),)


class Delivery(Base):
    """One message to one person: the outbox row, and the record of the gate's decision."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys on the two ids (migration 0002): rows are written a million at a
    # time from a SELECT over subscribers for a campaign the same transaction holds, the
    # per-row checks cost half of that on PostgreSQL, and neither parent is ever deleted.
    campaign_id: Mapped[int] = mapped_column(BigId)
    # NULL only for a message to an address nobody registered (blocked: unknown_recipient).
    subscriber_id: Mapped[int | None] = mapped_column(BigId)
    status: Mapped[DeliveryStatus] = mapped_column(str_enum(DeliveryStatus, "delivery_status"))
    # The gate's reason when blocked; the failure kind when failed.
    reason: Mapped[str | None] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(SmallInteger, default=10)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(String(512))

    campaign: Mapped[Campaign] = relationship(
        primaryjoin="foreign(Delivery.campaign_id) == Campaign.id"
    )

    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id"),
        # The work queue: only queued rows are indexed, so the index stays small.
        partial_index(
            "ix_deliveries_queue", "priority", "next_attempt_at", "id", where="status = 'queued'"
        ),
        Index("ix_deliveries_subscriber_id", "subscriber_id"),
    )


class PolicyVersion(Base):
    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2000))
    kind: Mapped[PolicyKind] = mapped_column(str_enum(PolicyKind, "policy_kind"))
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    announce_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(128))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))

    campaign: Mapped[Campaign | None] = relationship()


class Complaint(Base):
    """A report of unsolicited mail, to investigate."""

    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"), index=True)
    email_hash: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    detail: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ComplaintStatus] = mapped_column(
        str_enum(ComplaintStatus, "complaint_status"), default=ComplaintStatus.OPEN
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolution: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_complaints_status_created_at", "status", "created_at"),)


class BounceEvent(Base):
    __tablename__ = "bounce_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"))
    kind: Mapped[BounceKind] = mapped_column(str_enum(BounceKind, "bounce_kind"))
    source: Mapped[str] = mapped_column(String(32))  # smtp, json, dsn
    diagnostic: Mapped[str | None] = mapped_column(Text)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Lease(Base):
    """A named lease with a heartbeat: the scheduler's leader election on any database."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fencing_token: Mapped[int] = mapped_column(Integer, default=1)


# APScheduler's SQLAlchemyJobStore table, declared here so that Alembic owns the schema.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
