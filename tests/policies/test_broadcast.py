"""Policy notices reach every registered, active person, once, before the policy takes
effect; never the deactivated, the erased, children or hard bounces (invariants 1, 9, 10).

Time moves through mailprefs.clock; sending goes through the real worker and SMTP.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import consent, policies, subscribers, suppression
from mailprefs.domain.models import Subscriber, SubscriberStatus, SuppressionReason
from mailprefs.domain.outbox_models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    PolicyKind,
)
from mailprefs.domain.topics import get_topic
from tests.support.factories import HASH_KEY, evidence, person

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SETTINGS = policies.NoticeSettings(
    notice_days=30, org_name="ICVT Ltd.", contact_email="support@example.test"
)


@pytest.fixture
def app_config(sink):
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port, "MAILPREFS_BATCH_SIZE": 4}


def announce(db, version="2026-04-02", kind=PolicyKind.CHANGE, **change) -> int:
    values = {
        "version": version,
        "title": "Clearer retention periods",
        "summary": "We now say how long we keep each kind of data.",
        "url": "https://example.test/privacy/new",
        "effective_at": T0 + timedelta(days=31),
        "announce_at": T0 + timedelta(hours=1),
        "kind": kind,
        **change,
    }
    with db.transaction() as s:
        policy = policies.announce(s, policies.Announcement(**values), SETTINGS, "test")
        return policy.campaign_id


def notices(sink) -> dict[str, list[email.message.EmailMessage]]:
    got: dict[str, list] = {}
    for _from, rcpts, raw in sink.messages:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        if "privacy" in str(parsed["Subject"]).lower() or "transferred" in str(parsed["Subject"]):
            for rcpt in rcpts:
                got.setdefault(rcpt, []).append(parsed)
    return got


def population(db) -> tuple[list[str], dict[str, str]]:
    """Everyone the gate distinguishes; returns (who must be told, who not and why)."""
    told, not_told = [], {}
    with db.transaction() as s:
        told.append(person(s, "never-consented@example.com").email)
        out = person(s, "opted-out@example.com", opted_in=("offers",))
        consent.opt_out(s, out, get_topic(s, "offers"), evidence("one_click"))
        told.append(out.email)
        told.append(person(s, "marketing@example.com", opted_in=("offers",)).email)
        told.append(
            person(s, "pending@example.com", opted_in=("newsletter",), confirmed=False).email
        )
        complained = person(s, "complained@example.com", opted_in=("offers",))
        suppression.add(s, complained.email_hash, SuppressionReason.COMPLAINT, source="arf")
        told.append(complained.email)  # a complaint stops marketing, not administrative mail
        gone = person(s, "deactivated@example.com")
        subscribers.deactivate(s, gone, evidence("preference_page"))
        not_told[gone.email] = "deactivated"
        erased = person(s, "erased@example.com")
        subscribers.erase(s, erased, hash_key=HASH_KEY, actor="test")
        not_told["erased@example.com"] = "erased"
        child = person(s, "child@example.com")
        subscribers.erase(s, child, hash_key=HASH_KEY, actor="test", reason="underage")
        not_told["child@example.com"] = "underage"
        bounced = person(s, "bounced@example.com")
        suppression.add(s, bounced.email_hash, SuppressionReason.BOUNCE, source="smtp")
        not_told[bounced.email] = "suppressed_bounce"
    return told, not_told


def test_a_notice_reaches_exactly_the_registered_active_people_once_and_newcomers_too(
    app, db, sink
):
    """Every registered, active person is told once (opted out of marketing or not, never
    consented, complained); the deactivated, erased, under-13 and hard-bounced are not;
    people who register (or come back) before the policy takes effect are told too;
    people who register after it took effect are not; the notice then finishes."""
    clock.freeze(T0)
    told, not_told = population(db)
    campaign_id = announce(db)
    worker = Worker(app)
    worker.run_due()
    assert notices(sink) == {}, "nothing before announce_at"

    clock.advance(timedelta(hours=1))
    worker.run_due()
    assert sorted(notices(sink)) == sorted(told)

    # Mid-broadcast: a new registration, and a deactivated person registering again
    # (themselves: the only way back in).
    clock.advance(timedelta(days=3))
    with db.transaction() as s:
        person(s, "newcomer@example.com")
        subscribers.register(
            s,
            email="deactivated@example.com",
            attributes={},
            consents=[],
            hash_key=HASH_KEY,
            evidence=evidence(),
            reopen=True,
        )
    told += ["newcomer@example.com", "deactivated@example.com"]
    del not_told["deactivated@example.com"]
    worker.run_due()
    got = notices(sink)
    assert sorted(got) == sorted(told)
    assert all(len(mails) == 1 for mails in got.values()), "nobody told twice"
    with db.session(read_only=True) as s:
        assert s.get(Campaign, campaign_id).status == CampaignStatus.SENDING

    # The policy takes effect: the notice finishes; later registrations are not told.
    clock.advance(timedelta(days=28))
    worker.run_due()
    with db.transaction() as s:
        person(s, "after@example.com")
    worker.run_due()
    assert sorted(notices(sink)) == sorted(told)
    with db.session(read_only=True) as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign.status == CampaignStatus.SENT and campaign.expansion_done
        blocked = s.scalars(
            select(Delivery.reason).where(
                Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.BLOCKED
            )
        ).all()
    assert sorted(blocked) == sorted(not_told.values())
    assert len(sink.messages) == len(told) + 1  # + the newsletter confirmation request


def test_the_notice_is_administrative_mail_with_no_unsubscribe_header(app, db, sink):
    """A notice comes from the administrative sender, has no List-Unsubscribe, says
    what changes, when, where to read it and that continued use means acceptance."""
    clock.freeze(T0)
    with db.transaction() as s:
        person(s, "ann@example.com")
    announce(db, announce_at=None)
    Worker(app).run_due()
    (mail,) = notices(sink)["ann@example.com"]
    assert "List-Unsubscribe" not in mail and "List-Id" not in mail
    assert mail["From"].addresses[0].addr_spec == "account@mail.example.com"
    assert str(mail["Subject"]) == (
        "Changes to our privacy policy, effective 2 April 2026: Clearer retention periods"
    )
    text = mail.get_body(("plain",)).get_content()
    for needed in (
        "We now say how long we keep each kind of data.",
        "2026-04-02 09:00 UTC",
        "https://example.test/privacy/new",
        "continued use",
        "constitutes your acceptance",
        "administrative message",  # the footer
    ):
        assert needed in text, needed
    assert "continued use" in mail.get_body(("html",)).get_content()


def test_a_transfer_notice_says_who_why_and_that_data_becomes_subject_to_another_policy(
    app, db, sink
):
    """Use of Information item 3: before a transfer, people are told that their data will
    be transferred and become subject to a different privacy policy."""
    clock.freeze(T0)
    with db.transaction() as s:
        person(s, "ann@example.com")
    announce(
        db,
        version="transfer-2026",
        kind=PolicyKind.TRANSFER,
        title="ICVT joins Example Group",
        summary="Example Group Inc. acquires ICVT's photo business to run it from May.",
        announce_at=None,
    )
    Worker(app).run_due()
    (mail,) = notices(sink)["ann@example.com"]
    assert "transferred" in str(mail["Subject"])
    text = " ".join(mail.get_body(("plain",)).get_content().split())
    for needed in (
        "merger, acquisition or sale of assets",
        "Example Group Inc. acquires ICVT's photo business",
        "your personal information will be transferred",
        "subject to a different privacy policy",
        "before anything is transferred",
    ):
        assert needed in text, needed


def test_template_syntax_in_a_title_or_summary_is_sent_as_written(app, db, sink):
    """A title or summary holding `{{ ... }}` or `{% ... %}` is text, not template code."""
    clock.freeze(T0)
    with db.transaction() as s:
        person(s, "ann@example.com", attributes={"secret": "LEAK"})
    announce(
        db,
        title="Braces {{ secret }} {% if 1 %}",
        summary="Summary {{ 7 * 7 }} {# no #} {{ email }}",
        announce_at=None,
    )
    Worker(app).run_due()
    (mail,) = notices(sink)["ann@example.com"]
    text = mail.get_body(("plain",)).get_content()
    assert "Braces {{ secret }} {% if 1 %}" in str(mail["Subject"])
    assert "Summary {{ 7 * 7 }} {# no #} {{ email }}" in text
    assert "LEAK" not in text and "49" not in text
    assert "{{ secret }}" in mail.get_body(("html",)).get_content()


def test_the_export_records_which_notice_was_sent_and_when(app, db, sink):
    """Who was sent which notice, when: the person's export lists it with its version."""
    clock.freeze(T0)
    with db.transaction() as s:
        public_id = person(s, "ann@example.com").public_id
    announce(db, announce_at=None)
    Worker(app).run_due()
    with db.session(read_only=True) as s:
        exported = subscribers.export(s, subscribers.find_by_public_id(s, public_id))
    (message,) = [m for m in exported["messages"] if m["kind"] == "policy"]
    assert message["policy_version"] == "2026-04-02"
    assert message["status"] == "sent" and message["sent_at"].startswith("2026-03-02T09:00")


