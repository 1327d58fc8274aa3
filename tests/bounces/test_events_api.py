"""POST /api/v1/events/bounces: JSON events, raw DSNs and ARF reports become suppressions,
bounce evidence and complaints; bad input stores nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain import campaigns, suppression
from mailprefs.domain.addresses import address_hash
from mailprefs.domain.models import (
    AuditEntry,
    ConsentEvent,
    IdempotencyRecord,
    Suppression,
    SuppressionReason,
    TopicState,
)
from mailprefs.domain.outbox_models import (
    BounceEvent,
    BounceKind,
    Complaint,
    Delivery,
    DeliveryStatus,
)
from mailprefs.domain.topics import get_topic
from mailprefs.web.api.events import sign
from tests.bounces.conftest import WEBHOOK_SECRET
from tests.bounces.test_dsn import sample
from tests.conftest import bearer, count
from tests.support.factories import HASH_KEY, person

URL = "/api/v1/events/bounces"


def post_json(client, key, body, **headers):
    return client.post(URL, json=body, headers={**bearer(key), **headers})


def post_raw(client, key, raw):
    return client.post(URL, data=raw, content_type="message/rfc822", headers=bearer(key))


def hashed(address):
    return address_hash(address, HASH_KEY)


def active_reason(db, address):
    with db.session(read_only=True) as s:
        row = suppression.active(s, hashed(address))
        return row.reason if row else None


def test_a_hard_bounce_suppresses_the_address_and_is_evidence_on_the_person(db, client, ops_key):
    """Promise: hard bounce -> bounce suppression + a BounceEvent linked to the person."""
    with db.transaction() as s:
        jane = person(s, "jane@example.com", opted_in=("offers",))
        jane_id = jane.id
    reply = post_json(
        client,
        ops_key,
        {
            "events": [
                {
                    "type": "bounce",
                    "bounce": "hard",
                    "email": "Jane@Example.com",
                    "diagnostic": "550 5.1.1 <jane@example.com> user unknown",
                }
            ]
        },
    )
    assert reply.status_code == 202, reply.json
    assert reply.json == {"hard": 1, "soft": 0, "complaints": 0, "suppressed": 1, "ignored": 0}
    assert active_reason(db, "jane@example.com") == SuppressionReason.BOUNCE
    with db.session(read_only=True) as s:
        (event,) = s.scalars(select(BounceEvent)).all()
        assert event.subscriber_id == jane_id and event.kind == BounceKind.HARD
        assert event.source == "json"
        # The diagnostic is kept without the address it quoted.
        assert "jane@example.com" not in event.diagnostic.lower()
        assert "<recipient>" in event.diagnostic


def test_an_unknown_address_is_suppressed_by_its_hash_anyway(db, client, ops_key):
    """Promise: a bounce for an address nobody registered still suppresses it."""
    reply = post_json(
        client,
        ops_key,
        {"events": [{"type": "bounce", "bounce": "hard", "email": "nobody@example.net"}]},
    )
    assert reply.status_code == 202
    assert active_reason(db, "nobody@example.net") == SuppressionReason.BOUNCE
    with db.session(read_only=True) as s:
        event = s.scalar(select(BounceEvent))
        assert event.subscriber_id is None and event.email_hash == hashed("nobody@example.net")


def test_soft_bounces_suppress_only_at_the_threshold_within_the_window(db, client, ops_key):
    """Promise: N soft bounces within M days suppress (3 in 7 here); older ones do not count."""
    soft = {"type": "bounce", "bounce": "soft", "email": "flaky@example.com"}
    old = (clock.now() - timedelta(days=8)).isoformat()
    assert post_json(client, ops_key, {"events": [{**soft, "at": old}]}).status_code == 202
    for _ in range(2):
        reply = post_json(client, ops_key, {"events": [soft]})
        assert reply.json["suppressed"] == 0
    assert active_reason(db, "flaky@example.com") is None  # 2 recent + 1 too old
    reply = post_json(client, ops_key, {"events": [soft]})
    assert reply.json == {"hard": 0, "soft": 1, "complaints": 0, "suppressed": 1, "ignored": 0}
    assert active_reason(db, "flaky@example.com") == SuppressionReason.BOUNCE
    with db.session(read_only=True) as s:
        row = suppression.active(s, hashed("flaky@example.com"))
        assert row.evidence["soft_bounces"] == 3 and row.evidence["days"] == 7


def test_soft_bounces_before_a_lift_do_not_count_again(db, client, ops_key):
    """Promise: after a bounce suppression is lifted, the count starts afresh."""
    soft = {"type": "bounce", "bounce": "soft", "email": "flaky@example.com"}
    post_json(client, ops_key, {"events": [soft, soft, soft]})
    with db.transaction() as s:
        row = suppression.active(s, hashed("flaky@example.com"))
        suppression.lift(s, row.id, actor="user:1", reason="the mailbox was emptied")
    clock.advance(timedelta(minutes=1))
    reply = post_json(client, ops_key, {"events": [soft]})
    assert reply.json["suppressed"] == 0
    assert active_reason(db, "flaky@example.com") is None


def test_a_complaint_event_opens_an_item_suppresses_marketing_and_withdraws_consent(
    db, client, ops_key
):
    """Promise: complaint -> complaints.report: queue item, suppression, consent event."""
    with db.transaction() as s:
        pat = person(s, "pat@example.com", opted_in=("offers",))
        pat_id = pat.id
    reply = post_json(
        client, ops_key, {"events": [{"type": "complaint", "email": "pat@example.com"}]}
    )
    assert reply.json == {"hard": 0, "soft": 0, "complaints": 1, "suppressed": 1, "ignored": 0}
    assert active_reason(db, "pat@example.com") == SuppressionReason.COMPLAINT
    with db.session(read_only=True) as s:
        complaint = s.scalar(select(Complaint))
        assert complaint.subscriber_id == pat_id and complaint.source == "json"
        events = s.scalars(select(ConsentEvent).where(ConsentEvent.source == "complaint")).all()
        assert [e.action.value for e in events] == ["opt_out"]
        assert events[0].context == {"complaint": complaint.public_id}
        from mailprefs.domain.models import TopicSubscription

        state = s.scalar(
            select(TopicSubscription.state).where(TopicSubscription.subscriber_id == pat_id)
        )
        assert state == TopicState.OPTED_OUT


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"events": []},
        {"events": [{"type": "bounce", "email": "a@example.com"}]},
        {"events": [{"type": "bounce", "bounce": "firm", "email": "a@example.com"}]},
        {"events": [{"type": "unsubscribe", "email": "a@example.com"}]},
        {"events": [{"type": "bounce", "bounce": "hard", "email": "a\x00@example.com"}]},
        {
            "events": [
                {
                    "type": "bounce",
                    "bounce": "hard",
                    "email": "a@example.com",
                    "diagnostic": "x\x00",
                }
            ]
        },
        {"events": [{"type": "complaint", "email": "a@example.com", "at": "2026-11-26T10:00:00"}]},
        {"events": [{"type": "complaint", "email": "a@example.com", "extra": 1}]},
        {
            "events": [
                {"type": "bounce", "bounce": "hard", "email": "a@example.com"},
                {"type": "complaint", "email": "b@example.com", "at": "2030-01-01T00:00:00Z"},
            ]
        },
    ],
)
def test_bad_json_is_refused_with_a_problem_and_nothing_is_stored(db, client, ops_key, body):
    """Promise: invalid events answer 4xx problem+json and store nothing (not even part)."""
    reply = post_json(client, ops_key, body)
    assert 400 <= reply.status_code < 500
    assert reply.mimetype == "application/problem+json"
    assert count(db, Suppression.id) == 0 and count(db, BounceEvent.id) == 0
    assert count(db, Complaint.id) == 0


def test_malformed_json_is_a_400_and_an_unknown_type_a_415(db, client, ops_key):
    """Promise: a body that is not JSON, or of another type, is refused before anything."""
    reply = client.post(
        URL, data=b"{not json", content_type="application/json", headers=bearer(ops_key)
    )
    assert reply.status_code == 400 and reply.mimetype == "application/problem+json"
    reply = client.post(URL, data=b"hello", content_type="text/plain", headers=bearer(ops_key))
    assert reply.status_code == 415


def test_only_ops_and_admin_keys_may_post_events(client, marketing_key, admin_key):
    """Promise: a marketing key cannot suppress people; no key is a 401."""
    body = {"events": [{"type": "bounce", "bounce": "hard", "email": "a@example.com"}]}
    assert post_json(client, marketing_key, body).status_code == 403
    assert client.post(URL, json=body).status_code == 401
    assert post_json(client, admin_key, body).status_code == 202


# --- raw messages ------------------------------------------------------------------------


def test_a_raw_hard_dsn_suppresses_and_links_the_delivery_it_answers(db, client, ops_key):
    """Promise: a DSN's quoted Message-ID ties the bounce to our delivery and person."""
    with db.transaction() as s:
        jane = person(s, "jane.doe@example.org", opted_in=("offers",))
        campaign = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject="Offers",
            text="Hi",
            html=None,
            send_at=None,
            audience=None,
            created_by="test",
        )
        delivery = Delivery(
            campaign_id=campaign.id,
            subscriber_id=jane.id,
            status=DeliveryStatus.SENT,
            priority=10,
            attempts=1,
            message_id="<9f2c4e1a7b3d4c5e@mail.example.com>",
            sent_at=clock.now(),
        )
        s.add(delivery)
        s.flush()
        delivery_id, jane_id = delivery.id, jane.id
    reply = post_raw(client, ops_key, sample("dsn_hard_user_unknown.eml"))
    assert reply.status_code == 202, reply.json
    assert reply.json["hard"] == 1 and reply.json["suppressed"] == 1
    assert active_reason(db, "jane.doe@example.org") == SuppressionReason.BOUNCE
    with db.session(read_only=True) as s:
        event = s.scalar(select(BounceEvent))
        assert (event.delivery_id, event.subscriber_id, event.source) == (
            delivery_id,
            jane_id,
            "dsn",
        )
        assert "jane.doe" not in event.diagnostic


