"""Issue 13 finding 6: a raw DSN is capped at 500 recipients as the JSON path is, and what
it records is written in short transactions, so one-click unsubscribes never wait long
behind it."""

from __future__ import annotations

from sqlalchemy import event

from mailprefs.domain.outbox_models import BounceEvent
from tests.conftest import bearer, count

URL = "/api/v1/events/bounces"


def big_dsn(recipients: int) -> bytes:
    blocks = "".join(
        f"\nFinal-Recipient: rfc822; user{i}@example.org\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <user{i}@example.org>: user unknown\n"
        for i in range(recipients)
    )
    return (
        "From: MAILER-DAEMON@relay.example.net\n"
        "To: bounces@mail.example.com\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Date: Thu, 26 Nov 2026 10:00:00 +0000\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nSome mail could not be delivered.\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; relay.example.net\n"
        f"{blocks}\n--B--\n"
    ).encode()


def post(client, key, raw):
    return client.post(URL, data=raw, content_type="message/rfc822", headers=bearer(key))


def test_a_dsn_with_more_than_500_recipients_is_refused_and_nothing_stored(db, client, ops_key):
    answer = post(client, ops_key, big_dsn(501))
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.mimetype == "application/problem+json"
    assert "500" in answer.get_json()["errors"][0]["detail"]
    assert count(db, BounceEvent.id) == 0


def test_a_500_recipient_dsn_is_recorded_in_bounded_transactions(db, client, ops_key):
    commits = []
    listener = lambda connection: commits.append(1)  # noqa: E731
    event.listen(db.engine, "commit", listener)
    try:
        answer = post(client, ops_key, big_dsn(500))
    finally:
        event.remove(db.engine, "commit", listener)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.get_json()["hard"] == 500 and count(db, BounceEvent.id) == 500
    assert len(commits) >= 5  # at most 100 recipients written per transaction
