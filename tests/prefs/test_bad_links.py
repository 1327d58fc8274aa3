"""Bad links: tampered, truncated, expired, foreign, unknown, erased, test copies. Each
answers a plain 400 or 404 page in the same style, never a 500, and changes nothing.
Tokens signed with an older key of the SECRET_KEY list keep working."""

from __future__ import annotations

import pytest

from mailprefs.delivery.message import TEST_COPY_ID
from mailprefs.domain import subscribers
from mailprefs.domain.subscribers import find_by_public_id
from mailprefs.domain.tokens import TokenService
from mailprefs.extensions import get_tokens
from tests.prefs.support import ONE_CLICK, aged_token, make_person, snapshot, states_of

DAY = 86400

# (method, path prefix, form) for every recipient route; the POSTs are ones that would
# change something if the token were good.
ROUTES = {
    "unsubscribe": [("GET", "/u/", None), ("HEAD", "/u/", None), ("POST", "/u/", ONE_CLICK)],
    "preferences": [
        ("GET", "/preferences/", None),
        ("POST", "/preferences/", {"action": "all_off"}),
        ("POST", "/preferences/", {"action": "close", "confirm": "yes"}),
        ("POST", "/preferences/", {"action": "report"}),
    ],
    "confirm": [("GET", "/confirm/", None), ("POST", "/confirm/", {"confirm": "yes"})],
}


def payload_for(purpose: str, public_id: str) -> dict:
    return {
        "unsubscribe": {"s": public_id, "t": "offers", "c": "cmp_x"},
        "preferences": {"s": public_id, "c": "cmp_x"},
        "confirm": {"s": public_id, "t": "newsletter"},
    }[purpose]


