"""Composing campaigns by hand (the dashboard's composer): who may compose on which
topic, editing a draft, duplicating a campaign, and the audience written as lines.

The rules are the API's: a marketing login, like a marketing key, composes on marketing
topics only (administrative mail is the organisation's, invariant 1); ops and admins on
any active topic. Content and audience are checked by `campaigns` as for the API.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit, campaigns
from mailprefs.domain.errors import Conflict, Forbidden, Invalid
from mailprefs.domain.models import Role, Topic, TopicKind
from mailprefs.domain.outbox_models import Campaign, CampaignKind, CampaignStatus
from mailprefs.domain.topics import list_topics

ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUE = 2000


def may_compose_on(topic: Topic, role: str) -> bool:
    return topic.kind == TopicKind.MARKETING or role in (Role.OPS, Role.ADMIN)


def check_topic(topic: Topic, role: str) -> None:
    """Forbidden when this role may not compose on this topic (marketing: marketing only)."""
    if not may_compose_on(topic, role):
        raise Forbidden("a marketing login may not send on administrative topics")


def check_campaign(campaign: Campaign, role: str) -> None:
    """Changing a campaign needs the same right as composing it; policy notices and
    confirmations are not campaigns anyone composes."""
    if campaign.kind != CampaignKind.CAMPAIGN:
        raise Forbidden("only campaigns are composed here; policy notices are on Policies")
    check_topic(campaign.topic, role)


def topics_for(session: Session, role: str) -> list[Topic]:
    """The active topics this role may compose on (marketing first)."""
    topics = [t for t in list_topics(session) if may_compose_on(t, role)]
    return sorted(topics, key=lambda t: (t.kind != TopicKind.MARKETING, t.id))


def parse_audience(text: str) -> dict[str, Any] | None:
    """`name = value` lines (empty: everyone on the topic). A value that reads as a JSON
    number, true, false or null is that; anything else is text. Invalid names the line."""
    attributes: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, raw = line.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not ATTRIBUTE_NAME.match(name):
            raise Invalid.field(
                "audience", f"line {number}: write name = value (a name of letters, digits, _)"
            )
        if name in attributes:
            raise Invalid.field("audience", f"line {number}: {name} appears twice")
        if len(raw) > MAX_VALUE or "\x00" in raw:
            raise Invalid.field("audience", f"line {number}: the value is too long")
        attributes[name] = _value(raw)
    if len(attributes) > campaigns.MAX_AUDIENCE_ATTRIBUTES:
        raise Invalid.field("audience", f"at most {campaigns.MAX_AUDIENCE_ATTRIBUTES} conditions")
    return {"attributes": attributes} if attributes else None


def _value(raw: str) -> Any:
    if raw in ("true", "false", "null") or re.fullmatch(r"-?\d+(\.\d+)?", raw):
        return json.loads(raw)
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]  # "30" in quotes: the text, not the number
    return raw


def audience_lines(audience: dict[str, Any] | None) -> str:
    """The inverse of parse_audience, for the edit form."""
    lines = []
    for name, value in ((audience or {}).get("attributes") or {}).items():
        if isinstance(value, str):
            shown = f'"{value}"' if value != _value(value) or value == "" else value
        else:
            shown = json.dumps(value)
        lines.append(f"{name} = {shown}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Draft:
    """What the composer writes: a campaign's topic, content and audience."""

    topic: Topic
    content: campaigns.Content
    audience: dict[str, Any] | None = None

    @classmethod
    def of(cls, campaign: Campaign) -> Draft:
        return cls(campaign.topic, campaigns.content_of(campaign), campaign.audience)


def create_draft(
    session: Session,
    draft: Draft,
    *,
    actor: str,
    role: str,
    detail: dict[str, Any] | None = None,
) -> Campaign:
    check_topic(draft.topic, role)
    campaign = campaigns.create(
        session,
        topic=draft.topic,
        **draft.content._asdict(),
        send_at=None,
        audience=draft.audience,
        created_by=actor,
    )
    audit.record(
        session,
        actor,
        "campaign.create",
        target_type="campaign",
        target_id=campaign.public_id,
        detail={"topic": draft.topic.slug, "status": campaign.status.value, **(detail or {})},
    )
    return campaign


def update_draft(
    session: Session, campaign: Campaign, draft: Draft, *, actor: str, role: str
) -> None:
    """Change a draft's content, topic or audience (a scheduled campaign goes back to
    draft first: what is about to be sent does not change under the scheduler)."""
    check_campaign(campaign, role)
    check_topic(draft.topic, role)
    if campaign.status != CampaignStatus.DRAFT:
        raise Conflict(f"only a draft can be edited (this one is {campaign.status})")
    campaigns.validate_content(*draft.content)
    campaign.topic_id = draft.topic.id
    campaign.topic = draft.topic
    campaign.subject, campaign.text_body, campaign.html_body = draft.content
    campaign.audience = campaigns.validate_audience(draft.audience)
    session.flush()
    audit.record(
        session,
        actor,
        "campaign.update",
        target_type="campaign",
        target_id=campaign.public_id,
        detail={"topic": draft.topic.slug, "at": clock.now().isoformat()},
    )


def duplicate(session: Session, campaign: Campaign, *, actor: str, role: str) -> Campaign:
    """A new draft with the same topic, content and audience (of any status: a sent
    campaign is a good start for the next one)."""
    check_campaign(campaign, role)
    detail = {"duplicate_of": campaign.public_id}
    return create_draft(session, Draft.of(campaign), actor=actor, role=role, detail=detail)