def test_a_raw_soft_dsn_is_counted_not_suppressed(db, client, ops_key):
    """Promise: one mailbox-full DSN is a soft bounce below the threshold: no suppression."""
    reply = post_raw(client, ops_key, sample("dsn_soft_mailbox_full.eml"))
    assert reply.json == {"hard": 0, "soft": 1, "complaints": 0, "suppressed": 0, "ignored": 0}
    assert active_reason(db, "full.box@example.net") is None


def test_a_delayed_dsn_and_not_spam_feedback_are_ignored(db, client, ops_key):
    """Promise: warnings and non-complaint feedback change nothing."""
    for name in ("dsn_delayed.eml", "arf_not_spam.eml"):
        reply = post_raw(client, ops_key, sample(name))
        assert reply.status_code == 202 and reply.json["ignored"] == 1
    assert count(db, Suppression.id) == 0 and count(db, BounceEvent.id) == 0


def test_a_dsn_for_two_recipients_classifies_each(db, client, ops_key):
    """Promise: per-recipient status: 5.1.1 hard (suppressed), 5.2.2 soft (counted)."""
    reply = post_raw(client, ops_key, sample("dsn_two_recipients.eml"))
    assert reply.json == {"hard": 1, "soft": 1, "complaints": 0, "suppressed": 1, "ignored": 0}
    assert active_reason(db, "gone@example.com") == SuppressionReason.BOUNCE
    assert active_reason(db, "quota@example.com") is None


