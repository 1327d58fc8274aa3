"""The shapes that pass between the outbox, the message builder and the transports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StreamIdentity:
    """Sender identity of one stream (marketing or administrative)."""

    from_addr: str  # "Name <addr@domain>"
    reply_to: str | None = None


@dataclass(frozen=True)
class DkimKey:
    selector: str
    private_key: bytes  # PEM, RSA or Ed25519
    not_before: datetime | None = None  # signs from then (rotation); None: always


@dataclass(frozen=True)
class DkimSettings:
    domain: str
    selector: str
    private_key: bytes  # PEM
    # More keys: an Ed25519 one to sign beside the RSA one, the next selector of a
    # rotation with the date it takes over (MAILPREFS_DKIM_KEYS).
    more: tuple[DkimKey, ...] = ()

    def all_keys(self) -> list[DkimKey]:
        return [DkimKey(self.selector, self.private_key), *self.more]


@dataclass(frozen=True)
class MessageSettings:
    org_name: str
    postal_address: str
    base_url: str  # no trailing slash
    privacy_url: str
    marketing: StreamIdentity
    administrative: StreamIdentity
    list_id_domain: str
    unsubscribe_mailto: str | None = None
    dkim: DkimSettings | None = None
    # VERP return paths (domain.verp.VerpAddresses), when MAILPREFS_BOUNCE_DOMAIN is set.
    verp: Any = None
    feedback_sender_id: str = "mailprefs"


@dataclass(frozen=True)
class CampaignInfo:
    """What the builder needs of a campaign; built once per campaign per batch."""

    public_id: str
    kind: str  # campaign | transactional | policy | confirmation
    topic_slug: str
    topic_name: str
    topic_kind: str  # marketing | administrative
    subject: str
    text: str
    html: str | None
    # Extra, kind-specific data (confirmation: {"confirm_topic": slug}).
    meta: dict[str, Any] = field(default_factory=dict)
    topic_from: str | None = None  # the topic's own From, where it has one

    @classmethod
    def of(cls, campaign: Any) -> CampaignInfo:
        """From a Campaign row (its topic loaded or loadable)."""
        return cls(
            public_id=campaign.public_id,
            kind=campaign.kind.value,
            topic_slug=campaign.topic.slug,
            topic_name=campaign.topic.name,
            topic_kind=campaign.topic.kind.value,
            subject=campaign.subject,
            text=campaign.text_body,
            html=campaign.html_body,
            meta=campaign.meta or {},
            topic_from=getattr(campaign.topic, "from_addr", None),
        )


@dataclass(frozen=True)
class RecipientInfo:
    public_id: str
    email: str
    attributes: dict[str, Any]
    delivery_id: int | None = None  # names the outbox row in a VERP return path


@dataclass(frozen=True)
class BuiltMessage:
    raw: bytes
    message_id: str  # with angle brackets
    envelope_from: str  # bare address
    to: str  # bare address
    # Set when the builder left the DKIM signature to whoever sends (the pool's sender
    # threads): `raw` is then unsigned until `signed()` is called.
    signer: Callable[[bytes], bytes] | None = field(default=None, compare=False, repr=False)

    def signed(self) -> BuiltMessage:
        """The message as it goes on the wire: signed now if signing was left to the
        sender, else itself."""
        if self.signer is None:
            return self
        return replace(self, raw=self.signer(self.raw), signer=None)
