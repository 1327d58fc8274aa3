"""Campaigns: create (idempotent), read with progress, audience, preview, test, controls."""

from __future__ import annotations

from flask import current_app

from mailprefs import clock
from mailprefs.delivery.message import MessageBuilder, message_settings
from mailprefs.delivery.render import placeholder_attributes
from mailprefs.delivery.transport import DeliveryError, transport_for
from mailprefs.delivery.types import CampaignInfo, RecipientInfo
from mailprefs.domain import addresses, audit, campaigns, gate
from mailprefs.domain.errors import Forbidden, Invalid
from mailprefs.domain.models import TopicKind
from mailprefs.domain.outbox_models import Campaign
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import get_tokens
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.idempotency import HEADER, once
from mailprefs.web.api.schemas import (
    AudienceOut,
    CampaignCreated,
    CampaignIn,
    CampaignOut,
    PreviewOut,
    ScheduleIn,
    TestSendIn,
    TestSendOut,
)

ROLES = ("marketing", "ops")


def campaign_out(call: Call, campaign: Campaign) -> CampaignOut:
    return CampaignOut(
        id=campaign.public_id,
        status=campaign.status.value,
        topic=campaign.topic.slug,
        subject=campaign.subject,
        send_at=campaign.send_at,
        created_at=campaign.created_at,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
        stats=campaigns.stats(call.session, campaign),
    )


@api.route(
    "/campaigns",
    "POST",
    summary="Create a campaign (draft, or scheduled with send_at)",
    description="Marketing keys may use marketing topics only. Subject, text and html are "
    "templates rendered in a sandbox with the recipient's attributes. Honours "
    "`Idempotency-Key`: a retried or racing create yields one campaign; the same key "
    "with another body answers 409.",
    roles=ROLES,
    body=CampaignIn,
    responses={201: CampaignCreated},
    errors=(409,),
    tag="campaigns",
    headers=[HEADER],
    links={
        "GetCampaign": "get_campaigns_public_id",
        "Audience": "get_campaigns_public_id_audience",
        "Preview": "get_campaigns_public_id_preview",
    },
)
def create_campaign(call: Call):
    body: CampaignIn = call.body
    topic = get_topic(call.session, body.topic)
    if topic.kind == TopicKind.ADMINISTRATIVE and call.role == "marketing":
        raise Forbidden("marketing keys may not send on administrative topics")

    def produce():
        campaign = campaigns.create(
            call.session,
            topic=topic,
            subject=body.subject,
            text=body.text,
            html=body.html,
            send_at=body.send_at,
            audience=body.audience.model_dump() if body.audience else None,
            created_by=call.actor,
        )
        # Inside `produce`: a replayed Idempotency-Key creates nothing and records nothing.
        audit.record(
            call.session,
            call.actor,
            "campaign.create",
            target_type="campaign",
            target_id=campaign.public_id,
            detail={"topic": topic.slug, "status": campaign.status.value},
        )
        return 201, CampaignCreated(id=campaign.public_id, status=campaign.status.value)

    return once(call, "campaigns.create", produce)


def _get(call: Call, public_id: str) -> Campaign:
    return campaigns.get(call.session, public_id)


@api.route(
    "/campaigns/<public_id>",
    "GET",
    summary="A campaign with its progress",
    roles=ROLES,
    responses={200: CampaignOut},
    tag="campaigns",
)
def get_campaign(call: Call, public_id: str):
    return 200, campaign_out(call, _get(call, public_id))


@api.route(
    "/campaigns/<public_id>/audience",
    "GET",
    summary="Who would be allowed and who blocked, by reason (counts only)",
    roles=ROLES,
    responses={200: AudienceOut},
    tag="campaigns",
)
def campaign_audience(call: Call, public_id: str):
    campaign = _get(call, public_id)
    return 200, AudienceOut(
        **campaigns.audience_counts(call.session, campaign.topic, campaign.audience)
    )


