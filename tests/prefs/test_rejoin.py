"""`/rejoin/{token}`: the person's own way back into a closed account.

GET shows the button and changes nothing; POST reopens the account and records the
consents with the page's evidence (source confirmation, the page as source_detail, IP,
user agent, policy version in force), audited. Bad, foreign and expired links change
nothing; so does a second press."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import subscribers
from mailprefs.domain.models import AuditEntry, Subscriber
from mailprefs.extensions import get_tokens
from tests.conftest import bearer
from tests.prefs import support
from tests.support.factories import evidence
from tests.support.policy_versions import policy_version

ADDRESS = "back@example.org"


@pytest.fixture
def closed(db) -> str:
    public_id = support.make_person(db, ADDRESS, opted_in=("offers", "newsletter"))
    with db.transaction() as s:
        someone = s.scalar(select(Subscriber).where(Subscriber.public_id == public_id))
        subscribers.deactivate(s, someone, evidence("preference_page"))
    return public_id


def rejoin_url(public_id: str, topics: str = "offers,newsletter") -> str:
    return f"/rejoin/{get_tokens().reactivate(public_id, topics.split(','))}"


def status(db, public_id: str) -> str:
    with db.session(read_only=True) as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.public_id == public_id)).value


def test_get_shows_a_button_and_changes_nothing(client, db, closed):
    before = support.snapshot(db)
    reply = client.get(rejoin_url(closed))
    page = reply.get_data(as_text=True)
    assert reply.status_code == 200
    assert "Join again" in page and 'name="rejoin" value="yes"' in page
    assert "b***k@e***.org" in page
    assert "&ldquo;Offers and product news&rdquo;" in page and "&ldquo;Newsletter&rdquo;" in page
    assert reply.headers["Cache-Control"] == "no-store"
    assert support.snapshot(db) == before


def test_post_reopens_with_the_consents_and_their_evidence(client, db, closed):
    """Active again; a reactivate event, then opt-in (and, for a double opt-in topic, a
    confirm: pressing the button in the mail is the confirmation), each with the page's
    evidence and the policy version in force; an audit entry."""
    reply = client.post(
        rejoin_url(closed),
        data={"rejoin": "yes"},
        headers={"User-Agent": support.BROWSER},
        environ_base={"REMOTE_ADDR": "192.0.2.77"},
    )
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert "Your account is open again" in reply.get_data(as_text=True)
    assert status(db, closed) == "active"
    states = support.states_of(db, closed)
    assert states["offers"] == "opted_in" and states["newsletter"] == "opted_in"
    new = [e for e in support.events_of(db, closed) if e.source == "confirmation" and e.ip]
    assert [(e.action, e.topic.slug if e.topic else None) for e in new] == [
        ("reactivate", None),
        ("opt_in", "offers"),
        ("opt_in", "newsletter"),
        ("confirm", "newsletter"),
    ]
    by_the_page = ("192.0.2.77", support.BROWSER, "recipient")
    for event in new:
        assert (event.ip, event.user_agent, event.actor) == by_the_page
        assert event.source_detail == "POST /rejoin/<token>"
    with db.session(read_only=True) as s:
        [entry] = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "subscriber.reactivate")
        ).all()
        assert entry.target_id == closed and entry.detail["topics"] == ["offers", "newsletter"]
        assert entry.ip == "192.0.2.77"


def test_the_policy_version_in_force_is_recorded(client, db, closed):
    """A version that took effect yesterday is the one the new consents name."""
    with db.transaction() as s:
        yesterday, long_ago = clock.now() - timedelta(days=1), clock.now() - timedelta(days=40)
        policy_version(s, "2026-rejoin", effective_at=yesterday, announce_at=long_ago)
    client.post(rejoin_url(closed), data={"rejoin": "yes"})
    new = [e for e in support.events_of(db, closed) if e.source == "confirmation" and e.ip]
    assert len(new) == 4 and {e.policy_version for e in new} == {"2026-rejoin"}


def test_a_second_press_changes_nothing(client, db, closed):
    client.post(rejoin_url(closed), data={"rejoin": "yes"})
    before = support.snapshot(db)
    reply = client.post(rejoin_url(closed), data={"rejoin": "yes"})
    assert reply.status_code == 200
    assert "already open" in reply.get_data(as_text=True)
    assert support.snapshot(db) == before


@pytest.mark.parametrize(
    "data", [{}, {"rejoin": "no"}, {"List-Unsubscribe": "One-Click"}], ids=["none", "no", "other"]
)
def test_a_post_without_the_button_changes_nothing(client, db, closed, data):
    before = support.snapshot(db)
    reply = client.post(rejoin_url(closed), data=data)
    assert reply.status_code == 400 and "Nothing was changed" in reply.get_data(as_text=True)
    assert support.snapshot(db) == before and status(db, closed) == "deactivated"


def test_bad_foreign_and_expired_links_change_nothing(client, app, db, closed):
    """Tampered, a confirm (or unsubscribe) token of the same person, an expired one:
    400, nothing changed."""
    before = support.snapshot(db)
    good = rejoin_url(closed)
    age = app.config["MAILPREFS_CONFIRM_MAX_AGE_HOURS"] * 3600 + 60  # a minute past expiry
    links = [
        good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb"),
        f"/rejoin/{get_tokens().confirm(closed, 'offers')}",
        f"/rejoin/{get_tokens().unsubscribe(closed, 'offers')}",
        f"/rejoin/{support.aged_token(app, 'reactivate', {'s': closed, 't': 'offers'}, age)}",
        good + "\u00e9",
    ]
    for link in links:
        for method in (client.get, client.post):
            reply = method(link, data={"rejoin": "yes"})
            assert reply.status_code == 400, (link, reply.status_code)
    assert support.snapshot(db) == before and status(db, closed) == "deactivated"


def test_a_rejoin_token_does_not_confirm_or_unsubscribe(client, db, closed):
    token = get_tokens().reactivate(closed, ["offers"])
    assert client.get(f"/confirm/{token}").status_code == 400
    assert client.get(f"/u/{token}").status_code == 400


def test_from_the_signup_to_the_open_account(client, app, db, closed, ops_key):
    """The whole way back: the site registers the closed address again with consents
    (202), the worker mails the request, the person opens the link and presses the
    button: the account is open with the topics asked for."""
    reply = client.post(
        "/api/v1/subscribers",
        json={"email": ADDRESS, "consents": [{"topic": "offers", "source": "web_form"}]},
        headers=bearer(ops_key),
    )
    assert reply.status_code == 202
    Worker(app).run_due()
    [mail] = support.captured(app, ADDRESS)
    link = support.path_of(support.link_in_text(mail, "rejoin"))
    assert status(db, closed) == "deactivated"
    assert client.get(link).status_code == 200
    assert client.post(link, data={"rejoin": "yes"}).status_code == 200
    assert status(db, closed) == "active"
    assert support.states_of(db, closed)["offers"] == "opted_in"
    # Only the topics asked for: the newsletter they had before stays opted out.
    assert support.states_of(db, closed)["newsletter"] == "opted_out"