def test_people_added_without_registration_are_still_taken_in_until_effective(app, db, sink):
    """keeps_expanding: the expansion keeps taking people whose rows appear later (an
    import straight into the table, say) until the policy takes effect, then stops."""
    clock.freeze(T0)
    with db.transaction() as s:
        person(s, "first@example.com")
    campaign_id = announce(db, announce_at=None)
    worker = Worker(app)
    worker.run_due()

    def add_directly(address):
        from mailprefs.domain.addresses import address_hash

        with db.transaction() as s:
            s.execute(
                insert(Subscriber).values(
                    public_id=f"direct-{address[:6]}",
                    email=address,
                    email_hash=address_hash(address, HASH_KEY),
                    attributes={},
                    status=SubscriberStatus.ACTIVE,
                    created_at=clock.now(),
                    updated_at=clock.now(),
                )
            )

    add_directly("imported@example.com")
    worker.run_due()
    assert "imported@example.com" in notices(sink)
    clock.advance(timedelta(days=31))
    worker.run_due()
    add_directly("toolate@example.com")
    worker.run_due()
    assert sorted(notices(sink)) == ["first@example.com", "imported@example.com"]
    with db.session(read_only=True) as s:
        rows = s.scalar(select(func.count(Delivery.id)).where(Delivery.campaign_id == campaign_id))
        assert rows == 2 and s.get(Campaign, campaign_id).status == CampaignStatus.SENT


def test_a_newcomer_is_queued_in_the_registration_transaction(app, db, sink):
    """Registration itself queues the notice (no wait for the next expansion), and the
    expansion adds no second row for them."""
    clock.freeze(T0)
    campaign_id = announce(db, announce_at=None)
    worker = Worker(app)
    worker.run_due()
    with db.transaction() as s:
        newcomer = person(s, "new@example.com")
        row = s.scalar(
            select(Delivery).where(
                Delivery.campaign_id == campaign_id, Delivery.subscriber_id == newcomer.id
            )
        )
        assert row is not None and row.status == DeliveryStatus.QUEUED
    worker.run_due()
    with db.session(read_only=True) as s:
        assert (
            s.scalar(select(func.count(Delivery.id)).where(Delivery.campaign_id == campaign_id))
            == 1
        )
    assert list(notices(sink)) == ["new@example.com"]
