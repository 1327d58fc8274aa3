"""Resubscribe from the unsubscribed page: the POST of its button opts the person in
again (a double opt-in topic confirmed by the mailed link), with evidence; a GET or a
bare POST changes nothing; a closed account or a suppressed address is refused."""

from __future__ import annotations

import pytest

from mailprefs.domain import subscribers, suppression
from mailprefs.domain.models import SuppressionReason
from tests.prefs.support import events_of, make_person, snapshot, states_of
from tests.prefs.test_unsubscribe import link
from tests.support.factories import evidence


@pytest.fixture
def jane(db) -> str:
    return make_person(db, "jane.doe@example.com", opted_in=("offers", "newsletter"))


def unsubscribe(client, path: str):
    return client.post(path, data={"unsubscribe": "yes"})


def test_the_unsubscribed_page_offers_resubscribe_which_opts_in_again(client, db, jane):
    """Promise: after unsubscribing with the page's button, its Resubscribe button opts
    the person in again, recorded with the campaign the link came from; again: nothing."""
    path = link(jane)
    page = unsubscribe(client, path).get_data(as_text=True)
    assert 'name="resubscribe" value="yes"' in page
    assert states_of(db, jane)["offers"] == "opted_out"
    reply = client.post(f"{path}/resubscribe", data={"resubscribe": "yes"})
    assert reply.status_code == 200
    assert "You are subscribed again" in reply.get_data(as_text=True)
    assert states_of(db, jane)["offers"] == "opted_in"
    last = events_of(db, jane)[-1]
    assert (last.action.value, last.source) == ("opt_in", "unsubscribe_page")
    assert last.context["campaign"] == "cmp_news1"
    before = snapshot(db)
    again = client.post(f"{path}/resubscribe", data={"resubscribe": "yes"})
    assert "Nothing was changed" in again.get_data(as_text=True) and snapshot(db) == before


def test_a_double_opt_in_topic_is_confirmed_by_the_mailed_link(client, db, jane):
    """Promise: resubscribing to a double opt-in topic needs no second mail: opted_in."""
    path = link(jane, "newsletter")
    unsubscribe(client, path)
    client.post(f"{path}/resubscribe", data={"resubscribe": "yes"})
    assert states_of(db, jane)["newsletter"] == "opted_in"
    assert [e.action.value for e in events_of(db, jane)[-2:]] == ["opt_in", "confirm"]


def test_a_get_or_a_bare_post_changes_nothing(client, db, jane):
    """Promise: link scanners (GET) and a POST without the button's field change nothing."""
    path = link(jane)
    unsubscribe(client, path)
    before = snapshot(db)
    assert client.get(f"{path}/resubscribe").status_code == 405
    bare = client.post(f"{path}/resubscribe")
    assert bare.status_code == 400 and snapshot(db) == before


def test_a_closed_account_or_a_suppressed_address_is_not_resubscribed(client, db, jane):
    """Promise: 409 with words, nothing recorded, for a closed account or an address
    suppressed after a complaint."""
    path = link(jane)
    unsubscribe(client, path)
    with db.transaction() as s:
        person = subscribers.find_by_public_id(s, jane)
        suppression.add(
            s,
            person.email_hash,
            SuppressionReason.COMPLAINT,
            source="arf",
            evidence={"kind": "abuse"},
        )
    before = snapshot(db)
    refused = client.post(f"{path}/resubscribe", data={"resubscribe": "yes"})
    assert refused.status_code == 409 and snapshot(db) == before
    assert "Write to us" in refused.get_data(as_text=True)
    closed = make_person(db, "closed@example.com", opted_in=("offers",))
    with db.transaction() as s:
        subscribers.deactivate(s, subscribers.find_by_public_id(s, closed), evidence())
    before = snapshot(db)
    reply = client.post(f"{link(closed)}/resubscribe", data={"resubscribe": "yes"})
    assert reply.status_code == 409 and "account is closed" in reply.get_data(as_text=True)
    assert snapshot(db) == before
