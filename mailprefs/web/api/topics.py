from __future__ import annotations

from mailprefs.domain.topics import list_topics
from mailprefs.web.api import api
from mailprefs.web.api.auth import Call
from mailprefs.web.api.schemas import TopicList, TopicOut

ANY_ROLE = ("marketing", "ops", "admin", "transactional")


@api.route(
    "/topics",
    "GET",
    summary="List topics",
    roles=ANY_ROLE,
    responses={200: TopicList},
    tag="topics",
)
def get_topics(call: Call):
    topics = [
        TopicOut(slug=t.slug, name=t.name, kind=t.kind.value, double_opt_in=t.double_opt_in)
        for t in list_topics(call.session)
    ]
    return 200, TopicList(topics)
