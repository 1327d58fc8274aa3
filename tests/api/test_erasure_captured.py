"""Issue 13 finding 3: erasure deletes the captured copies of mail to the person."""

from __future__ import annotations

from mailprefs.delivery.transport import captured_files
from mailprefs.delivery.worker import Worker
from tests.api.test_erasure_forgets import ADDRESS, _spellings
from tests.conftest import bearer


def test_erasure_deletes_captured_mail_to_the_person(app, db, ops_key):
    """Captured .eml files addressed to the person go too; others' stay."""
    client = app.test_client()
    ids = {}
    for address in (ADDRESS, "other@example.com"):
        ids[address] = client.post(
            "/api/v1/subscribers",
            json={"email": address, "consents": [{"topic": "offers", "source": "api"}]},
            headers=bearer(ops_key),
        ).get_json()["id"]
        client.post(
            "/api/v1/messages",
            json={"topic": "account", "to": address, "subject": "Hi", "text": "Hello"},
            headers=bearer(ops_key),
        )
    Worker(app).run_due()
    folder = app.config["MAILPREFS_MAIL_CAPTURE_DIR"]
    assert len(captured_files(folder)) == 2
    assert (
        client.delete(f"/api/v1/subscribers/{ids[ADDRESS]}", headers=bearer(ops_key)).status_code
        == 204
    )
    left = captured_files(folder)
    assert len(left) == 1
    assert all(s not in left[0].read_bytes().lower() for s in _spellings())
