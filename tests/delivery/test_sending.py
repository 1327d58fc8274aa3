"""The send loop against a real SMTP server: exactly the permitted people, once each."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.delivery.transport import SMTPTransport
from mailprefs.delivery.worker import Worker
from mailprefs.domain import campaigns, consent, messages, suppression
from mailprefs.domain.models import SuppressionReason
from mailprefs.domain.outbox_models import (
    BounceEvent,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
)
from mailprefs.domain.topics import get_topic
from tests.support.factories import evidence, person


@pytest.fixture
def extra_config():
    return {}


@pytest.fixture
def app_config(sink, extra_config):
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": sink.port,
        "MAILPREFS_BATCH_SIZE": 7,
        "MAILPREFS_EXPANSION_BATCH_SIZE": 5,
        "MAILPREFS_RETRY_BASE_SECONDS": 60,
        **extra_config,
    }


def make_campaign(db, topic="offers", subject="Hello {{ first_name }}", **kw):
    with db.transaction() as s:
        campaign = campaigns.create(
            s,
            topic=get_topic(s, topic),
            subject=subject,
            text="Hi {{ first_name }}!",
            html="<p>Hi {{ first_name }}</p>",
            send_at=None,
            audience=kw.get("audience"),
            created_by="test",
        )
        campaigns.schedule(s, campaign, clock.now(), "test")
        return campaign.id


def recipients(sink, subject_prefix: str = "") -> list[str]:
    """Who received mail (optionally only mail whose subject starts with the prefix)."""
    found = []
    for _from, rcpts, raw in sink.messages:
        subject = email.message_from_bytes(raw, policy=email.policy.default)["Subject"]
        if str(subject).startswith(subject_prefix):
            found.extend(rcpts)
    return sorted(found)


def population(db):
    """Twelve people across every state the gate cares about; returns who may get offers."""
    allowed = []
    with db.transaction() as s:
        for i in range(6):
            allowed.append(
                person(
                    s,
                    f"in{i}@example.com",
                    opted_in=("offers",),
                    attributes={"first_name": f"In{i}"},
                ).email
            )
        person(s, "never@example.com")
        person(s, "pending@example.com", opted_in=("newsletter",), confirmed=False)
        out = person(s, "out@example.com", opted_in=("offers",))
        consent.opt_out(s, out, get_topic(s, "offers"), evidence("one_click"))
        from mailprefs.domain import subscribers

        gone = person(s, "gone@example.com", opted_in=("offers",))
        subscribers.deactivate(s, gone, evidence("preference_page"))
        bounced = person(s, "bounced@example.com", opted_in=("offers",))
        suppression.add(s, bounced.email_hash, SuppressionReason.BOUNCE, source="smtp")
        erased = person(s, "erased@example.com", opted_in=("offers",))
        subscribers.erase(s, erased, hash_key="test-hash-key", actor="test")
    return sorted(allowed)


def test_run_due_sends_to_exactly_the_permitted_people_once(app, db, sink):
    allowed = population(db)
    campaign_id = make_campaign(db)
    summary = Worker(app).run_due()
    assert recipients(sink, "Hello") == allowed
    # ... plus the confirmation mail the double opt-in registration asked for.
    assert recipients(sink, "Please confirm") == ["pending@example.com"]
    assert summary.fired == 1 and summary.sent == len(allowed) + 1
    with db.session(read_only=True) as s:
        campaign = s.get(Campaign, campaign_id)
        stats = campaigns.stats(s, campaign)
        assert campaign.status == CampaignStatus.SENT
    assert stats["planned"] == 12 and stats["sent"] == 6 and stats["pending"] == 0
    assert stats["blocked"] == {
        "no_consent": 2,
        "opted_out": 1,
        "deactivated": 1,
        "suppressed_bounce": 1,
        "erased": 1,
    }
    # A second run finds nothing to do: nothing is sent twice.
    again = Worker(app).run_due()
    assert again.sent == 0 and len(sink.messages) == len(allowed) + 1


def test_every_decision_is_stored_on_its_delivery_row(app, db, sink):
    population(db)
    campaign_id = make_campaign(db)
    Worker(app).run_due()
    with db.session(read_only=True) as s:
        rows = s.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id)).all()
    assert all(r.decided_at is not None for r in rows)
    assert {r.status for r in rows} == {DeliveryStatus.SENT, DeliveryStatus.BLOCKED}
    assert all((r.reason is None) == (r.status == DeliveryStatus.SENT) for r in rows)
    assert all(r.message_id and r.sent_at for r in rows if r.status == DeliveryStatus.SENT)


def test_mail_is_personalised_and_carries_the_stream_headers(app, db, sink):
    with db.transaction() as s:
        person(s, "ann@example.com", opted_in=("offers",), attributes={"first_name": "Ann"})
    make_campaign(db)
    Worker(app).run_due()
    ((_from, _rcpts, raw),) = sink.messages
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Hello Ann"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://mail.example.test/u/" in parsed["List-Unsubscribe"]


def test_audience_attributes_limit_who_is_planned(app, db, sink):
    with db.transaction() as s:
        person(s, "pro@example.com", opted_in=("offers",), attributes={"plan": "pro"})
        person(s, "free@example.com", opted_in=("offers",), attributes={"plan": "free"})
    make_campaign(db, audience={"attributes": {"plan": "pro"}})
    Worker(app).run_due()
    assert recipients(sink) == ["pro@example.com"]


class OptOutMidway(SMTPTransport):
    """A real SMTP transport that, after the first message, lets a person unsubscribe."""

    def __init__(self, config, db, victim):
        super().__init__(config)
        self.db, self.victim, self.count = db, victim, 0

    def send(self, decision, message):
        super().send(decision, message)
        self.count += 1
        if self.count == 1:
            with self.db.transaction() as s:
                from mailprefs.domain.subscribers import find_by_address

                victim = find_by_address(s, self.victim, "test-hash-key")
                consent.opt_out(s, victim, get_topic(s, "offers"), evidence("one_click"))


def test_an_unsubscribe_during_sending_stops_that_persons_mail(app, db, sink):
    with db.transaction() as s:
        for i in range(10):
            person(s, f"p{i:02d}@example.com", opted_in=("offers",))
    make_campaign(db)
    transport = OptOutMidway(app.config, db, "p09@example.com")
    summary = Worker(app, transport=transport).run_due()
    assert "p09@example.com" not in recipients(sink)
    assert len(recipients(sink)) == 9 and summary.blocked == 1
    with db.session(read_only=True) as s:
        reasons = s.scalars(
            select(Delivery.reason).where(Delivery.status == DeliveryStatus.BLOCKED)
        ).all()
    assert reasons == ["opted_out"]


class PauseAfter(SMTPTransport):
    def __init__(self, config, db, campaign_id, after):
        super().__init__(config)
        self.db, self.campaign_id, self.after, self.count = db, campaign_id, after, 0

    def send(self, decision, message):
        super().send(decision, message)
        self.count += 1
        if self.count == self.after:
            with self.db.transaction() as s:
                campaigns.pause(s, s.get(Campaign, self.campaign_id), "test")


def test_pause_holds_sending_and_resume_finishes_it(app, db, sink):
    with db.transaction() as s:
        for i in range(10):
            person(s, f"p{i:02d}@example.com", opted_in=("offers",))
    campaign_id = make_campaign(db)
    Worker(app, transport=PauseAfter(app.config, db, campaign_id, 3)).run_due()
    assert len(sink.messages) == 3
    with db.transaction() as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign.status == CampaignStatus.PAUSED
        campaigns.resume(s, campaign, "test")
    Worker(app).run_due()
    assert len(recipients(sink)) == 10 == len(set(recipients(sink)))


def test_cancel_stops_what_has_not_been_sent(app, db, sink):
    with db.transaction() as s:
        for i in range(5):
            person(s, f"p{i}@example.com", opted_in=("offers",))
    campaign_id = make_campaign(db)
    worker = Worker(app)
    worker.fire_due()
    worker.expand_all()
    with db.transaction() as s:
        assert campaigns.cancel(s, s.get(Campaign, campaign_id), "test") == 5
    worker.run_due()
    assert sink.messages == []
    with db.session(read_only=True) as s:
        assert campaigns.stats(s, s.get(Campaign, campaign_id))["cancelled"] == 5


def test_temporary_failures_are_retried_with_backoff(app, db, sink):
    with db.transaction() as s:
        person(s, "flaky2.x@example.com", opted_in=("offers",))
    campaign_id = make_campaign(db)
    clock.freeze()
    first = Worker(app).run_due()
    assert first.retrying == 1 and sink.messages == []
    assert Worker(app).run_due().retrying == 0  # not due yet: nothing is tried
    clock.advance(timedelta(minutes=2))
    assert Worker(app).run_due().retrying == 1  # second temporary failure, longer wait
    clock.advance(timedelta(minutes=1))
    assert Worker(app).run_due().sent == 0
    clock.advance(timedelta(minutes=2))
    assert Worker(app).run_due().sent == 1
    assert recipients(sink) == ["flaky2.x@example.com"]
    with db.session(read_only=True) as s:
        row = s.scalar(select(Delivery).where(Delivery.campaign_id == campaign_id))
        assert (row.status, row.attempts) == (DeliveryStatus.SENT, 2)
        assert s.get(Campaign, campaign_id).status == CampaignStatus.SENT


@pytest.mark.parametrize(
    "extra_config", [{"MAILPREFS_MAX_ATTEMPTS": 2, "MAILPREFS_RETRY_BASE_SECONDS": 1}]
)
def test_retries_stop_at_the_limit(app, db, sink):
    with db.transaction() as s:
        person(s, "temp450.x@example.com", opted_in=("offers",))
    make_campaign(db)
    clock.freeze()
    Worker(app).run_due()
    clock.advance(timedelta(minutes=5))
    summary = Worker(app).run_due()
    assert summary.failed == 1
    with db.session(read_only=True) as s:
        row = s.scalar(select(Delivery))
    assert (row.status, row.reason, row.attempts) == (DeliveryStatus.FAILED, "retries_exhausted", 2)


def test_a_permanent_refusal_fails_the_row_and_suppresses_the_address(app, db, sink):
    with db.transaction() as s:
        dead = person(s, "reject550.x@example.com", opted_in=("offers",))
        dead_hash = dead.email_hash
        person(s, "fine@example.com", opted_in=("offers",))
    make_campaign(db)
    summary = Worker(app).run_due()
    assert summary.failed == 1 and summary.sent == 1
    with db.session(read_only=True) as s:
        row = s.scalar(select(Delivery).where(Delivery.status == DeliveryStatus.FAILED))
        assert row.reason == "rejected_recipient" and "550" in row.last_error
        assert suppression.active(s, dead_hash).reason == SuppressionReason.BOUNCE
        assert s.scalar(select(BounceEvent.kind)) == "hard"
    make_campaign(db, subject="Again")
    Worker(app).run_due()
    with db.session(read_only=True) as s:
        reasons = s.scalars(
            select(Delivery.reason).where(Delivery.status == DeliveryStatus.BLOCKED)
        ).all()
    assert reasons == ["suppressed_bounce"]


def test_dropped_connections_are_retried_and_the_rest_still_go(app, db, sink):
    with db.transaction() as s:
        person(s, "drop.x@example.com", opted_in=("offers",))
        for i in range(4):
            person(s, f"ok{i}@example.com", opted_in=("offers",))
    make_campaign(db)
    summary = Worker(app).run_due()
    assert summary.sent == 4 and summary.retrying == 1
    assert "drop.x@example.com" not in recipients(sink)


def test_transactional_mail_goes_ahead_of_marketing(app, db, sink):
    with db.transaction() as s:
        for i in range(20):
            person(s, f"m{i:02d}@example.com", opted_in=("offers",))
        reset_for = person(s, "reset@example.com")
    make_campaign(db)
    worker = Worker(app)
    worker.fire_due()
    worker.expand_all()
    with db.transaction() as s:
        from mailprefs.domain.models import Subscriber

        messages.enqueue(
            s,
            topic=get_topic(s, "account"),
            subscriber=s.get(Subscriber, reset_for.id),
            subject="Reset your password",
            text="Here is your link.",
            html=None,
            created_by="test",
        )
    worker.run_due()
    assert sink.messages[0][1] == ["reset@example.com"]
    assert len(sink.messages) == 21


@pytest.mark.parametrize("extra_config", [{"MAILPREFS_SEND_RATE": 20.0}])
def test_the_send_rate_is_honoured(app, db, sink):
    import time

    with db.transaction() as s:
        for i in range(11):
            person(s, f"p{i:02d}@example.com", opted_in=("offers",))
    make_campaign(db)
    started = time.monotonic()
    Worker(app).run_due()
    # 11 messages at 20/s: the 11th may leave no sooner than 0.5 s after the first.
    assert time.monotonic() - started >= 0.5
    assert len(sink.messages) == 11


def test_when_the_relay_is_down_the_batch_backs_off_instead_of_timing_out_row_by_row(app, db):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    app.config.update(MAIL_PORT=closed_port)
    with db.transaction() as s:
        for i in range(6):
            person(s, f"p{i}@example.com", opted_in=("offers",))
    make_campaign(db)
    clock.freeze()
    summary = Worker(app).run_due()
    assert summary.retrying == 2 and summary.sent == 0  # two tries, then the rest wait
    with db.session(read_only=True) as s:
        rows = s.scalars(select(Delivery)).all()
    untried = [r for r in rows if r.attempts == 0]
    assert len(untried) == 4
    assert all(r.status == DeliveryStatus.QUEUED and r.lease_owner is None for r in rows)
    assert all(r.next_attempt_at > clock.now() for r in untried)


def test_a_message_that_cannot_be_built_fails_alone(app, db, sink):
    with db.transaction() as s:
        # An address that needs SMTPUTF8 is refused at the door now; one stored before
        # that (written here directly) still fails alone.
        old = person(s, "zoe@example.com", opted_in=("offers",))
        old.email = "zoë@example.com"
        person(s, "plain@example.com", opted_in=("offers",))
    make_campaign(db)
    summary = Worker(app).run_due()
    assert (summary.sent, summary.failed) == (1, 1)
    with db.session(read_only=True) as s:
        failed = s.scalar(select(Delivery).where(Delivery.status == DeliveryStatus.FAILED))
    assert failed.reason == "rejected_message" and "cannot build" in failed.last_error
    assert recipients(sink) == ["plain@example.com"]