def test_an_arf_report_opens_a_complaint_on_the_campaign_it_quotes(db, client, ops_key):
    """Promise: ARF abuse -> complaint (tied to our campaign via Message-ID), suppression."""
    with db.transaction() as s:
        someone = person(s, "complainer@example.com", opted_in=("offers",))
        campaign = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject="Offers",
            text="Hi",
            html=None,
            send_at=None,
            audience=None,
            created_by="test",
        )
        s.add(
            Delivery(
                campaign_id=campaign.id,
                subscriber_id=someone.id,
                status=DeliveryStatus.SENT,
                priority=10,
                attempts=1,
                message_id="<arf-original-1@mail.example.com>",
            )
        )
        campaign_id = campaign.id
    reply = post_raw(client, ops_key, sample("arf_abuse.eml"))
    assert reply.json["complaints"] == 1
    assert active_reason(db, "complainer@example.com") == SuppressionReason.COMPLAINT
    with db.session(read_only=True) as s:
        complaint = s.scalar(select(Complaint))
        assert complaint.campaign_id == campaign_id and complaint.source == "arf"
    # The feedback loop sends the same report again: one open item is enough.
    reply = post_raw(client, ops_key, sample("arf_abuse.eml"))
    assert reply.json["complaints"] == 0 and reply.json["ignored"] == 1
    assert count(db, Complaint.id) == 1


