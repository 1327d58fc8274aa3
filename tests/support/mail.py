"""Message-building helpers for tests that need no database: settings, tokens, campaigns."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

from mailprefs.delivery.types import (
    BuiltMessage,
    CampaignInfo,
    MessageSettings,
    RecipientInfo,
    StreamIdentity,
)
from mailprefs.domain.tokens import TokenService

BASE_URL = "https://mail.example.test"
POSTAL = "Example Ltd., 1 Example Street, Example Town"


def tokens() -> TokenService:
    return TokenService(
        ["test-signing-key-new", "test-signing-key-old"],
        unsubscribe_max_age=400 * 86400,
        confirm_max_age=48 * 3600,
    )


def settings(**overrides: Any) -> MessageSettings:
    values: dict[str, Any] = {
        "org_name": "Example Ltd.",
        "postal_address": POSTAL,
        "base_url": BASE_URL,
        "privacy_url": "https://example.test/privacy",
        "marketing": StreamIdentity(
            "Example News <news@news.example.test>", "replies@example.test"
        ),
        "administrative": StreamIdentity("Example <account@account.example.test>"),
        "list_id_domain": "lists.example.test",
        "unsubscribe_mailto": "unsubscribe@news.example.test",
    }
    values.update(overrides)
    return MessageSettings(**values)


def marketing(**overrides: Any) -> CampaignInfo:
    values: dict[str, Any] = {
        "public_id": "cmp_marketing1",
        "kind": "campaign",
        "topic_slug": "offers",
        "topic_name": "Offers and product news",
        "topic_kind": "marketing",
        "subject": "News for {{ first_name }}",
        "text": "Hello {{ first_name }},\n\nHere is our news.\n",
        "html": "<html><body><p>Hello {{ first_name }},</p><p>Here is our news.</p></body></html>",
    }
    values.update(overrides)
    return CampaignInfo(**values)


def administrative(**overrides: Any) -> CampaignInfo:
    values: dict[str, Any] = {
        "public_id": "cmp_admin1",
        "kind": "transactional",
        "topic_slug": "account",
        "topic_name": "Account and transactions",
        "topic_kind": "administrative",
        "subject": "Your receipt",
        "text": "Dear {{ first_name }}, thank you for your order.",
        "html": None,
    }
    values.update(overrides)
    return replace(marketing(), **values)


def recipient(email_address: str = "jane@example.org", **attributes: Any) -> RecipientInfo:
    return RecipientInfo(
        public_id="sub_jane", email=email_address, attributes=attributes or {"first_name": "Jane"}
    )


def parse(message: BuiltMessage | bytes) -> EmailMessage:
    raw = message.raw if isinstance(message, BuiltMessage) else message
    return email.message_from_bytes(raw, policy=email.policy.default)


def header_block(message: BuiltMessage) -> bytes:
    return message.raw.split(b"\r\n\r\n", 1)[0]


def text_of(message: BuiltMessage) -> str:
    """The decoded text part, with the wire's CRLF line ends as newlines."""
    return parse(message).get_body(("plain",)).get_content().replace("\r\n", "\n")


def html_of(message: BuiltMessage) -> str:
    return parse(message).get_body(("html",)).get_content().replace("\r\n", "\n")
