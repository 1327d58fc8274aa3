"""`/u/{token}`: the page shows and changes nothing; the POST (RFC 8058 one-click or the
page's button) opts out of the mail's topic, with evidence, idempotently."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from mailprefs.domain import gate, subscribers
from mailprefs.domain.models import Topic
from mailprefs.domain.subscribers import find_by_public_id
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import get_tokens
from tests.prefs.support import (
    BROWSER,
    ONE_CLICK,
    events_of,
    make_person,
    snapshot,
    states_of,
)
from tests.support.factories import evidence


@pytest.fixture
def jane(db) -> str:
    return make_person(db, "jane.doe@example.com", opted_in=("offers", "newsletter"))


def link(public_id: str, topic: str = "offers", campaign: str | None = "cmp_news1") -> str:
    return f"/u/{get_tokens().unsubscribe(public_id, topic, campaign)}"


def test_get_says_what_the_button_will_do_and_changes_nothing(client, db, jane):
    """GET /u/{token} names the topic and the masked address, offers a button, and
    changes nothing (link scanners fetch every GET)."""
    before = snapshot(db)
    reply = client.get(link(jane))
    assert reply.status_code == 200
    page = reply.get_data(as_text=True)
    assert "Offers and product news" in page
    assert "j***e@e***.com" in page and "jane.doe@example.com" not in page
    assert '<button type="submit" name="unsubscribe" value="yes">Unsubscribe</button>' in page
    assert snapshot(db) == before


def test_head_changes_nothing(client, db, jane):
    """HEAD /u/{token} answers like GET, without a body, and changes nothing."""
    before = snapshot(db)
    reply = client.head(link(jane))
    assert reply.status_code == 200 and reply.get_data() == b""
    assert snapshot(db) == before


def test_a_scanner_fetching_every_link_in_a_mail_changes_nothing(client, db, jane):
    """GET and HEAD of every recipient link (unsubscribe, preferences and its close-account
    step, confirmation) change nothing at all."""
    pending = make_person(db, opted_in=("newsletter",), confirmed=False)
    tokens = get_tokens()
    urls = [
        link(jane),
        f"/preferences/{tokens.preferences(jane, 'cmp_news1')}",
        f"/preferences/{tokens.preferences(jane, 'cmp_news1')}?step=close",
        f"/confirm/{tokens.confirm(pending, 'newsletter')}",
    ]
    before = snapshot(db)
    for url in urls:
        assert client.get(url, headers={"User-Agent": "SafeLinks scanner"}).status_code == 200
        assert client.head(url).status_code == 200
    assert snapshot(db) == before
    assert states_of(db, jane)["offers"] == "opted_in"


def test_one_click_post_without_a_cookie_opts_out_answers_200_and_keeps_evidence(client, db, jane):
    """RFC 8058: `List-Unsubscribe=One-Click`, no cookie, no CSRF token -> 200 (no
    redirect, no cookie set); the person is opted out of the mail's topic only, with an
    event holding source one_click, IP, user agent, campaign and policy version."""
    client.delete_cookie("session")
    reply = client.post(
        link(jane),
        data=ONE_CLICK,
        headers={"User-Agent": "GoogleOneClick/1.0"},
        environ_base={"REMOTE_ADDR": "198.51.100.23"},
    )
    assert reply.status_code == 200
    assert "Location" not in reply.headers and "Set-Cookie" not in reply.headers
    assert "unsubscribed" in reply.get_data(as_text=True)
    assert states_of(db, jane) == {
        "account": "none",
        "policy": "none",
        "newsletter": "opted_in",
        "offers": "opted_out",
    }
    last = events_of(db, jane)[-1]
    assert (last.action, last.source, last.topic.slug) == ("opt_out", "one_click", "offers")
    assert (last.ip, last.user_agent) == ("198.51.100.23", "GoogleOneClick/1.0")
    assert last.context == {"campaign": "cmp_news1"}
    assert last.policy_version == "2011-07-06" and last.actor == "recipient"


def test_one_click_post_with_a_cookie_works_the_same(client, db, jane):
    """A POST carrying cookies (a session, anything) is answered exactly as one without."""
    client.set_cookie("session", "not-a-valid-session")
    client.set_cookie("tracking", "abc")
    reply = client.post(link(jane), data=ONE_CLICK)
    assert reply.status_code == 200 and "Set-Cookie" not in reply.headers
    assert states_of(db, jane)["offers"] == "opted_out"
    assert events_of(db, jane)[-1].source == "one_click"


def test_one_click_post_as_multipart_form_data_works(client, db, jane):
    """RFC 8058 allows the body as multipart/form-data too."""
    reply = client.post(link(jane), data=ONE_CLICK, content_type="multipart/form-data")
    assert reply.status_code == 200
    assert states_of(db, jane)["offers"] == "opted_out"


def test_csrf_protection_is_on_and_the_one_click_needs_no_token(app, client, db, jane):
    """CSRFProtect is active app-wide, yet the one-click POST needs no CSRF token."""
    assert app.config.get("WTF_CSRF_ENABLED", True) is True
    assert client.post(link(jane), data=ONE_CLICK).status_code == 200


def test_a_second_post_answers_200_and_records_nothing(client, db, jane):
    """Idempotent: the same POST again answers 200 and adds no event."""
    assert client.post(link(jane), data=ONE_CLICK).status_code == 200
    before = snapshot(db)
    again = client.post(link(jane), data=ONE_CLICK)
    assert again.status_code == 200 and "already unsubscribed" in again.get_data(as_text=True)
    assert client.post(link(jane), data={"unsubscribe": "yes"}).status_code == 200
    assert snapshot(db) == before


def test_the_pages_button_records_source_unsubscribe_page(client, db, jane):
    """The page's own form opts out with source unsubscribe_page and shows the result
    with the masked address and a link to the preference center."""
    reply = client.post(link(jane), data={"unsubscribe": "yes"}, headers={"User-Agent": BROWSER})
    page = reply.get_data(as_text=True)
    assert reply.status_code == 200 and "You are unsubscribed" in page
    assert "j***e@e***.com" in page and "/preferences/" in page
    last = events_of(db, jane)[-1]
    assert (last.source, last.user_agent) == ("unsubscribe_page", BROWSER)


def test_a_post_that_asks_for_nothing_changes_nothing(client, db, jane):
    """A POST with neither the RFC 8058 body nor the button answers 400 and changes nothing."""
    before = snapshot(db)
    for data in ({}, {"List-Unsubscribe": "Maybe"}, {"unsubscribe": "no"}):
        reply = client.post(link(jane), data=data)
        assert reply.status_code == 400
    assert snapshot(db) == before


def test_the_opt_out_stops_marketing_on_that_topic_at_once(client, db, jane):
    """After the POST the gate blocks the topic (opted_out) and still allows the others."""
    client.post(link(jane), data=ONE_CLICK)
    with db.session(read_only=True) as s:
        subscriber = find_by_public_id(s, jane)
        offers = gate.load_recipient(s, subscriber.id, get_topic(s, "offers").id)
        news = gate.load_recipient(s, subscriber.id, get_topic(s, "newsletter").id)
    assert gate.decide(offers.facts, "marketing", None).reason == gate.OPTED_OUT
    assert gate.decide(news.facts, "marketing", None).allowed


def test_a_person_with_no_state_for_the_topic_is_opted_out_too(client, db):
    """Someone who never had a state for the topic still gets an opt-out recorded."""
    public_id = make_person(db, opted_in=("newsletter",))
    reply = client.post(link(public_id, "offers"), data=ONE_CLICK)
    assert reply.status_code == 200
    assert states_of(db, public_id)["offers"] == "opted_out"
    assert [(e.action, e.source) for e in events_of(db, public_id)][-1] == (
        "opt_out",
        "one_click",
    )


def test_a_retired_topic_can_still_be_left(client, db, jane):
    """A topic no longer in the catalogue still honours its unsubscribe links."""
    with db.transaction() as s:
        s.execute(update(Topic).where(Topic.slug == "offers").values(active=False))
    assert client.post(link(jane), data=ONE_CLICK).status_code == 200
    assert events_of(db, jane)[-1].source == "one_click"


def test_a_closed_account_answers_200_and_records_nothing(client, db, jane):
    """A deactivated person's one-click is answered 200 and adds nothing (already out)."""
    with db.transaction() as s:
        subscribers.deactivate(s, find_by_public_id(s, jane), evidence("preference_page"))
    page = client.get(link(jane))
    assert page.status_code == 200 and "account is closed" in page.get_data(as_text=True)
    before = snapshot(db)
    assert client.post(link(jane), data=ONE_CLICK).status_code == 200
    assert snapshot(db) == before


def test_pages_keep_the_token_to_themselves(client, jane):
    """Recipient pages are never cached, never send the token on as a Referer, cannot be
    framed, load nothing from elsewhere and set no cookie."""
    reply = client.get(link(jane))
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["Referrer-Policy"] == "no-referrer"
    assert reply.headers["X-Frame-Options"] == "DENY"
    csp = reply.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "form-action 'self'" in csp
    assert "Set-Cookie" not in reply.headers
    answer = client.post(link(jane), data=ONE_CLICK)
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("app_config", [{"RATELIMIT_DEFAULT": "2 per minute"}])
def test_recipient_pages_are_never_rate_limited(client, db, app_config):
    """Even with an app-wide default rate limit, every one-click POST (mail providers send
    them in bulk from a few addresses) and every page is answered."""
    people = [make_person(db, opted_in=("offers",)) for _ in range(5)]
    for public_id in people:
        assert client.get(link(public_id)).status_code == 200
        assert client.post(link(public_id), data=ONE_CLICK).status_code == 200
    # The limit is really on: the same app refuses a third health check in the minute.
    assert [client.get("/healthz").status_code for _ in range(3)][-1] == 429
