"""Bounces by mail: `mailprefs fetch-bounces` and the scheduler's job read a real Dovecot
(its own instance, IMAPS with a self-signed certificate), record each DSN and ARF report
through the same ingestion as the HTTP endpoint, delete only what was recorded and move
the rest aside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailprefs.delivery.mailbox import BounceMailbox
from mailprefs.delivery.worker import Worker
from mailprefs.domain import suppression, verp
from mailprefs.domain.addresses import address_hash
from mailprefs.domain.models import AuditEntry, Subscriber
from mailprefs.domain.outbox_models import BounceEvent, Complaint, Delivery
from mailprefs.extensions import get_db
from mailprefs.scheduling import jobs
from mailprefs.scheduling.leader import Leadership
from tests.reputation.support import start_campaign
from tests.reputation.test_verp_feedback import BOUNCE_DOMAIN, DSN
from tests.support import dovecot as dovecot_support
from tests.support.factories import HASH_KEY

SAMPLES = Path(__file__).resolve().parents[1] / "bounces" / "samples"
ASIDE = "mailprefs-unprocessed"
SPAM = b"From: winner@lottery.example\r\nTo: bounces@bounces.example.test\r\nSubject: You won\r\n\r\nClaim your prize.\r\n"


@pytest.fixture
def imap_server():
    if not dovecot_support.available():
        if os.environ.get("MAILPREFS_REQUIRE_DOVECOT") == "1":
            pytest.fail("dovecot is required (apt-get install dovecot-imapd)")
        pytest.skip("dovecot-imapd is not installed")
    with dovecot_support.Dovecot() as server:
        yield server


@pytest.fixture
def app_config(sink, imap_server):
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": sink.port,
        "MAILPREFS_BOUNCE_DOMAIN": BOUNCE_DOMAIN,
        "MAILPREFS_BOUNCE_IMAP_URL": imap_server.url,
        "MAILPREFS_BOUNCE_IMAP_CA_FILE": imap_server.ca_file,
    }


def _sent(app, db, sink) -> dict[str, str]:
    """A campaign to three people; {address: VERP envelope sender}."""
    start_campaign(db, [f"m{i}@example.com" for i in range(3)])
    Worker(app).run_due()
    return {rcpts[0]: envelope for envelope, rcpts, _raw in sink.messages}


def _bounce_for(envelope: str) -> bytes:
    return DSN.format(to=envelope, recipient="").replace("\n", "\r\n").encode()


def test_fetch_bounces_records_reports_deletes_them_and_sets_the_rest_aside(
    app, db, sink, imap_server, runner
):
    """In the mailbox: a DSN to a VERP address, an ARF report about an address never
    mailed, a forged VERP bounce, and spam. The two reports are recorded and deleted; the
    forged bounce (recorded in the audit log) and the spam are moved aside, not lost."""
    sent = _sent(app, db, sink)
    bounced, envelope = next(iter(sent.items()))
    local, _, domain = envelope.partition("@")
    forged = f"{local[:-1]}{'b' if local[-1] == 'a' else 'a'}@{domain}"
    for raw in (
        _bounce_for(envelope),
        (SAMPLES / "arf_abuse.eml").read_bytes(),
        _bounce_for(forged),
        SPAM,
    ):
        imap_server.deliver(raw)

    result = runner.invoke(args=["mailprefs", "fetch-bounces"])
    assert result.exit_code == 0, result.output
    assert "recorded 2, duplicates 0, set aside 2, errors 0" in result.output
    assert imap_server.folder("INBOX") == []
    aside = imap_server.folder(ASIDE)
    assert len(aside) == 2 and any(b"You won" in m for m in aside)
    with db.session(read_only=True) as s:
        (event,) = s.scalars(select(BounceEvent)).all()
        delivery = s.get(Delivery, event.delivery_id)
        assert s.get(Subscriber, delivery.subscriber_id).email == bounced
        assert suppression.active(s, address_hash(bounced, HASH_KEY)) is not None
        complaint = s.scalar(select(Complaint))
        assert complaint.email_hash == address_hash("complainer@example.com", HASH_KEY)
        assert s.scalar(select(AuditEntry).where(AuditEntry.action == verp.FORGED_ACTION))

    again = runner.invoke(args=["mailprefs", "fetch-bounces"])
    assert "recorded 0, duplicates 0, set aside 0, errors 0" in again.output
    assert len(imap_server.folder(ASIDE)) == 2


def test_a_message_recorded_but_not_yet_deleted_is_not_recorded_twice(app, db, sink, imap_server):
    """A crash after the commit and before the delete: the next run finds the message
    again, records nothing new, and deletes it."""
    sent = _sent(app, db, sink)
    raw = _bounce_for(next(iter(sent.values())))
    box = BounceMailbox(get_db(app), app.config)
    from mailprefs.delivery.mailbox import FetchSummary

    assert box._record(raw, FetchSummary()) == "recorded"  # the commit, then the "crash"
    imap_server.deliver(raw)
    summary = box.fetch()
    assert (summary.recorded, summary.duplicates) == (0, 1)
    assert imap_server.folder("INBOX") == []
    with db.session(read_only=True) as s:
        assert s.scalar(select(func.count(BounceEvent.id))) == 1


def test_the_scheduler_job_reads_the_mailbox(app, db, sink, imap_server):
    sent = _sent(app, db, sink)
    imap_server.deliver(_bounce_for(next(iter(sent.values()))))

    class Runtime:
        def __init__(self) -> None:
            self.app, self.db = app, get_db(app)
            self.leadership = Leadership(self.db, seconds=600, holder="test-leader")

    runtime = Runtime()
    assert runtime.leadership.acquire()
    jobs.install(runtime)
    try:
        assert jobs.fetch_bounces_job() == 1
    finally:
        jobs.install(None)
    assert imap_server.folder("INBOX") == []


def test_a_mailbox_that_cannot_be_read_is_a_clear_error_and_changes_nothing(
    app, db, imap_server, runner
):
    for url, expected in (
        (imap_server.url.replace("bounce-box-password", "wrong"), "cannot read"),
        ("imaps://bounces:pw@127.0.0.1:1/INBOX", "cannot read"),
        ("http://example.test/", "MAILPREFS_BOUNCE_IMAP_URL must be"),
        (imap_server.url.replace("/INBOX", "/Nope"), "cannot read"),
    ):
        app.config["MAILPREFS_BOUNCE_IMAP_URL"] = url
        result = runner.invoke(args=["mailprefs", "fetch-bounces"])
        assert result.exit_code == 2, (url, result.output)
        assert expected in result.output and "bounce-box-password" not in result.output
        assert "Traceback" not in result.output
    # Without TLS verification passing (no CA for the self-signed cert): refused.
    app.config["MAILPREFS_BOUNCE_IMAP_URL"] = imap_server.url
    app.config["MAILPREFS_BOUNCE_IMAP_CA_FILE"] = None
    result = runner.invoke(args=["mailprefs", "fetch-bounces"])
    assert result.exit_code == 2 and "certificate" in result.output.lower()
