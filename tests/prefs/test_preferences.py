"""The preference center: topics to toggle, administrative topics required, stop all
marketing, close the account (second step), report an unsolicited email. GET shows;
POST changes, records a consent event for each change, and redirects back (303)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain import campaigns, gate, suppression
from mailprefs.domain.models import SuppressionReason
from mailprefs.domain.outbox_models import Campaign, CampaignKind, Complaint, ComplaintStatus
from mailprefs.domain.subscribers import find_by_public_id
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import get_tokens
from tests.prefs.support import BROWSER, events_of, make_person, snapshot, states_of


@pytest.fixture
def ann(db) -> str:
    return make_person(db, "ann.smith@example.org", opted_in=("offers",))


@pytest.fixture
def campaign_id(db) -> str:
    with db.transaction() as s:
        campaign = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject="Spring offers",
            text="Hi",
            html=None,
            send_at=None,
            audience=None,
            created_by="test",
        )
        return campaign.public_id


def url(public_id: str, campaign: str | None = None) -> str:
    return f"/preferences/{get_tokens().preferences(public_id, campaign)}"


def save(client, public_id: str, *topics: str):
    return client.post(
        url(public_id),
        data={"action": "save", "topic": list(topics)},
        headers={"User-Agent": BROWSER},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )


def test_the_page_lists_marketing_topics_with_states_and_administrative_ones_as_required(
    client, ann
):
    """Every marketing topic is a labelled checkbox showing its state; administrative
    topics are listed as required, with the privacy policy's reason."""
    page = client.get(url(ann)).get_data(as_text=True)
    assert "a***h@e***.org" in page and "ann.smith" not in page
    assert 'id="topic-offers" name="topic" value="offers"' in page
    assert '<label for="topic-offers">' in page and '<label for="topic-newsletter">' in page
    offers_box = page[page.index('id="topic-offers"') : page.index('<label for="topic-offers">')]
    news_box = page[
        page.index('id="topic-newsletter"') : page.index('<label for="topic-newsletter">')
    ]
    assert "checked" in offers_box and "checked" not in news_box
    assert "You receive this." in page and "You do not receive this." in page
    assert "Account and transactions" in page and "Privacy policy changes" in page
    assert page.count('<span class="tag">Required</span>') == 2
    assert "you may not opt out of administrative emails" in " ".join(page.split())
    assert 'name="topic" value="account"' not in page


def test_saving_choices_records_one_event_per_change_and_redirects_back(client, db, ann):
    """Unticking offers and ticking newsletter: offers opted out, newsletter opted in as
    a confirmed opt-in (the link was mailed to the address), each with source
    preference_page, IP and user agent; 303 back to the page, which says it is saved;
    no confirmation mail is queued."""
    before = len(events_of(db, ann))
    reply = save(client, ann, "newsletter")
    assert reply.status_code == 303 and reply.headers["Location"].endswith("?done=saved")
    assert states_of(db, ann)["offers"] == "opted_out"
    assert states_of(db, ann)["newsletter"] == "opted_in"
    new = events_of(db, ann)[before:]
    assert sorted((e.topic.slug, e.action) for e in new) == [
        ("newsletter", "confirm"),
        ("newsletter", "opt_in"),
        ("offers", "opt_out"),
    ]
    assert {(e.source, e.ip, e.user_agent, e.actor) for e in new} == {
        ("preference_page", "203.0.113.9", BROWSER, "recipient")
    }
    assert "Your choices are saved." in client.get(reply.headers["Location"]).get_data(as_text=True)
    with db.session(read_only=True) as s:
        kinds = s.scalars(select(Campaign.kind)).all()
    assert CampaignKind.CONFIRMATION not in kinds


def test_saving_the_same_choices_again_records_nothing(client, db, ann):
    """A save that changes nothing adds no event and says so."""
    before = snapshot(db)
    reply = save(client, ann, "offers")
    assert reply.headers["Location"].endswith("?done=unchanged")
    assert snapshot(db) == before


def test_a_topic_waiting_for_confirmation_is_confirmed_when_ticked_and_left_when_not(client, db):
    """Pending newsletter: left pending by a save without it, confirmed by a save with it."""
    pending = make_person(db, opted_in=("newsletter",), confirmed=False)
    page = client.get(url(pending)).get_data(as_text=True)
    assert "Waiting for you to confirm it." in page
    save(client, pending, "offers")
    assert states_of(db, pending) == {
        "account": "none",
        "policy": "none",
        "newsletter": "pending",
        "offers": "opted_in",
    }
    save(client, pending, "offers", "newsletter")
    assert states_of(db, pending)["newsletter"] == "opted_in"
    assert events_of(db, pending)[-1].action == "confirm"


def test_administrative_topics_cannot_be_changed_through_the_form(client, db, ann):
    """Posting an administrative topic's slug changes nothing about it."""
    before = states_of(db, ann)
    save(client, ann, "offers", "account", "policy")
    assert states_of(db, ann) == before


def test_stop_all_marketing_opts_out_of_every_marketing_topic(client, db):
    """'Stop all marketing email' opts out of every subscribed or pending marketing topic."""
    both = make_person(db, opted_in=("offers", "newsletter"))
    reply = client.post(url(both), data={"action": "all_off"})
    assert reply.status_code == 303 and reply.headers["Location"].endswith("?done=all_off")
    states = states_of(db, both)
    assert (states["offers"], states["newsletter"]) == ("opted_out", "opted_out")
    assert {e.source for e in events_of(db, both)[-2:]} == {"preference_page"}
    again = client.post(url(both), data={"action": "all_off"})
    assert again.headers["Location"].endswith("?done=unchanged")


