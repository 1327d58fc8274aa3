"""A campaign as its recipients will get it, without sending it to them: the rendered
message for a sample recipient (placeholders, no personal data). The API and the
dashboard's composer both use it; test copies go through the outbox
(`mailprefs.domain.test_copies`)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Mapping
from typing import Any

from mailprefs.delivery.message import MessageBuilder, message_settings
from mailprefs.delivery.types import CampaignInfo, RecipientInfo
from mailprefs.domain.outbox_models import Campaign
from mailprefs.domain.templating import placeholder_attributes


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