def tampered(token: str) -> str:
    payload, _, rest = token.partition(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    return f"{flipped}.{rest}"


def bad_tokens(app, purpose: str, person: str, erased: str) -> dict[str, tuple[str, int]]:
    """Every kind of bad token for `purpose`, with the status it must get."""
    tokens = get_tokens()
    good = tokens.make(purpose, payload_for(purpose, person))
    foreign_purpose = {"unsubscribe": "preferences", "preferences": "confirm"}.get(
        purpose, "unsubscribe"
    )
    stranger = TokenService(
        ["a-key-nobody-here-knows"], unsubscribe_max_age=DAY, confirm_max_age=3600
    )
    max_age = {"confirm": 48 * 3600}.get(purpose, 400 * DAY)
    kinds = {
        "garbage": ("not-a-token", 400),
        "tampered payload": (tampered(good), 400),
        "tampered signature": (good[:-3] + ("xyz" if good[-3:] != "xyz" else "abc"), 400),
        "truncated": (good[: len(good) // 2], 400),
        "foreign purpose": (tokens.make(foreign_purpose, payload_for(purpose, person)), 400),
        "unknown key": (stranger.make(purpose, payload_for(purpose, person)), 400),
        "oversized": ("a" * 2000, 400),
        "malformed payload": (tokens.make(purpose, {"s": 12345, "t": ["offers"]}), 400),
        "unknown person": (tokens.make(purpose, payload_for(purpose, "nobody-at-all")), 404),
        "erased person": (tokens.make(purpose, payload_for(purpose, erased)), 404),
        "test copy": (tokens.make(purpose, payload_for(purpose, TEST_COPY_ID)), 404),
    }
    if purpose != "confirm":  # an expired confirmation has a page of its own
        kinds["expired"] = (
            aged_token(app, purpose, payload_for(purpose, person), max_age + 60),
            400,
        )
    if purpose != "preferences":
        kinds["unknown topic"] = (
            tokens.make(purpose, {**payload_for(purpose, person), "t": "no-such-topic"}),
            404,
        )
        kinds["administrative topic"] = (
            tokens.make(purpose, {**payload_for(purpose, person), "t": "account"}),
            404,
        )
    return kinds


@pytest.fixture
def people(db):
    person = make_person(db, opted_in=("offers",))
    pending = make_person(db, opted_in=("newsletter",), confirmed=False)
    erased = make_person(db, opted_in=("offers",))
    with db.transaction() as s:
        subscribers.erase(s, find_by_public_id(s, erased), hash_key="test-hash-key", actor="test")
    return person, pending, erased


@pytest.mark.parametrize("purpose", sorted(ROUTES))
def test_bad_links_answer_400_or_404_pages_and_change_nothing(app, client, db, people, purpose):
    """Every bad token on every route: 400 (invalid, expired, foreign) or 404 (nobody or
    nothing to act on), a plain HTML page with the organisation's footer, no change."""
    person, pending, erased = people
    subject = pending if purpose == "confirm" else person
    before = snapshot(db)
    for kind, (token, status) in bad_tokens(app, purpose, subject, erased).items():
        for method, prefix, form in ROUTES[purpose]:
            reply = client.open(prefix + token, method=method, data=form)
            where = f"{kind}: {method} {prefix}"
            assert reply.status_code == status, where
            assert reply.mimetype == "text/html", where
            if method != "HEAD":
                page = reply.get_data(as_text=True)
                assert '<html lang="en">' in page and "Privacy policy" in page, where
                assert "23 Menachem Begin Rd." in page, where
    assert snapshot(db) == before
    assert states_of(db, person)["offers"] == "opted_in"
    assert states_of(db, pending)["newsletter"] == "pending"


def test_a_test_copy_link_says_it_acts_on_nobody(client):
    """Links in test copies of a campaign answer 404 with a page saying so."""
    token = get_tokens().unsubscribe(TEST_COPY_ID, "offers", "cmp_x")
    for reply in (client.get(f"/u/{token}"), client.post(f"/u/{token}", data=ONE_CLICK)):
        assert reply.status_code == 404
        assert "test copy" in reply.get_data(as_text=True)


def test_an_erased_persons_link_says_nothing_is_held(client, db, people):
    """An erased person's link answers 404: no data is held, the address is not mailed."""
    token = get_tokens().preferences(people[2])
    page = client.get(f"/preferences/{token}").get_data(as_text=True)
    assert "no longer hold any data" in page


def test_an_expired_unsubscribe_link_says_so(app, client, db, people):
    """A link older than MAILPREFS_UNSUBSCRIBE_MAX_AGE_DAYS answers 400 'expired'."""
    token = aged_token(app, "unsubscribe", payload_for("unsubscribe", people[0]), 401 * DAY)
    reply = client.post(f"/u/{token}", data=ONE_CLICK)
    assert reply.status_code == 400 and "expired" in reply.get_data(as_text=True)
    fresh = aged_token(app, "unsubscribe", payload_for("unsubscribe", people[0]), 399 * DAY)
    assert client.post(f"/u/{fresh}", data=ONE_CLICK).status_code == 200


OLD, NEW = "an-old-signing-key-0123456789", "the-new-signing-key-0123456789"


@pytest.mark.parametrize("app_config", [{"SECRET_KEY": f"{NEW},{OLD}"}])
def test_a_token_signed_with_an_older_key_keeps_working(client, db, app_config):
    """SECRET_KEY "new,old": a link signed with "old" alone still works, GET and POST."""
    person = make_person(db, opted_in=("offers",))
    old_only = TokenService([OLD], unsubscribe_max_age=400 * DAY, confirm_max_age=48 * 3600)
    token = old_only.unsubscribe(person, "offers", "cmp_x")
    assert client.get(f"/u/{token}").status_code == 200
    assert client.post(f"/u/{token}", data=ONE_CLICK).status_code == 200
    assert states_of(db, person)["offers"] == "opted_out"
    prefs = old_only.preferences(person)
    assert client.get(f"/preferences/{prefs}").status_code == 200
    # ... and new links are signed with the first key of the list.
    assert get_tokens().unsubscribe(person, "offers") != old_only.unsubscribe(person, "offers")
    new_only = TokenService([NEW], unsubscribe_max_age=400 * DAY, confirm_max_age=48 * 3600)
    assert new_only.load("unsubscribe", get_tokens().unsubscribe(person, "offers"))["s"] == person


@pytest.mark.parametrize("app_config", [{"SECRET_KEY": f"{NEW},{OLD}"}])
def test_a_token_signed_with_a_key_no_longer_listed_is_refused(client, db, app_config):
    """A key dropped from the SECRET_KEY list no longer verifies: 400, nothing changes."""
    person = make_person(db, opted_in=("offers",))
    dropped = TokenService(
        ["a-retired-key-0123456789"], unsubscribe_max_age=DAY, confirm_max_age=3600
    )
    before = snapshot(db)
    reply = client.post(f"/u/{dropped.unsubscribe(person, 'offers')}", data=ONE_CLICK)
    assert reply.status_code == 400
    assert snapshot(db) == before
