"""Double opt-in: `GET /confirm/{token}` shows a button, POST confirms (source
confirmation); links expire (MAILPREFS_CONFIRM_MAX_AGE_HOURS, default 48); an expired
link offers a new one, which is mailed and works."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import consent
from mailprefs.domain.outbox_models import Campaign, CampaignKind
from mailprefs.domain.subscribers import find_by_public_id
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import get_tokens
from tests.prefs.support import (
    BROWSER,
    aged_token,
    captured,
    events_of,
    link_in_text,
    make_person,
    path_of,
    snapshot,
    states_of,
)
from tests.support.factories import evidence

HOUR = 3600


@pytest.fixture
def pending(db) -> str:
    return make_person(db, "pat@example.net", opted_in=("newsletter",), confirmed=False)


def confirm_url(public_id: str, topic: str = "newsletter") -> str:
    return f"/confirm/{get_tokens().confirm(public_id, topic)}"


def confirmation_mails(db) -> int:
    with db.session(read_only=True) as s:
        return len(
            s.scalars(select(Campaign).where(Campaign.kind == CampaignKind.CONFIRMATION)).all()
        )


def test_get_shows_a_button_and_changes_nothing(client, db, pending):
    """GET names the topic and the masked address, shows a button, changes nothing."""
    before = snapshot(db)
    reply = client.get(confirm_url(pending))
    page = reply.get_data(as_text=True)
    assert reply.status_code == 200
    assert "Confirm your subscription to &ldquo;Newsletter&rdquo;" in page
    assert "p***t@e***.net" in page and 'name="confirm" value="yes"' in page
    assert snapshot(db) == before


def test_post_confirms_with_source_confirmation_and_evidence(client, db, pending):
    """POST moves pending -> opted_in with a confirm event (source confirmation, IP, UA)."""
    reply = client.post(
        confirm_url(pending),
        data={"confirm": "yes"},
        headers={"User-Agent": BROWSER},
        environ_base={"REMOTE_ADDR": "192.0.2.44"},
    )
    assert reply.status_code == 200
    assert "your subscription is confirmed" in reply.get_data(as_text=True)
    assert states_of(db, pending)["newsletter"] == "opted_in"
    last = events_of(db, pending)[-1]
    assert (last.action, last.source, last.ip, last.user_agent) == (
        "confirm",
        "confirmation",
        "192.0.2.44",
        BROWSER,
    )


def test_a_second_post_changes_nothing(client, db, pending):
    """Confirming twice answers 200 and records nothing more."""
    client.post(confirm_url(pending), data={"confirm": "yes"})
    before = snapshot(db)
    again = client.post(confirm_url(pending), data={"confirm": "yes"})
    assert again.status_code == 200 and "already confirmed" in again.get_data(as_text=True)
    assert snapshot(db) == before


def test_confirming_after_unsubscribing_is_refused(client, db, pending):
    """A person who opted out after asking is not subscribed by the old link: 409."""
    with db.transaction() as s:
        consent.opt_out(
            s, find_by_public_id(s, pending), get_topic(s, "newsletter"), evidence("one_click")
        )
    before = snapshot(db)
    reply = client.post(confirm_url(pending), data={"confirm": "yes"})
    assert reply.status_code == 409 and "Nothing to confirm" in reply.get_data(as_text=True)
    assert snapshot(db) == before


def test_an_expired_link_answers_400_offers_a_new_one_and_changes_nothing(app, client, db, pending):
    """A link older than 48 hours (the default): GET and POST answer 400 with a button
    for a new link; nothing is confirmed."""
    token = aged_token(app, "confirm", {"s": pending, "t": "newsletter"}, 49 * HOUR)
    before = snapshot(db)
    for reply in (
        client.get(f"/confirm/{token}"),
        client.post(f"/confirm/{token}", data={"confirm": "yes"}),
    ):
        page = reply.get_data(as_text=True)
        assert reply.status_code == 400
        assert "expired" in page and "work for 48 hours" in page
        assert 'name="resend" value="yes"' in page
    assert snapshot(db) == before
    fresh = aged_token(app, "confirm", {"s": pending, "t": "newsletter"}, 47 * HOUR)
    assert client.post(f"/confirm/{fresh}", data={"confirm": "yes"}).status_code == 200


@pytest.mark.parametrize("app_config", [{"MAILPREFS_CONFIRM_MAX_AGE_HOURS": 2}])
def test_the_confirmation_lifetime_is_configurable(app, client, db, pending, app_config):
    """MAILPREFS_CONFIRM_MAX_AGE_HOURS=2: a 3-hour-old link has expired, a 1-hour-old one works."""
    old = aged_token(app, "confirm", {"s": pending, "t": "newsletter"}, 3 * HOUR)
    assert client.get(f"/confirm/{old}").status_code == 400
    young = aged_token(app, "confirm", {"s": pending, "t": "newsletter"}, 1 * HOUR)
    assert client.post(f"/confirm/{young}", data={"confirm": "yes"}).status_code == 200


def test_asking_for_a_new_link_mails_one_that_works(app, client, db, pending):
    """'Send me a new link' queues a confirmation mail (administrative stream) through
    confirmations.request; its link confirms the subscription."""
    expired = aged_token(app, "confirm", {"s": pending, "t": "newsletter"}, 72 * HOUR)
    clock.freeze(clock.now() + timedelta(hours=72))  # the first mail went out 3 days ago
    mails = confirmation_mails(db)
    reply = client.post(f"/confirm/{expired}", data={"resend": "yes"})
    assert reply.status_code == 200
    assert "We have emailed a new confirmation link" in reply.get_data(as_text=True)
    assert confirmation_mails(db) == mails + 1
    Worker(app).run_due()
    (message,) = [m for m in captured(app, "pat@example.net") if "confirm" in m["Subject"].lower()][
        -1:
    ]
    assert "List-Unsubscribe" not in message  # administrative mail
    fresh = path_of(link_in_text(message, "confirm"))
    assert client.get(fresh).status_code == 200
    assert client.post(fresh, data={"confirm": "yes"}).status_code == 200
    assert states_of(db, pending)["newsletter"] == "opted_in"


def test_a_new_link_is_not_mailed_again_within_ten_minutes(app, client, db, pending):
    """Pressing 'send me a new link' again at once queues nothing more; later it does."""
    expired = aged_token(app, "confirm", {"s": pending, "t": "newsletter"}, 72 * HOUR)
    clock.freeze(clock.now() + timedelta(hours=72))
    first = client.post(f"/confirm/{expired}", data={"resend": "yes"})
    assert "We have emailed a new confirmation link" in first.get_data(as_text=True)
    mails = confirmation_mails(db)
    again = client.post(f"/confirm/{expired}", data={"resend": "yes"})
    assert again.status_code == 200 and "a few minutes ago" in again.get_data(as_text=True)
    assert confirmation_mails(db) == mails
    clock.freeze(clock.now() + timedelta(minutes=11))
    client.post(f"/confirm/{expired}", data={"resend": "yes"})
    assert confirmation_mails(db) == mails + 1


def test_an_expired_link_for_a_confirmed_topic_offers_nothing(app, client, db):
    """No new link is offered, or sent, when there is nothing left to confirm."""
    done = make_person(db, opted_in=("newsletter",))
    expired = aged_token(app, "confirm", {"s": done, "t": "newsletter"}, 72 * HOUR)
    page = client.get(f"/confirm/{expired}").get_data(as_text=True)
    assert "already confirmed" in page and 'name="resend"' not in page
    before = snapshot(db)
    assert client.post(f"/confirm/{expired}", data={"resend": "yes"}).status_code == 409
    assert snapshot(db) == before


def test_a_tampered_expired_link_gets_no_new_link(app, client, db, pending):
    """Only a genuine (if old) link can ask for a new one: a forged one is 400, no mail."""
    expired = aged_token(app, "confirm", {"s": pending, "t": "newsletter"}, 72 * HOUR)
    forged = expired[:-4] + ("AAAA" if not expired.endswith("AAAA") else "BBBB")
    before = snapshot(db)
    assert client.post(f"/confirm/{forged}", data={"resend": "yes"}).status_code == 400
    assert snapshot(db) == before


def test_a_closed_account_cannot_confirm(client, db, pending):
    """A deactivated person's confirmation link confirms nothing (409, no change)."""
    from mailprefs.domain import subscribers

    with db.transaction() as s:
        subscribers.deactivate(s, find_by_public_id(s, pending), evidence("preference_page"))
    before = snapshot(db)
    reply = client.post(confirm_url(pending), data={"confirm": "yes"})
    assert reply.status_code == 409 and "account is closed" in reply.get_data(as_text=True)
    assert snapshot(db) == before
