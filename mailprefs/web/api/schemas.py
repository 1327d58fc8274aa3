"""Declared request and response bodies (pydantic): validation and the document's schemas."""

from __future__ import annotations

from datetime import datetime
from ipaddress import ip_address
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    WithJsonSchema,
)


def _ip(value: str) -> str:
    try:
        return str(ip_address(value))
    except ValueError:
        raise ValueError("not an IPv4 or IPv6 address") from None


IpAddress = Annotated[
    str,
    StringConstraints(max_length=45),
    AfterValidator(_ip),
    WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
]
# Checked by email-validator in the domain (it normalises too); documented as a format.
EmailAddress = Annotated[
    str,
    StringConstraints(min_length=3, max_length=320, pattern=r"^[^\x00]*$"),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 320}),
]

_SLUG = r"^[a-z0-9][a-z0-9_-]*$"
# The document lists the configured slugs of the kind named by `x-topic`.
TopicSlug = Annotated[
    str, Field(max_length=64, pattern=_SLUG, json_schema_extra={"x-topic": "any"})
]
MarketingTopicSlug = Annotated[
    str, Field(max_length=64, pattern=_SLUG, json_schema_extra={"x-topic": "marketing"})
]
AdministrativeTopicSlug = Annotated[
    str, Field(max_length=64, pattern=_SLUG, json_schema_extra={"x-topic": "administrative"})
]
# No control characters: these strings can end up in headers and logs.
Line = Annotated[str, StringConstraints(max_length=512, pattern=r"^[^\x00-\x1f\x7f]*$")]
# Which form, event or wording: free text, on one line.
SourceDetail = Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00-\x1f\x7f]*$")]
AttributeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
# PostgreSQL cannot store NUL in text, and no mail needs one: refused everywhere.
NO_NUL = r"^[^\x00]*$"
AttributeValue = (
    Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)] | int | float | bool | None
)
TopicStateName = Literal["none", "pending", "opted_in", "opted_out"]
SubscriberStatusName = Literal["active", "deactivated", "erased"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ConsentIn(Strict):
    """A consent the client recorded, with its evidence (marketing topics only)."""

    topic: MarketingTopicSlug
    source: Literal["api", "import", "web_form", "staff"]
    source_detail: SourceDetail | None = Field(
        default=None, description="which form, event or wording the consent came through"
    )
    ip: IpAddress | None = None
    user_agent: Line | None = None
    at: AwareDatetime | None = Field(default=None, description="when consent was given")


class SubscriberIn(Strict):
    email: EmailAddress
    attributes: dict[AttributeName, AttributeValue] = Field(default_factory=dict, max_length=50)
    consents: list[ConsentIn] = Field(default_factory=list, max_length=50)


class ConsentChangeIn(ConsentIn):
    action: Literal["opt_in", "opt_out"]


class TopicOut(BaseModel):
    slug: str
    name: str
    kind: Literal["marketing", "administrative"]
    double_opt_in: bool


class TopicList(RootModel[list[TopicOut]]):
    pass


class SubscriberOut(BaseModel):
    """What any key may see: no address, no attributes."""

    id: str
    status: SubscriberStatusName
    topics: dict[str, TopicStateName]


class ReactivationPendingOut(BaseModel):
    """A closed account asked to join again: nothing changed until the person confirms."""

    id: str
    status: Literal["pending_reactivation"] = Field(
        description="the person is mailed a link to confirm (at most one mail per "
        "MAILPREFS_REACTIVATION_INTERVAL_HOURS); the account stays closed until they do"
    )


class ConsentChangeOut(SubscriberOut):
    changed: bool = Field(description="false when the person was already in that state")


class ConsentEventOut(BaseModel):
    id: int
    topic: str | None
    action: str
    source: str
    source_detail: str | None = None
    ip: str | None
    user_agent: str | None
    policy_version: str | None
    actor: str | None
    context: dict[str, Any] | None
    at: datetime
    recorded_at: datetime


class SubscriberDetail(SubscriberOut):
    """An ops view of one person: profile, topic states, consent history."""

    email: str | None
    status_reason: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    consent_history: list[ConsentEventOut]


class SubscriberExport(BaseModel):
    """Everything held about a person."""

    model_config = ConfigDict(extra="allow")

    id: str
    email: str | None
    status: SubscriberStatusName
    attributes: dict[str, Any]
    topics: dict[str, TopicStateName]
    consent_events: list[ConsentEventOut]
    messages: list[dict[str, Any]]
    suppressions: list[dict[str, Any]]
    complaints: list[dict[str, Any]]
    bounces: list[dict[str, Any]]


# --- campaigns and messages ----------------------------------------------------------

Subject = Annotated[str, StringConstraints(min_length=1, max_length=998, pattern=r"^[^\r\n\x00]*$")]
Body = Annotated[str, StringConstraints(min_length=1, max_length=500_000, pattern=NO_NUL)]
AudienceValue = (
    Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)] | int | float | bool | None
)
CampaignStatusName = Literal["draft", "scheduled", "sending", "paused", "sent", "cancelled"]


