"""Policy versions: announce a change or a transfer of data (ops), read their progress."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from flask import current_app
from pydantic import AwareDatetime, BaseModel, Field, RootModel, StringConstraints

from mailprefs.domain import policies
from mailprefs.domain.outbox_models import PolicyKind, PolicyVersion
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.idempotency import HEADER, once
from mailprefs.web.api.schemas import NO_NUL, CampaignStats, CampaignStatusName, Strict

routes = api.group("policies", roles=("ops",))

Version = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Title = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
]
Summary = Annotated[str, StringConstraints(min_length=1, max_length=20_000, pattern=NO_NUL)]
Url = Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s\x00-\x1f\x7f]+$")]
PolicyKindName = Literal["change", "transfer"]


class PolicyIn(Strict):
    version: Version
    title: Title
    summary: Summary = Field(
        description="what changes; for a transfer, who receives the data and why"
    )
    url: Url = Field(description="where the new policy is published")
    effective_at: AwareDatetime
    announce_at: AwareDatetime | None = Field(
        default=None,
        description="when the notice goes out (default: now); at least "
        "MAILPREFS_POLICY_NOTICE_DAYS before effective_at",
    )
    kind: PolicyKindName = "change"


class PolicyBroadcast(BaseModel):
    id: str
    status: CampaignStatusName
    started_at: datetime | None
    finished_at: datetime | None
    stats: CampaignStats


class PolicyOut(BaseModel):
    version: str
    title: str
    summary: str
    url: str
    kind: PolicyKindName
    effective_at: datetime
    announce_at: datetime
    created_at: datetime
    in_force: bool = Field(description="the version in force now")
    broadcast: PolicyBroadcast | None = Field(
        description="the notice to every registered person (none for the version in force "
        "when the service was installed)"
    )


class PolicyList(RootModel[list[PolicyOut]]):
    pass


def policy_out(call: Call, policy: PolicyVersion, in_force: str | None) -> PolicyOut:
    campaign = policy.campaign
    broadcast = None
    if campaign is not None:
        broadcast = PolicyBroadcast(
            id=campaign.public_id,
            status=campaign.status.value,
            started_at=campaign.started_at,
            finished_at=campaign.finished_at,
            stats=policies.progress(call.session, policy),
        )
    return PolicyOut(
        version=policy.version,
        title=policy.title,
        summary=policy.summary,
        url=policy.url,
        kind=policy.kind.value,
        effective_at=policy.effective_at,
        announce_at=policy.announce_at,
        created_at=policy.created_at,
        in_force=policy.version == in_force,
        broadcast=broadcast,
    )


@routes.post(
    "/policies", body=PolicyIn, responses={201: PolicyOut}, errors=(409,), headers=[HEADER]
)
def create_policy(call: Call):
    """Announce a privacy policy change or a transfer of data

    Records the version and schedules its notice: administrative mail to every registered,
    active person (opted out of marketing or not), at announce_at. People who register
    before the policy takes effect are sent it too. effective_at must come at least
    MAILPREFS_POLICY_NOTICE_DAYS (default 30) after announce_at and after every earlier
    version's. A known version answers 409. Honours `Idempotency-Key`.
    """
    body: PolicyIn = call.body
    config = current_app.config
    settings = policies.NoticeSettings(
        notice_days=config["MAILPREFS_POLICY_NOTICE_DAYS"],
        org_name=config["MAILPREFS_ORG_NAME"],
        contact_email=config["MAILPREFS_CONTACT_EMAIL"],
    )
    # The body's fields are the announcement's, its kind a name of PolicyKind.
    announcement = policies.Announcement(
        **body.model_dump(exclude={"kind"}), kind=PolicyKind(body.kind)
    )

    def produce():
        policy = policies.announce(call.session, announcement, settings, call.actor)
        return 201, policy_out(call, policy, policies.in_force(call.session))

    return once(call, "policies.create", produce)


@routes.get("/policies", responses={200: PolicyList})
def list_policies(call: Call):
    """Policy versions, latest first, with their notices' progress"""
    in_force = policies.in_force(call.session)
    return 200, PolicyList(
        [policy_out(call, p, in_force) for p in policies.list_versions(call.session)]
    )


@routes.get("/policies/<version>", responses={200: PolicyOut})
def get_policy(call: Call, version: str):
    """One policy version with its notice's progress"""
    policy = policies.get(call.session, version)
    return 200, policy_out(call, policy, policies.in_force(call.session))
