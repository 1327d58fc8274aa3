"""`/api/v1/imports`: upload (streamed to disk, 413 above the limit, checked whole),
Idempotency-Key, the worker runs it, status, error report, cancel; ops only."""

from __future__ import annotations

import csv
import io
import os

import pytest

from mailprefs.delivery.worker import Worker
from tests.conftest import bearer
from tests.imports.support import everything

CSV = (
    "email,topics,consent_at,source,attr.plan\n"
    "ann@example.com,offers,2025-01-02T10:00:00Z,web_form,gold\n"
    "bob@example.com,offers,,,\n"
    "broken,offers,2025-01-02T10:00:00Z,web_form,\n"
)


def post(client, key, body, content_type="text/csv", query="", headers=None):
    return client.post(
        f"/api/v1/imports{query}",
        data=body,
        content_type=content_type,
        headers={**bearer(key), **(headers or {})},
    )


@pytest.fixture
def app_config(tmp_path):
    return {"MAILPREFS_IMPORT_MAX_BYTES": 4096, "MAILPREFS_IMPORT_DIR": str(tmp_path / "up")}


def test_an_upload_is_queued_run_by_the_worker_and_reported(app, client, ops_key):
    """202 with an id; the worker (run-due) runs it; GET gives status, counts and errors;
    /errors gives the full report as CSV."""
    reply = post(client, ops_key, CSV)
    assert reply.status_code == 202
    created = reply.get_json()
    assert created["status"] == "queued" and set(created) == {"id", "status"}
    assert everything(app.extensions["mailprefs.db"])["people"] == []  # never in the request
    Worker(app).run_due()
    status = client.get(f"/api/v1/imports/{created['id']}", headers=bearer(ops_key)).get_json()
    assert status["status"] == "done" and status["kind"] == "subscribers"
    assert status["counts"] == {
        "rows": 3,
        "created": 2,
        "updated": 0,
        "consents": 1,
        "opt_outs": 0,
        "no_evidence": 1,
        "erased": 0,
        "suppressed": 0,
        "duplicates": 0,
        "invalid": 1,
    }
    assert status["errors"] == [
        {"line": 4, "field": "email", "detail": status["errors"][0]["detail"]}
    ]
    report = client.get(f"/api/v1/imports/{created['id']}/errors", headers=bearer(ops_key))
    assert report.status_code == 200 and report.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(report.get_data(as_text=True))))
    assert rows[0] == ["line", "field", "detail"] and rows[1][:2] == ["4", "email"]
    assert os.listdir(app.config["MAILPREFS_IMPORT_DIR"]) == []  # the upload is not kept


def test_idempotency_key_returns_the_first_import_and_refuses_another_file(client, ops_key):
    """The same key and file: the first import's id. The same key, another file: 409."""
    key = {"Idempotency-Key": "nightly-2026-12-01"}
    first = post(client, ops_key, CSV, headers=key)
    again = post(client, ops_key, CSV, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    other = post(client, ops_key, CSV + "zed@example.com,,,,\n", headers=key)
    assert other.status_code == 409
    assert other.mimetype == "application/problem+json"


def test_a_body_above_the_configured_limit_answers_413_and_keeps_nothing(
    app, client, ops_key, tmp_path
):
    """A body over MAILPREFS_IMPORT_MAX_BYTES answers 413; no file is left, nothing queued."""
    big = "email\n" + "".join(f"person{i}@example.com\n" for i in range(400))
    assert len(big) > 4096
    reply = post(client, ops_key, big)
    assert reply.status_code == 413 and reply.mimetype == "application/problem+json"
    folder = tmp_path / "up"
    assert not folder.exists() or os.listdir(folder) == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"email,topic\n\xff\xfe@example.com,offers\n", "line 2 is not UTF-8"),
        (b"name,plan\nAnn,gold\n", "no 'email' column"),
        (b"email,email\na@example.com,b@example.com\n", "appears twice"),
    ],
)
def test_a_file_that_cannot_be_imported_answers_422_naming_the_line(
    app, client, ops_key, tmp_path, body, words
):
    """The whole file is checked before it is queued: 422 with the line, nothing kept."""
    reply = post(client, ops_key, body)
    assert reply.status_code == 422
    problem = reply.get_json()
    assert words in problem["detail"] and problem["errors"][0]["line"] in ("1", "2")
    assert os.listdir(tmp_path / "up") == []


def test_wrong_type_role_or_query_is_refused(client, ops_key, marketing_key):
    """415 for a JSON body, 403 for a marketing key, 422 for an unknown kind or flag."""
    assert post(client, ops_key, '{"a": 1}', content_type="application/json").status_code == 415
    assert post(client, marketing_key, CSV).status_code == 403
    assert post(client, ops_key, CSV, query="?kind=people").status_code == 422
    assert post(client, ops_key, CSV, query="?dry_run=perhaps").status_code == 422
    assert client.get("/api/v1/imports/nope", headers=bearer(ops_key)).status_code == 404


def test_cancel_stops_a_queued_import_and_refuses_a_finished_one(app, client, ops_key):
    """Cancelling a queued import: cancelled, the worker writes nothing. A finished one: 409."""
    db = app.extensions["mailprefs.db"]
    queued = post(client, ops_key, CSV).get_json()["id"]
    reply = client.post(f"/api/v1/imports/{queued}/cancel", headers=bearer(ops_key))
    assert reply.status_code == 200 and reply.get_json()["status"] == "cancelled"
    assert os.listdir(app.config["MAILPREFS_IMPORT_DIR"]) == []
    Worker(app).run_due()
    assert everything(db)["people"] == []
    done = post(client, ops_key, CSV, query="?dry_run=true").get_json()["id"]
    Worker(app).run_due()
    assert client.post(f"/api/v1/imports/{done}/cancel", headers=bearer(ops_key)).status_code == 409
    assert everything(db)["people"] == []  # a dry run


def test_suppression_import_through_the_api(app, client, ops_key):
    """?kind=suppressions fills the suppression list and registers nobody."""
    reply = post(
        client, ops_key, "email,reason\nx@example.com,bounce\n", query="?kind=suppressions"
    )
    assert reply.status_code == 202
    Worker(app).run_due()
    status = client.get(f"/api/v1/imports/{reply.get_json()['id']}", headers=bearer(ops_key))
    assert status.get_json()["counts"]["created"] == 1
    state = everything(app.extensions["mailprefs.db"])
    assert state["people"] == [] and len(state["suppressions"]) == 1


def test_the_openapi_document_describes_the_import_routes(client):
    document = client.get("/api/v1/openapi.json").get_json()
    post_op = document["paths"]["/api/v1/imports"]["post"]
    assert set(post_op["requestBody"]["content"]) == {"text/csv", "application/x-ndjson"}
    assert {p["name"] for p in post_op["parameters"]} >= {"kind", "dry_run", "Idempotency-Key"}
    assert "413" in post_op["responses"] and "202" in post_op["responses"]
    for path in ("/api/v1/imports/{public_id}", "/api/v1/imports/{public_id}/errors"):
        assert "get" in document["paths"][path]
    assert "post" in document["paths"]["/api/v1/imports/{public_id}/cancel"]
