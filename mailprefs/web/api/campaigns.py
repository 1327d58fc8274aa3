"""Campaigns: create (idempotent), read with progress, audience, preview, test, controls."""

from __future__ import annotations

from flask import current_app

from mailprefs import clock
from mailprefs.delivery.preview import render_preview
from mailprefs.domain import campaigns, reputation, test_copies
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
        pause_reason=campaign.pause_reason if campaign.status.value == "paused" else None,
        stats={
            **campaigns.stats(call.session, campaign),
            **reputation.summary(
                call.session, campaign, reputation.Limits.from_config(current_app.config)
            ),
        },
    )


routes = api.group("campaigns", roles=("marketing", "ops"))


@routes.post(
    "/campaigns",
    body=CampaignIn,
    responses={201: CampaignCreated},
    errors=(409,),
    headers=[HEADER],
    links={
        "GetCampaign": "get_campaigns_public_id",
        "Audience": "get_campaigns_public_id_audience",
        "Preview": "get_campaigns_public_id_preview",
    },
)
def create_campaign(call: Call):
    """Create a campaign (draft, or scheduled with send_at)

    Marketing keys may use marketing topics only. Subject, text and html are templates
    rendered in a sandbox with the recipient's attributes. Honours `Idempotency-Key`: a
    retried or racing create yields one campaign; the same key with another body answers
    409.
    """
    body: CampaignIn = call.body
    topic = get_topic(call.session, body.topic)
    campaigns.authorize(call.role, topic)

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
        detail = {"topic": topic.slug, "status": campaign.status.value}
        call.audit("campaign.create", "campaign", campaign.public_id, detail)
        return 201, CampaignCreated(id=campaign.public_id, status=campaign.status.value)

    return once(call, "campaigns.create", produce)


def _get(call: Call, public_id: str) -> Campaign:
    """The campaign, once the caller's role may act on its topic (every action comes here)."""
    campaign = campaigns.get(call.session, public_id)
    campaigns.authorize(call.role, campaign.topic)
    return campaign


@routes.get("/campaigns/<public_id>", responses={200: CampaignOut})
def get_campaign(call: Call, public_id: str):
    """A campaign with its progress"""
    return 200, campaign_out(call, _get(call, public_id))


@routes.get("/campaigns/<public_id>/audience", responses={200: AudienceOut})
def campaign_audience(call: Call, public_id: str):
    """Who would be allowed and who blocked, by reason (counts only)"""
    campaign = _get(call, public_id)
    return 200, AudienceOut(
        **campaigns.audience_counts(call.session, campaign.topic, campaign.audience)
    )


@routes.get("/campaigns/<public_id>/preview", responses={200: PreviewOut})
def preview_campaign(call: Call, public_id: str):
    """The rendered message for a sample recipient (placeholders, no personal data)"""
    campaign = _get(call, public_id)
    return 200, PreviewOut(**render_preview(current_app.config, get_tokens(), campaign))


@routes.post("/campaigns/<public_id>/test", body=TestSendIn, responses={200: TestSendOut})
def test_campaign(call: Call, public_id: str):
    """Queue a marked test copy for each staff address (not counted, not tracked)

    Addresses must belong to an active dashboard login or be listed in
    MAILPREFS_TEST_ADDRESSES: test copies never go to the public. The copies are queued in
    the outbox, audited, and sent by a worker ahead of everything else (within seconds
    while one runs); `queued` lists them. `sent` and `failed` stay empty: they are kept
    for clients of the earlier answer, which sent during the request.
    """
    campaign = _get(call, public_id)
    staff = test_copies.staff_addresses(
        call.session, current_app.config.get("MAILPREFS_TEST_ADDRESSES")
    )
    queued = test_copies.queue(
        call.session, campaign, call.body.emails, staff=staff, actor=call.actor
    )
    return call.commit(200, TestSendOut(queued=queued, sent=[], failed=[]))


def _control(call: Call, public_id: str, action) -> tuple[int, CampaignOut]:
    campaign = _get(call, public_id)
    action(call.session, campaign, call.actor)
    call.session.commit()
    return 200, campaign_out(call, campaign)


@routes.post(
    "/campaigns/<public_id>/schedule",
    body=ScheduleIn,
    responses={200: CampaignOut},
    errors=(409,),
)
def schedule_campaign(call: Call, public_id: str):
    """Schedule (send_at omitted: now)"""

    def schedule(session, campaign, actor):
        send_at = campaigns.check_send_at(call.body.send_at, clock.now())
        campaigns.schedule(session, campaign, send_at, actor)

    return _control(call, public_id, schedule)


def _controller(name: str, action, summary: str) -> None:
    """A control that takes no body: `POST /campaigns/{id}/NAME` does `action`."""

    def control(call: Call, public_id: str):
        return _control(call, public_id, action)

    control.__name__, control.__doc__ = f"{name}_campaign", summary
    rule = f"/campaigns/<public_id>/{name}"
    routes.post(rule, responses={200: CampaignOut}, errors=(409,))(control)


# The controls without a body differ only in what they do: one table, three routes.
for _name, _action, _summary in (
    ("cancel", campaigns.cancel, "Stop what has not been sent"),
    ("pause", campaigns.pause, "Hold sending"),
    ("resume", campaigns.resume, "Resume sending"),
):
    _controller(_name, _action, _summary)
