"""A campaign as its recipients will get it, without sending it to them: the rendered
message for a sample recipient (placeholders, no personal data), and marked test copies
to staff addresses. The API and the dashboard's composer both use these."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs.delivery.message import MessageBuilder, message_settings
from mailprefs.delivery.render import placeholder_attributes
from mailprefs.delivery.transport import DeliveryError, transport_for
from mailprefs.delivery.types import CampaignInfo, RecipientInfo
from mailprefs.domain import addresses, gate
from mailprefs.domain.errors import Invalid
from mailprefs.domain.models import User
from mailprefs.domain.outbox_models import Campaign

MAX_TEST_ADDRESSES = 10


def sample_attributes(campaign: Campaign) -> dict[str, str]:
    return placeholder_attributes(campaign.subject, campaign.text_body, campaign.html_body)


def render_preview(config: Mapping[str, Any], tokens: Any, campaign: Campaign) -> dict[str, Any]:
    """Subject, text, HTML and headers of the message a sample recipient would get."""
    builder = MessageBuilder(message_settings(config), tokens, CampaignInfo.of(campaign))
    sample = RecipientInfo(
        public_id="preview", email="recipient@example.com", attributes=sample_attributes(campaign)
    )
    parsed = email.message_from_bytes(builder.build(sample).raw, policy=email.policy.default)
    html = parsed.get_body(("html",))
    return {
        "subject": str(parsed["Subject"]),
        "text": parsed.get_body(("plain",)).get_content().replace("\r\n", "\n"),
        "html": html.get_content().replace("\r\n", "\n") if html is not None else None,
        "headers": {k: str(v) for k, v in parsed.items() if not k.lower().startswith("content-")},
    }


def staff_addresses(session: Session, config: Mapping[str, Any]) -> set[str]:
    """Where test copies may go: active dashboard logins and MAILPREFS_TEST_ADDRESSES."""
    configured = config.get("MAILPREFS_TEST_ADDRESSES") or ""
    listed = {a.strip().lower() for a in configured.split(",") if a.strip()}
    return listed | set(session.scalars(select(User.email).where(User.active)))


def send_test_copies(
    session: Session,
    config: Mapping[str, Any],
    tokens: Any,
    campaign: Campaign,
    emails: list[str],
    field: str = "emails",
) -> tuple[list[str], list[dict[str, str]]]:
    """Send a marked test copy to each address (staff only: Invalid names the first one
    that is not, and nothing is sent). Returns (sent, failed with their reason)."""
    if not emails:
        raise Invalid.field(field, "give at least one address")
    if len(emails) > MAX_TEST_ADDRESSES:
        raise Invalid.field(field, f"at most {MAX_TEST_ADDRESSES} addresses")
    staff = staff_addresses(session, config)
    normalised = []
    for i, raw in enumerate(emails):
        address = addresses.normalise(raw, field=f"{field}.{i}")
        if not gate.decide_test_copy(address, staff).allowed:
            raise Invalid.field(f"{field}.{i}", "test copies go to staff addresses only")
        normalised.append(address)
    builder = MessageBuilder(
        message_settings(config), tokens, CampaignInfo.of(campaign), test_copy=True
    )
    attributes = sample_attributes(campaign)
    sent, failed = [], []
    with transport_for(config) as transport:
        for address in normalised:
            message = builder.build(RecipientInfo("test-copy", address, attributes))
            try:
                transport.send(gate.decide_test_copy(address, staff), message)
                sent.append(address)
            except DeliveryError as exc:
                failed.append({"email": address, "detail": str(exc)})
    return sent, failed