@api.route(
    "/campaigns/<public_id>/preview",
    "GET",
    summary="The rendered message for a sample recipient (placeholders, no personal data)",
    roles=ROLES,
    responses={200: PreviewOut},
    tag="campaigns",
)
def preview_campaign(call: Call, public_id: str):
    import email
    import email.policy

    campaign = _get(call, public_id)
    builder = MessageBuilder(
        message_settings(current_app.config), get_tokens(), CampaignInfo.of(campaign)
    )
    sample = RecipientInfo(
        public_id="preview",
        email="recipient@example.com",
        attributes=placeholder_attributes(campaign.subject, campaign.text_body, campaign.html_body),
    )
    parsed = email.message_from_bytes(builder.build(sample).raw, policy=email.policy.default)
    html = parsed.get_body(("html",))
    return 200, PreviewOut(
        subject=str(parsed["Subject"]),
        text=parsed.get_body(("plain",)).get_content().replace("\r\n", "\n"),
        html=html.get_content().replace("\r\n", "\n") if html is not None else None,
        headers={k: str(v) for k, v in parsed.items() if not k.lower().startswith("content-")},
    )


def staff_addresses(call: Call) -> set[str]:
    from sqlalchemy import select

    from mailprefs.domain.models import User

    configured = current_app.config.get("MAILPREFS_TEST_ADDRESSES") or ""
    listed = {a.strip().lower() for a in configured.split(",") if a.strip()}
    logins = set(call.session.scalars(select(User.email).where(User.active)))
    return listed | logins


@api.route(
    "/campaigns/<public_id>/test",
    "POST",
    summary="Send a marked test copy to staff addresses (not counted, not tracked)",
    description="Addresses must belong to a dashboard login or be listed in "
    "MAILPREFS_TEST_ADDRESSES: test copies never go to the public.",
    roles=ROLES,
    body=TestSendIn,
    responses={200: TestSendOut},
    tag="campaigns",
)
def test_campaign(call: Call, public_id: str):
    campaign = _get(call, public_id)
    body: TestSendIn = call.body
    staff = staff_addresses(call)
    normalised = []
    for i, raw in enumerate(body.emails):
        address = addresses.normalise(raw, field=f"emails.{i}")
        if not gate.decide_test_copy(address, staff).allowed:
            raise Invalid.field(f"emails.{i}", "test copies go to staff addresses only")
        normalised.append(address)
    builder = MessageBuilder(
        message_settings(current_app.config),
        get_tokens(),
        CampaignInfo.of(campaign),
        test_copy=True,
    )
    attributes = placeholder_attributes(campaign.subject, campaign.text_body, campaign.html_body)
    sent, failed = [], []
    with transport_for(current_app.config) as transport:
        for address in normalised:
            message = builder.build(RecipientInfo("test-copy", address, attributes))
            try:
                transport.send(gate.decide_test_copy(address, staff), message)
                sent.append(address)
            except DeliveryError as exc:
                failed.append({"email": address, "detail": str(exc)})
    return 200, TestSendOut(sent=sent, failed=failed)


def _control(call: Call, public_id: str, action) -> tuple[int, CampaignOut]:
    campaign = _get(call, public_id)
    action(call.session, campaign, call.actor)
    call.session.commit()
    return 200, campaign_out(call, campaign)


@api.route(
    "/campaigns/<public_id>/schedule",
    "POST",
    summary="Schedule (send_at omitted: now)",
    roles=ROLES,
    body=ScheduleIn,
    responses={200: CampaignOut},
    errors=(409,),
    tag="campaigns",
)
def schedule_campaign(call: Call, public_id: str):
    send_at = campaigns.check_send_at(call.body.send_at, clock.now())
    return _control(call, public_id, lambda s, c, a: campaigns.schedule(s, c, send_at, a))


@api.route(
    "/campaigns/<public_id>/cancel",
    "POST",
    summary="Stop what has not been sent",
    roles=ROLES,
    responses={200: CampaignOut},
    errors=(409,),
    tag="campaigns",
)
def cancel_campaign(call: Call, public_id: str):
    return _control(call, public_id, campaigns.cancel)


@api.route(
    "/campaigns/<public_id>/pause",
    "POST",
    summary="Hold sending",
    roles=ROLES,
    responses={200: CampaignOut},
    errors=(409,),
    tag="campaigns",
)
def pause_campaign(call: Call, public_id: str):
    return _control(call, public_id, campaigns.pause)


@api.route(
    "/campaigns/<public_id>/resume",
    "POST",
    summary="Resume sending",
    roles=ROLES,
    responses={200: CampaignOut},
    errors=(409,),
    tag="campaigns",
)
def resume_campaign(call: Call, public_id: str):
    return _control(call, public_id, campaigns.resume)