def test_a_raw_message_that_is_no_report_is_refused_and_nothing_stored(db, client, ops_key):
    """Promise: an ordinary message is a 422 problem, nothing stored."""
    reply = post_raw(client, ops_key, sample("plain_message.eml"))
    assert reply.status_code == 422 and reply.mimetype == "application/problem+json"
    assert count(db, Suppression.id) == 0


# --- webhook signatures ------------------------------------------------------------------


def signed(body: bytes, *, at=None, secret=WEBHOOK_SECRET):
    stamp = int((at or clock.now()).timestamp())
    return {
        "X-Mailprefs-Timestamp": str(stamp),
        "X-Mailprefs-Signature": sign(secret, stamp, body),
    }


HARD = json.dumps(
    {"events": [{"type": "bounce", "bounce": "hard", "email": "hooked@example.com"}]}
).encode()


def test_a_correctly_signed_webhook_is_accepted_without_a_key(db, client):
    """Promise: HMAC-SHA256(secret, timestamp.body) in the header authenticates a webhook."""
    reply = client.post(URL, data=HARD, content_type="application/json", headers=signed(HARD))
    assert reply.status_code == 202, reply.json
    assert active_reason(db, "hooked@example.com") == SuppressionReason.BOUNCE


@pytest.mark.parametrize(
    "tamper",
    ["wrong-secret", "other-body", "no-timestamp", "bad-timestamp", "stale", "future", "garbage"],
)
def test_a_badly_signed_webhook_is_refused_and_nothing_stored(db, client, tamper):
    """Promise: wrong key, altered body, missing/stale/future timestamp -> 401, no change."""
    headers = signed(HARD)
    body = HARD
    if tamper == "wrong-secret":
        headers = signed(HARD, secret="another-secret")
    elif tamper == "other-body":
        body = HARD.replace(b"hooked", b"victim")
    elif tamper == "no-timestamp":
        del headers["X-Mailprefs-Timestamp"]
    elif tamper == "bad-timestamp":
        headers["X-Mailprefs-Timestamp"] = "yesterday"
    elif tamper == "stale":
        headers = signed(HARD, at=clock.now() - timedelta(minutes=6))
    elif tamper == "future":
        headers = signed(HARD, at=clock.now() + timedelta(minutes=6))
    elif tamper == "garbage":
        headers["X-Mailprefs-Signature"] = "sha256=" + "0" * 64
    reply = client.post(URL, data=body, content_type="application/json", headers=headers)
    assert reply.status_code == 401 and reply.mimetype == "application/problem+json"
    assert count(db, Suppression.id) == 0 and count(db, BounceEvent.id) == 0


def test_a_replayed_signed_request_gets_the_first_answer_and_stores_nothing_new(db, client):
    """Promise: the same signed request twice (inside the window) acts once."""
    soft = json.dumps(
        {"events": [{"type": "bounce", "bounce": "soft", "email": "twice@example.com"}]}
    ).encode()
    headers = signed(soft)
    first = client.post(URL, data=soft, content_type="application/json", headers=headers)
    clock.advance(timedelta(minutes=2))
    again = client.post(URL, data=soft, content_type="application/json", headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json == first.json
    assert count(db, BounceEvent.id) == 1
    assert count(db, IdempotencyRecord.id) == 1
    # Past the window the replay is refused outright.
    clock.advance(timedelta(minutes=4))
    late = client.post(URL, data=soft, content_type="application/json", headers=headers)
    assert late.status_code == 401


def test_signed_webhooks_are_refused_when_no_secret_is_configured(app, db, client):
    """Promise: without MAILPREFS_WEBHOOK_SECRET a signature authenticates nothing."""
    app.config["MAILPREFS_WEBHOOK_SECRET"] = None
    reply = client.post(URL, data=HARD, content_type="application/json", headers=signed(HARD))
    assert reply.status_code == 401
    assert count(db, Suppression.id) == 0


def test_a_signed_raw_dsn_is_accepted(db, client):
    """Promise: signatures cover raw messages too (the bytes as sent)."""
    raw = sample("dsn_hard_user_unknown.eml")
    reply = client.post(URL, data=raw, content_type="message/rfc822", headers=signed(raw))
    assert reply.status_code == 202 and reply.json["hard"] == 1
    with db.session(read_only=True) as s:
        assert s.scalar(select(AuditEntry.id)) is None  # ingestion is not a staff read
