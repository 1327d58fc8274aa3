"""Topics: listed to every key; created and changed by admin keys (the same domain code
as the dashboard's Topics page, `mailprefs.domain.topic_admin`, which audits)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mailprefs.domain import topic_admin
from mailprefs.domain.models import Topic
from mailprefs.domain.topics import list_topics
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.schemas import Strict, TopicList, TopicOut

ANY_ROLE = ("marketing", "ops", "admin", "transactional")
ADMIN = ("admin",)
routes = api.group("topics", roles=ADMIN)
_ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_ONE_LINE)]
Description = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
Sender = Annotated[str, StringConstraints(max_length=320, pattern=_ONE_LINE)]


class TopicIn(Strict):
    slug: Annotated[str, StringConstraints(max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    name: Name
    kind: Literal["marketing", "administrative"]
    double_opt_in: bool = False
    description: Description = ""
    from_: Sender | None = Field(
        default=None,
        alias="from",
        description="the topic's own From (`Name <address>`); omitted: its stream's",
    )


class TopicPatch(Strict):
    """Only the fields given change; `from: null` goes back to the stream's sender;
    `active: false` retires the topic (nobody is mailed on it), `true` restores it."""

    name: Name | None = None
    description: Description | None = None
    double_opt_in: bool | None = None
    from_: Sender | None = Field(default=None, alias="from")
    active: bool | None = None


class TopicDetail(BaseModel):
    # "from" is a Python keyword: the field is from_, named "from" in JSON.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    slug: str
    name: str
    kind: Literal["marketing", "administrative"]
    double_opt_in: bool
    description: str
    from_: str | None = Field(alias="from")
    active: bool


def _detail(topic: Topic) -> TopicDetail:
    return TopicDetail(
        slug=topic.slug,
        name=topic.name,
        kind=topic.kind.value,
        double_opt_in=topic.double_opt_in,
        description=topic.description or "",
        from_=topic.from_addr,
        active=topic.active,
    )


@routes.get("/topics", roles=ANY_ROLE, responses={200: TopicList})
def get_topics(call: Call):
    """List topics"""
    topics = [
        TopicOut(slug=t.slug, name=t.name, kind=t.kind.value, double_opt_in=t.double_opt_in)
        for t in list_topics(call.session)
    ]
    return 200, TopicList(topics)


@routes.post("/topics", body=TopicIn, responses={201: TopicDetail}, errors=(409,))
def create_topic(call: Call):
    """Create a topic (admin; audited)

    The slug and the kind are fixed once created; consent is recorded per topic and
    stream.
    """
    body: TopicIn = call.body
    given = body.model_dump(exclude={"from_"})
    topic = topic_admin.create(call.session, **given, from_addr=body.from_, actor=call.actor)
    return call.commit(201, _detail(topic))


@routes.patch("/topics/<slug>", body=TopicPatch, responses={200: TopicDetail}, errors=(409,))
def patch_topic(call: Call, slug: str):
    """Rename, describe, set double opt-in or a sender, retire or restore a topic (admin;
    audited)
    """
    body: TopicPatch = call.body
    change = topic_admin.TopicChange()
    for field in body.model_fields_set:
        value = getattr(body, field)
        if value is None and field != "from_":
            continue  # null means "leave it" for every field but the sender
        setattr(change, "from_addr" if field == "from_" else field, value)
    topic = topic_admin.find(call.session, slug)
    topic_admin.update(call.session, topic, change, call.actor)
    return call.commit(200, _detail(topic))
