"""Issue 12 item 1 and issue 13 finding 3: after an erasure the address is nowhere in
the database, whichever path stored it and however it was spelled (Unicode or punycode
domain, a local part of two characters), and no captured copy of mail to it is left."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import complaints, suppression
from mailprefs.domain.models import Suppression
from mailprefs.domain.outbox_models import BounceEvent, Complaint, Delivery
from mailprefs.extensions import get_tokens
from tests.conftest import _key, bearer
from tests.support.smtp_sink import SmtpSink, _Handler

ADDRESS = "jo@bücher.example"
PUNY = "jo@xn--bcher-kva.example"
SAMPLES = Path(__file__).parents[1] / "bounces" / "samples"


class _QuotingRelay(_Handler):
    """A relay that refuses ADDRESS, quoting it: first 451 (try later), then 550."""

    tries = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.lower() in (PUNY, ADDRESS):
            _QuotingRelay.tries += 1
            if _QuotingRelay.tries == 1:
                return f"451 4.2.1 <{address.upper()}>: mailbox for jo busy, try later"
            return f"550 5.1.1 <{address}>: Recipient address rejected; user jo unknown"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@pytest.fixture
def sink():
    running = SmtpSink()
    running._handler = _QuotingRelay(running)
    _QuotingRelay.tries = 0
    with running:
        yield running


@pytest.fixture
def app_config(sink):
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port}


def test_redact_removes_every_spelling_and_short_local_parts():
    text = (
        f"550 <{PUNY.upper()}>: rejected; <{ADDRESS}>... User unknown; user jo unknown; "
        'addressed "jo" on a journey'
    )
    from mailprefs.domain.addresses import forms, redact

    assert forms(ADDRESS) == {ADDRESS, PUNY}
    redacted = redact(text, ADDRESS)
    assert "jo@" not in redacted.lower() and "user jo " not in redacted
    assert '"jo"' not in redacted and "journey" in redacted  # words stay


def _database_bytes(app, database_url: str) -> bytes:
    """Everything the database holds: the SQLite file and its -wal, or a pg_dump."""
    if database_url.startswith("sqlite"):
        path = Path(make_url(database_url).database)
        wal = Path(f"{path}-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    url = make_url(database_url)
    env = {"PGPASSWORD": url.password or ""}
    return subprocess.run(
        [
            "pg_dump",
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            "--data-only",
            url.database,
        ],
        check=True,
        capture_output=True,
        env=env,
    ).stdout


def _spellings() -> list[bytes]:
    found = []
    for form in (ADDRESS, PUNY):
        found += [form.encode(), form.encode("unicode_escape").replace(b"\\x", b"\\u00")]
    return found


def _holds_address(blob: bytes) -> list[bytes]:
    lowered = blob.lower()
    return [s for s in _spellings() if s.lower() in lowered]


def _sample(name: str, old: str) -> bytes:
    return (SAMPLES / name).read_bytes().replace(old.encode(), PUNY.encode())


def test_erasure_leaves_the_address_nowhere_in_the_database(
    client, db, app, sink, ops_key, database_url
):
    transactional = _key(db, "transactional")
    # API create (ops sees the address back; the answer is stored for Idempotency-Key).
    created = client.post(
        "/api/v1/subscribers",
        json={"email": ADDRESS, "consents": [{"topic": "offers", "source": "api"}]},
        headers={**bearer(ops_key), "Idempotency-Key": "create-jo"},
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    public_id = created.get_json()["id"]
    # Transactional send by address, quoting it in its subject and body.
    sent = client.post(
        "/api/v1/messages",
        json={
            "topic": "account",
            "to": ADDRESS,
            "subject": f"Your account {ADDRESS}",
            "text": f"You log in as {ADDRESS} ({PUNY}).",
        },
        headers={**bearer(transactional), "Idempotency-Key": "welcome-jo"},
    )
    assert sent.status_code == 202, sent.get_data(as_text=True)
    # The relay refuses it quoting the address: 451 first (retried), then 550.
    Worker(app).run_due()
    clock.freeze(clock.now() + timedelta(days=1))
    Worker(app).run_due()
    assert _QuotingRelay.tries == 2
    # The report page, with the person quoting their own address.
    report = client.post(
        f"/preferences/{get_tokens().preferences(public_id, None)}",
        data={"action": "report", "detail": f"I am {ADDRESS}, stop this"},
    )
    assert report.status_code == 303
    # Staff lift the bounce suppression with a note quoting the address (audited), and
    # resolve the complaint quoting it.
    with db.transaction() as s:
        bounce = s.scalar(select(Suppression).where(Suppression.source == "smtp"))
        suppression.lift(s, bounce.id, actor="user:1", reason=f"{ADDRESS} says it works now")
        complaint = s.scalar(select(Complaint))
        complaints.resolve(s, complaint, actor="user:1", resolution=f"told {PUNY}")
    # JSON bounce and complaint, a raw DSN and an ARF report, all quoting the address.
    events = {
        "events": [
            {
                "type": "bounce",
                "bounce": "soft",
                "email": ADDRESS,
                "diagnostic": f"452 <{PUNY}> over quota",
            },
            {"type": "complaint", "email": PUNY},
        ]
    }
    assert (
        client.post("/api/v1/events/bounces", json=events, headers=bearer(ops_key)).status_code
        == 202
    )
    for name, old in (
        ("dsn_hard_user_unknown.eml", "jane.doe@example.org"),
        ("arf_abuse.eml", "complainer@example.com"),
    ):
        answer = client.post(
            "/api/v1/events/bounces",
            data=_sample(name, old),
            content_type="message/rfc822",
            headers=bearer(ops_key),
        )
        assert answer.status_code == 202, answer.get_data(as_text=True)
    # An import naming the address: a consent whose evidence (source_detail) quotes it,
    # an attribute quoting it, and a second row for it whose bad attribute is reported.
    upload = (
        "email,topics,consent_at,source,source_detail,attr.note\n"
        f'{ADDRESS},newsletter,2025-01-02T10:00:00Z,web_form,"form, as {ADDRESS}","I am {ADDRESS}"\n'
        f'{PUNY},newsletter,2025-01-02T10:00:00Z,web_form,form,"{ADDRESS}\x00"\n'
    )
    imported = client.post(
        "/api/v1/imports", data=upload, content_type="text/csv", headers=bearer(ops_key)
    )
    assert imported.status_code == 202, imported.get_data(as_text=True)
    Worker(app).run_due()
    done = client.get(f"/api/v1/imports/{imported.get_json()['id']}", headers=bearer(ops_key))
    assert done.get_json()["status"] == "done", done.get_data(as_text=True)
    with db.session(read_only=True) as s:
        # Every path was taken; what bounces.py wrote is redacted already.
        assert sorted(b.source for b in s.scalars(select(BounceEvent))) == ["dsn", "json", "smtp"]
        assert sorted(c.source for c in s.scalars(select(Complaint))) == [
            "arf",
            "json",
            "preference_page",
        ]
        (delivery,) = s.scalars(select(Delivery)).all()
        assert delivery.reason == "rejected_recipient" and "<recipient>" in delivery.last_error
        evidence = [x.evidence for x in s.scalars(select(Suppression).order_by(Suppression.id))]
        assert "<recipient>" in evidence[0]["diagnostic"] and "jo@" not in str(evidence).lower()
    # Before: the address is held (the person's row at least), so the search works.
    assert _holds_address(_database_bytes(app, database_url))

    erased = client.delete(f"/api/v1/subscribers/{public_id}", headers=bearer(ops_key))
    assert erased.status_code == 204
    assert _holds_address(_database_bytes(app, database_url)) == []
    with db.session(read_only=True) as s:
        assert s.scalars(select(Suppression)).all()  # the hash stays suppressed