def test_closing_the_account_takes_a_second_step(client, db, ann):
    """The first step (a GET, or a POST without confirm) only asks; nothing changes."""
    before = snapshot(db)
    first = client.get(url(ann) + "?step=close")
    assert first.status_code == 200
    page = first.get_data(as_text=True)
    assert "Close your account?" in page and "Yes, close my account" in page
    unconfirmed = client.post(url(ann), data={"action": "close"})
    assert unconfirmed.status_code == 200
    assert "Yes, close my account" in unconfirmed.get_data(as_text=True)
    assert snapshot(db) == before


def test_confirming_the_close_deactivates_and_stops_all_mail(client, db, ann):
    """The second step deactivates the account: marketing opted out and a deactivate
    event (source preference_page); the gate then blocks administrative mail too; the
    page shows the account closed and changes can no longer be made."""
    reply = client.post(url(ann), data={"action": "close", "confirm": "yes"})
    assert reply.status_code == 303 and reply.headers["Location"].endswith("?done=closed")
    events = events_of(db, ann)
    assert [(e.action, e.source) for e in events[-2:]] == [
        ("opt_out", "preference_page"),
        ("deactivate", "preference_page"),
    ]
    with db.session(read_only=True) as s:
        person = find_by_public_id(s, ann)
        assert person.status == "deactivated" and person.status_reason == "by_user"
        facts = gate.load_recipient(s, person.id, get_topic(s, "account").id).facts
    assert gate.decide(facts, "administrative", None).reason == gate.DEACTIVATED
    page = client.get(reply.headers["Location"]).get_data(as_text=True)
    assert "Your account is closed" in page and 'value="save"' not in page
    before = snapshot(db)
    refused = save(client, ann, "offers", "newsletter")
    assert refused.status_code == 409
    assert snapshot(db) == before


def test_reporting_an_unsolicited_email_opens_a_complaint_and_stops_marketing(
    client, db, ann, campaign_id
):
    """'Report an unsolicited email': an open complaint in the ops queue (with the mail's
    campaign and the person's words), a complaint suppression (marketing only), marketing
    consent withdrawn with source complaint; a second report adds nothing."""
    reply = client.post(
        url(ann, campaign_id),
        data={"action": "report", "detail": "I never signed up for this."},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert reply.status_code == 303 and reply.headers["Location"].endswith("?done=reported")
    with db.session(read_only=True) as s:
        complaint = s.scalar(select(Complaint))
        person = find_by_public_id(s, ann)
        assert complaint.status == ComplaintStatus.OPEN
        assert complaint.source == "preference_page"
        assert complaint.detail == "I never signed up for this."
        assert complaint.subscriber_id == person.id
        assert s.get(Campaign, complaint.campaign_id).public_id == campaign_id
        assert suppression.active(s, person.email_hash).reason == SuppressionReason.COMPLAINT
        facts = gate.load_recipient(s, person.id, get_topic(s, "account").id).facts
    assert gate.decide(facts, "administrative", None).allowed  # still hears of the account
    last = events_of(db, ann)[-1]
    assert (last.action, last.source, last.ip) == ("opt_out", "complaint", "203.0.113.9")
    page = client.get(reply.headers["Location"]).get_data(as_text=True)
    assert "Thank you for telling us" in page and "You reported an email on" in page
    assert 'value="save"' not in page  # no opting in while the complaint suppression holds
    before = snapshot(db)
    client.post(url(ann, campaign_id), data={"action": "report"})
    assert snapshot(db) == before


def test_marketing_cannot_be_switched_back_on_under_a_suppression(client, db, ann):
    """While the address is suppressed (a bounce here), the page says why and a save is
    refused with nothing changed."""
    with db.transaction() as s:
        person = find_by_public_id(s, ann)
        suppression.add(s, person.email_hash, SuppressionReason.BOUNCE, source="smtp")
    page = client.get(url(ann)).get_data(as_text=True)
    assert "bounced" in page and 'value="save"' not in page
    before = snapshot(db)
    assert save(client, ann, "offers", "newsletter").status_code == 409
    assert snapshot(db) == before


def test_a_post_with_an_unknown_action_changes_nothing(client, db, ann):
    """An action the page does not offer answers 400 and changes nothing."""
    before = snapshot(db)
    assert client.post(url(ann), data={"action": "erase-everything"}).status_code == 400
    assert client.post(url(ann), data={}).status_code == 400
    assert snapshot(db) == before


def test_changes_take_effect_for_mail_sent_after_them(client, db, ann):
    """After a save, the gate answers with the new states at once."""
    save(client, ann, "newsletter")
    with db.session(read_only=True) as s:
        person = find_by_public_id(s, ann)
        offers = gate.load_recipient(s, person.id, get_topic(s, "offers").id).facts
        news = gate.load_recipient(s, person.id, get_topic(s, "newsletter").id).facts
    assert gate.decide(offers, "marketing", clock.now()).reason == gate.OPTED_OUT
    assert gate.decide(news, "marketing", clock.now()).allowed
