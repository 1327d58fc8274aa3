"""Issue 13 finding 12 (links): a valid token with anything outside the token alphabet
appended (a non-ASCII letter, a space) is refused with a 400 page and changes nothing."""

from __future__ import annotations

import urllib.parse

import pytest

from mailprefs.extensions import get_tokens
from tests.prefs.support import ONE_CLICK, make_person, states_of


@pytest.mark.parametrize("suffix", ["é", "Ω", "\u200b", " ", "%"])
def test_a_good_token_with_a_foreign_character_appended_is_refused(client, db, suffix):
    person = make_person(db, opted_in=("offers",))
    good = get_tokens().unsubscribe(person, "offers")
    path = "/u/" + urllib.parse.quote(good + suffix)
    before = states_of(db, person)
    assert client.get(path).status_code == 400
    posted = client.post(path, data=ONE_CLICK)
    assert posted.status_code == 400 and posted.mimetype == "text/html"
    assert states_of(db, person) == before == {**before, "offers": "opted_in"}
    assert client.post("/u/" + good, data=ONE_CLICK).status_code == 200  # the good one works