class AudienceIn(Strict):
    attributes: dict[AttributeName, AudienceValue] = Field(default_factory=dict, max_length=20)


class CampaignIn(Strict):
    topic: TopicSlug
    subject: Subject
    text: Body
    html: Body | None = None
    send_at: AwareDatetime | None = Field(default=None, description="omit for a draft")
    audience: AudienceIn | None = None


class CampaignCreated(BaseModel):
    id: str
    status: CampaignStatusName


class StreamRates(BaseModel):
    kind: Literal["marketing", "administrative"]
    window_days: int = Field(description="mail sent (and reports received) in the last N days")
    delivered: int
    hard_bounces: int
    complaints: int
    bounce_rate: float
    complaint_rate: float


class RateLimits(BaseModel):
    complaint_rate: float
    bounce_rate: float
    min_sample: int = Field(description="delivered messages before the limits act")


class CampaignStats(BaseModel):
    planned: int
    sent: int
    blocked: dict[str, int]
    failed: int
    pending: int
    cancelled: int


class CampaignStatsWithRates(CampaignStats):
    """A campaign's progress, with the reputation guard's figures (docs/reputation.md)."""

    delivered: int = Field(description="handed to the relay: sent, or refused for the address")
    hard_bounces: int
    complaints: int
    bounce_rate: float = Field(description="hard_bounces / delivered")
    complaint_rate: float = Field(description="complaints / delivered")
    stream: StreamRates
    limits: RateLimits


class CampaignOut(BaseModel):
    id: str
    status: CampaignStatusName
    topic: str
    subject: str
    send_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    pause_reason: Literal["manual", "complaint_rate", "bounce_rate"] | None = Field(
        default=None, description="why a paused campaign is paused"
    )
    stats: CampaignStatsWithRates


class AudienceOut(BaseModel):
    total: int
    allowed: int
    blocked: dict[str, int]


class PreviewOut(BaseModel):
    subject: str
    text: str
    html: str | None
    headers: dict[str, str]


class TestSendIn(Strict):
    emails: list[
        Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=NO_NUL)]
    ] = Field(min_length=1, max_length=10)


class TestSendOut(BaseModel):
    queued: list[str] = Field(description="the staff addresses a test copy was queued for")
    sent: list[str] = Field(description="always empty: copies are queued, not sent in the request")
    failed: list[dict[str, str]] = Field(description="always empty (see `sent`)")


class ScheduleIn(Strict):
    send_at: AwareDatetime | None = Field(default=None, description="omit to send now")


class MessageIn(Strict):
    topic: AdministrativeTopicSlug
    to: Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=NO_NUL)] = Field(
        description="the subscriber's public id or address"
    )
    subject: Subject
    text: Body
    html: Body | None = None


class MessageOut(BaseModel):
    id: str
    status: Literal["queued", "sent", "blocked", "failed", "cancelled"]
    reason: str | None = None
