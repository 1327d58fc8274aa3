"""Routes are declared once: the handler's docstring is the operation's summary and
description in the served document, and an area's tag and roles are said once."""

from __future__ import annotations

import pytest
from flask import Blueprint

from mailprefs.web.api.spec import Api, docstring_text


def test_a_docstring_gives_the_summary_and_the_description_one_line_a_paragraph():
    def handler():
        """A summary that is wrapped
        over two lines

        A description, wrapped
        as well.

        A second paragraph.
        """

    assert docstring_text(handler) == (
        "A summary that is wrapped over two lines",
        "A description, wrapped as well.\n\nA second paragraph.",
    )


def test_a_route_without_a_summary_is_refused_when_declared():
    api = Api(Blueprint("undocumented", __name__))

    def handler(call):
        return 204, None

    with pytest.raises(TypeError, match="needs a docstring"):
        api.group("things", roles=("ops",)).get("/things", responses={204: None})(handler)
    assert api.operations == []


def test_the_served_document_reads_docstrings_tags_and_roles(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    create = paths["/api/v1/campaigns"]["post"]
    assert create["summary"] == "Create a campaign (draft, or scheduled with send_at)"
    assert create["tags"] == ["campaigns"]
    assert create["description"] == (
        "Marketing keys may use marketing topics only. Subject, text and html are templates "
        "rendered in a sandbox with the recipient's attributes. Honours `Idempotency-Key`: a "
        "retried or racing create yields one campaign; the same key with another body "
        "answers 409.\n\nRoles: marketing, ops"
    )
    # The controls without a body are one table in the code, three operations here.
    for action, summary in (
        ("cancel", "Stop what has not been sent"),
        ("pause", "Hold sending"),
        ("resume", "Resume sending"),
    ):
        operation = paths[f"/api/v1/campaigns/{{public_id}}/{action}"]["post"]
        assert operation["summary"] == summary
        assert operation["description"] == "Roles: marketing, ops"
        assert {"404", "409"} <= set(operation["responses"])
    # A route of an area may name its own tag and roles.
    counts = paths["/api/v1/counts/topics"]["get"]
    assert counts["tags"] == ["topics"]
    assert counts["description"] == "Roles: marketing, ops"
    assert paths["/api/v1/subscribers"]["get"]["description"] == "Roles: ops"
