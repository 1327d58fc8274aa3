"""VERP return paths name the delivery (signed), so a bounce by mail is matched to its
delivery and recipient without trusting the DSN's text; a forged token is recorded and
ignored. Marketing mail carries a Feedback-ID, covered by DKIM."""

from __future__ import annotations

import email
import email.policy

import pytest
from sqlalchemy import select

from mailprefs.config import ConfigError
from mailprefs.delivery.message import MessageBuilder, message_settings
from mailprefs.delivery.worker import Worker
from mailprefs.domain import suppression, verp
from mailprefs.domain.addresses import address_hash
from mailprefs.domain.models import AuditEntry, Subscriber
from mailprefs.domain.outbox_models import BounceEvent, Delivery
from tests.conftest import bearer
from tests.reputation.support import start_campaign
from tests.support import mail
from tests.support.factories import HASH_KEY

BOUNCE_DOMAIN = "bounces.example.test"

DSN = """\
Return-Path: <>
Date: Tue, 01 Dec 2026 10:15:04 +0000
From: MAILER-DAEMON@mx1.relay.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx1.relay.example.net

{recipient}Action: failed
Status: 5.1.1

--b1--
"""


@pytest.fixture
def app_config(sink):
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": sink.port,
        "MAILPREFS_BOUNCE_DOMAIN": BOUNCE_DOMAIN,
    }


def _sent(app, db, sink, n=3) -> dict[str, tuple[str, int]]:
    """Send a campaign to n people; {address: (envelope sender, delivery id)}."""
    addresses = [f"v{i}@example.com" for i in range(n)]
    campaign_id = start_campaign(db, addresses)
    Worker(app).run_due()
    with db.session(read_only=True) as s:
        ids = dict(
            s.execute(
                select(Subscriber.email, Delivery.id)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .where(Delivery.campaign_id == campaign_id)
            ).all()
        )
    return {rcpts[0]: (envelope, ids[rcpts[0]]) for envelope, rcpts, _raw in sink.messages}


def test_the_envelope_sender_is_a_signed_verp_address_naming_the_delivery(app, db, sink):
    sent = _sent(app, db, sink)
    addresses = verp.addresses_for(app.config)
    for envelope, delivery_id in sent.values():
        local, _, domain = envelope.partition("@")
        assert domain == BOUNCE_DOMAIN and local.startswith("bounces+") and len(local) <= 64
        token = local.removeprefix("bounces+")
        assert addresses.delivery_id(token) == delivery_id
        assert addresses.delivery_id(token.upper()) == delivery_id, "case folding is harmless"
    # The From header is untouched: only the envelope (Return-Path) changes.
    raw = sink.messages[0][2]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert BOUNCE_DOMAIN not in str(parsed["From"])


def test_a_dsn_to_a_verp_address_is_matched_to_its_delivery_not_to_its_text(
    app, client, db, sink, ops_key
):
    """The DSN names another address (a forwarder rewrote it), and a second one names
    none at all: both bounce the person the VERP token names, against that delivery."""
    sent = _sent(app, db, sink)
    (victim, (envelope, delivery_id)), (other, (envelope2, delivery2)) = list(sent.items())[:2]
    lying = DSN.format(to=envelope, recipient="Final-Recipient: rfc822; someone@elsewhere.test\n")
    silent = DSN.format(to=envelope2, recipient="")
    for raw in (lying, silent):
        reply = client.post(
            "/api/v1/events/bounces",
            data=raw.encode(),
            headers={**bearer(ops_key), "Content-Type": "message/rfc822"},
        )
        assert reply.status_code == 202, reply.get_json()
        assert reply.get_json()["hard"] == 1
    with db.session(read_only=True) as s:
        rows = s.execute(select(BounceEvent.delivery_id, BounceEvent.kind)).all()
        assert sorted(r[0] for r in rows) == sorted([delivery_id, delivery2])
        for address in (victim, other):
            assert suppression.active(s, address_hash(address, HASH_KEY)) is not None
        assert suppression.active(s, address_hash("someone@elsewhere.test", HASH_KEY)) is None


def test_a_forged_verp_token_is_recorded_and_ignored(app, client, db, sink, ops_key):
    sent = _sent(app, db, sink)
    victim, (envelope, _delivery_id) = next(iter(sent.items()))
    local, _, domain = envelope.partition("@")
    forged_local = local[:-1] + ("a" if local[-1] != "a" else "b")
    raw = DSN.format(to=f"{forged_local}@{domain}", recipient="")
    reply = client.post(
        "/api/v1/events/bounces",
        data=raw.encode(),
        headers={**bearer(ops_key), "Content-Type": "message/rfc822"},
    )
    assert reply.status_code == 202 and reply.get_json()["ignored"] == 1
    assert reply.get_json()["hard"] == 0
    with db.session(read_only=True) as s:
        assert s.scalar(select(BounceEvent.id)) is None
        assert suppression.active(s, address_hash(victim, HASH_KEY)) is None
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == verp.FORGED_ACTION))
        assert entry is not None and victim not in str(entry.detail)


def test_marketing_mail_carries_a_feedback_id_and_administrative_mail_none():
    builder = MessageBuilder(
        mail.settings(feedback_sender_id="icvt-news"), mail.tokens(), mail.marketing()
    )
    parsed = mail.parse(builder.build(mail.recipient()))
    assert parsed["Feedback-ID"] == "cmp_marketing1:offers:marketing:icvt-news"
    admin = MessageBuilder(mail.settings(), mail.tokens(), mail.administrative())
    assert mail.parse(admin.build(mail.recipient()))["Feedback-ID"] is None


def test_a_bad_feedback_sender_id_or_bounce_domain_is_a_config_error(app):
    for name, value in (
        ("MAILPREFS_FEEDBACK_SENDER_ID", "bad:id"),
        ("MAILPREFS_BOUNCE_DOMAIN", "not a domain"),
    ):
        with pytest.raises(ConfigError, match=name):
            message_settings({**app.config, name: value})
