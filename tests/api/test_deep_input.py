"""Issue 13 finding 11: deeply nested templates and pathological reports answer a 4xx
with a clear detail, never a 500."""

from __future__ import annotations

import pytest

from mailprefs.domain.outbox_models import BounceEvent, Campaign
from tests.conftest import bearer, count

TEMPLATES = {
    "parentheses": "{{ " + "(" * 600 + "1" + ")" * 600 + " }}",
    "ifs": "{% if true %}" * 120 + "x" + "{% endif %}" * 120,
    "fors": "{% for a in [1] %}" * 25 + "x" + "{% endfor %}" * 25,
    "filters": "{{ 'x'" + "|upper" * 3000 + " }}",
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_a_deeply_nested_template_is_a_422(client, marketing_key, db, name):
    response = client.post(
        "/api/v1/campaigns",
        json={"topic": "offers", "subject": "S", "text": TEMPLATES[name]},
        headers=bearer(marketing_key),
    )
    assert response.status_code == 422, response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert body["errors"][0]["field"] == "text"
    assert "nested" in body["errors"][0]["detail"]
    assert count(db, Campaign.id) == 0


def deep_multipart(depth: int) -> bytes:
    head = "From: a@example.org\nTo: b@example.org\nSubject: deep\nMIME-Version: 1.0\n"
    parts = [head]
    for i in range(depth):
        parts.append(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n')
    parts.append("Content-Type: text/plain\n\nhello\n")
    for i in reversed(range(depth)):
        parts.append(f"--b{i}--\n")
    return "".join(parts).encode()


@pytest.mark.parametrize(
    "raw",
    [b"Subject: hi", b"Subject: hi\n\n", deep_multipart(3000)],
    ids=["bare-subject", "subject-and-blank-body", "3000-deep-multipart"],
)
def test_a_pathological_raw_report_is_a_422(client, ops_key, db, raw):
    response = client.post(
        "/api/v1/events/bounces",
        data=raw,
        content_type="message/rfc822",
        headers=bearer(ops_key),
    )
    assert response.status_code == 422, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["errors"][0]["field"] == "body"
    assert count(db, BounceEvent.id) == 0
