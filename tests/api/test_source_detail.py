"""`source_detail` (which form, event, page or wording) is kept with every consent and
shown in the person's export."""

from __future__ import annotations

from mailprefs.extensions import get_tokens
from tests.conftest import bearer
from tests.prefs.support import ONE_CLICK, make_person


def test_api_consent_keeps_its_source_detail_and_the_export_shows_it(
    client, marketing_key, ops_key
):
    """A consent posted with `source_detail` carries it in the ledger, the person's detail
    and the export; one without it has null."""
    body = {
        "email": "detail@example.com",
        "consents": [
            {"topic": "offers", "source": "web_form", "source_detail": "footer form, v2 wording"},
            {"topic": "newsletter", "source": "web_form"},
        ],
    }
    reply = client.post("/api/v1/subscribers", json=body, headers=bearer(marketing_key))
    assert reply.status_code == 201
    public_id = reply.get_json()["id"]
    exported = client.get(
        f"/api/v1/subscribers/{public_id}/export", headers=bearer(ops_key)
    ).get_json()
    by_topic = {e["topic"]: e for e in exported["consent_events"]}
    assert by_topic["offers"]["source_detail"] == "footer form, v2 wording"
    assert by_topic["newsletter"]["source_detail"] is None
    change = client.post(
        f"/api/v1/subscribers/{public_id}/consents",
        json={"topic": "offers", "action": "opt_out", "source": "staff", "source_detail": "call"},
        headers=bearer(ops_key),
    )
    assert change.status_code == 201
    detail = client.get(f"/api/v1/subscribers/{public_id}", headers=bearer(ops_key)).get_json()
    assert detail["consent_history"][-1]["source_detail"] == "call"


def test_source_detail_with_a_line_break_or_too_long_is_refused(client, marketing_key):
    """A CR/LF in `source_detail`, or more than 1000 characters, answers 422 naming it."""
    for bad in ("line\r\nbreak", "x" * 1001):
        body = {
            "email": "bad-detail@example.com",
            "consents": [{"topic": "offers", "source": "web_form", "source_detail": bad}],
        }
        reply = client.post("/api/v1/subscribers", json=body, headers=bearer(marketing_key))
        assert reply.status_code == 422
        assert reply.get_json()["errors"][0]["field"] == "consents.0.source_detail"


def test_recipient_pages_name_their_own_page_in_the_evidence(client, db, ops_key):
    """A one-click opt-out records the page's rule (never the token) as its source_detail."""
    public_id = make_person(db, "page@example.com", opted_in=("offers",))
    token = get_tokens().unsubscribe(public_id, "offers", None)
    assert client.post(f"/u/{token}", data=ONE_CLICK).status_code == 200
    detail = client.get(f"/api/v1/subscribers/{public_id}", headers=bearer(ops_key)).get_json()
    last = detail["consent_history"][-1]
    assert last["action"] == "opt_out"
    assert last["source_detail"] == "POST /u/<token>"
    assert token not in str(detail)
