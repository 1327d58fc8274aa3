"""The domain behind the links: the fast opt-out writes what `consent.opt_out` writes,
two clicks at once record one event, and the small lookups the pages use."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from mailprefs import clock
from mailprefs.domain import complaints, confirmations, consent, links, subscribers
from mailprefs.domain.consent import Evidence
from mailprefs.domain.errors import Gone, NotFound
from mailprefs.domain.models import ConsentEvent, TopicSubscription
from mailprefs.domain.subscribers import find_by_public_id
from mailprefs.domain.topics import get_topic
from tests.prefs.support import make_person
from tests.support.factories import NOTICE_SETTINGS, announcement, evidence

PROOF = Evidence(
    source="one_click",
    ip="2001:db8::7",
    user_agent="Mail/1.0",
    actor="recipient",
    context={"campaign": "cmp_1"},
)


def recorded(db, public_id: str) -> tuple[dict, dict]:
    """The last event and the state row of `offers`, without ids and the person."""
    with db.session(read_only=True) as s:
        person = find_by_public_id(s, public_id)
        offers = get_topic(s, "offers")
        event = s.scalar(
            select(ConsentEvent)
            .where(ConsentEvent.subscriber_id == person.id)
            .order_by(ConsentEvent.id.desc())
            .limit(1)
        )
        state = s.get(TopicSubscription, (person.id, offers.id))
        fields = ("action", "source", "ip", "user_agent", "policy_version", "actor")
        return (
            {f: getattr(event, f) for f in fields}
            | {
                "context": event.context,
                "topic_id": event.topic_id,
                "occurred_at": event.occurred_at,
                "recorded_at": event.recorded_at,
            },
            {
                "state": state.state,
                "changed_at": state.changed_at,
                "points_at_the_event": state.event_id == event.id,
            },
        )


def test_the_fast_opt_out_writes_exactly_what_consent_opt_out_writes(db):
    """Same event (every field) and same state row as the general path, on both
    databases; and rebuilding the projection from the ledger finds no difference."""
    fast = make_person(db, opted_in=("offers",))
    general = make_person(db, opted_in=("offers",))
    clock.freeze(clock.now() + timedelta(seconds=5))
    with db.engine.begin() as connection:
        done = links.opt_out(connection, fast, "offers", PROOF)
    with db.transaction() as s:
        consent.opt_out(s, find_by_public_id(s, general), get_topic(s, "offers"), PROOF)
    assert done == links.Unsubscribed(True, "Offers and product news", done.email)
    assert recorded(db, fast) == recorded(db, general)
    with db.transaction() as s:
        assert consent.rebuild(s, fix=False) == []


def test_the_fast_opt_out_is_idempotent(db):
    """A second opt-out reports no change and writes nothing."""
    person = make_person(db, opted_in=("offers",))
    with db.engine.begin() as connection:
        assert links.opt_out(connection, person, "offers", PROOF).changed
    with db.session(read_only=True) as s:
        count = s.scalar(select(func.count(ConsentEvent.id)))
    with db.engine.begin() as connection:
        assert not links.opt_out(connection, person, "offers", PROOF).changed
    with db.session(read_only=True) as s:
        assert s.scalar(select(func.count(ConsentEvent.id))) == count


def test_the_fast_opt_out_refuses_unknown_and_erased_people_and_topics(db):
    """Unknown person or topic: NotFound; erased person: Gone; nothing is written."""
    person = make_person(db, opted_in=("offers",))
    erased = make_person(db, opted_in=("offers",))
    with db.transaction() as s:
        subscribers.erase(s, find_by_public_id(s, erased), hash_key="test-hash-key", actor="t")
    with db.session(read_only=True) as s:
        before = s.scalar(select(func.count(ConsentEvent.id)))
    for public_id, slug, error in (
        ("nobody", "offers", NotFound),
        (person, "no-such-topic", NotFound),
        (person, "account", NotFound),
        (erased, "offers", Gone),
    ):
        with pytest.raises(error), db.engine.begin() as connection:
            links.opt_out(connection, public_id, slug, PROOF)
    with db.session(read_only=True) as s:
        assert s.scalar(select(func.count(ConsentEvent.id))) == before


def test_two_clicks_at_once_record_one_event(db):
    """Two transactions opting out the same person at the same moment: the second waits
    for the first and finds the opt-out done; one event, one change."""
    person = make_person(db, opted_in=("offers",))
    first_done, release = threading.Event(), threading.Event()
    results: dict[str, bool] = {}

    def first() -> None:
        with db.engine.begin() as connection:
            results["first"] = links.opt_out(connection, person, "offers", PROOF).changed
            first_done.set()
            release.wait(10)

    def second() -> None:
        with db.engine.begin() as connection:
            results["second"] = links.opt_out(connection, person, "offers", PROOF).changed

    one = threading.Thread(target=first)
    one.start()
    assert first_done.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.5)
    assert two.is_alive()  # it waits for the first transaction
    release.set()
    one.join(10)
    two.join(10)
    assert results == {"first": True, "second": False}
    with db.session(read_only=True) as s:
        events = s.scalars(
            select(ConsentEvent.action).where(ConsentEvent.source == "one_click")
        ).all()
    assert events == ["opt_out"]


def test_a_preference_page_change_during_a_click_records_one_event(db):
    """A one-click opting out, and at the same moment the preference page (which locks
    the person, then reads the state through the ORM) opting out too: the page waits
    for the click's transaction, then finds the opt-out done; one event."""
    person = make_person(db, opted_in=("offers",))
    clicked, release = threading.Event(), threading.Event()
    results: dict[str, bool] = {}

    def click() -> None:
        with db.engine.begin() as connection:
            results["click"] = links.opt_out(connection, person, "offers", PROOF).changed
            clicked.set()
            release.wait(10)

    def preference_page() -> None:
        with db.transaction() as s:
            subscriber = links.find_person(s, person, for_update=True)
            _state, event = consent.opt_out(
                s, subscriber, get_topic(s, "offers"), evidence("preference_page")
            )
            results["page"] = event is not None

    clicking = threading.Thread(target=click)
    clicking.start()
    assert clicked.wait(10)
    page = threading.Thread(target=preference_page)
    page.start()
    page.join(0.5)
    assert page.is_alive()  # it waits for the click's transaction
    release.set()
    clicking.join(10)
    page.join(10)
    assert results == {"click": True, "page": False}
    with db.session(read_only=True) as s:
        sources = s.scalars(
            select(ConsentEvent.source).where(ConsentEvent.action == "opt_out")
        ).all()
    assert sources == ["one_click"]


def test_find_person_and_marketing_topic(db):
    """The lookups of the pages: unknown -> NotFound, erased -> Gone, administrative or
    retired topics are not offered to join."""
    person = make_person(db)
    with db.transaction() as s:
        assert links.find_person(s, person, for_update=True).public_id == person
        with pytest.raises(NotFound):
            links.find_person(s, "nobody")
        assert links.marketing_topic(s, "offers").slug == "offers"
        with pytest.raises(NotFound):
            links.marketing_topic(s, "account")
        get_topic(s, "newsletter").active = False
        s.flush()
        assert links.marketing_topic(s, "newsletter").slug == "newsletter"
        with pytest.raises(NotFound):
            links.marketing_topic(s, "newsletter", active_only=True)


def test_requested_since_sees_a_recent_confirmation_mail_for_that_topic_only(db):
    """confirmations.requested_since: true after a confirmation mail for the topic was
    queued after the moment given, false for another topic or an earlier moment."""
    person = make_person(db, opted_in=("newsletter",), confirmed=False)  # queues one now
    with db.session(read_only=True) as s:
        subscriber = find_by_public_id(s, person)
        newsletter, offers = get_topic(s, "newsletter"), get_topic(s, "offers")
        a_minute_ago = clock.now() - timedelta(minutes=1)
        assert confirmations.requested_since(s, subscriber, newsletter, a_minute_ago)
        assert not confirmations.requested_since(s, subscriber, offers, a_minute_ago)
        later = clock.now() + timedelta(minutes=1)
        assert not confirmations.requested_since(s, subscriber, newsletter, later)


def test_open_for_finds_a_persons_open_complaint_until_resolved(db):
    """complaints.open_for: the person's open complaint, and None once it is resolved."""
    person = make_person(db, opted_in=("offers",))
    with db.transaction() as s:
        subscriber = find_by_public_id(s, person)
        assert complaints.open_for(s, subscriber) is None
        complaint = complaints.report(
            s,
            subscriber=subscriber,
            email_hash=None,
            source="preference_page",
            evidence=evidence("preference_page"),
        )
        assert complaints.open_for(s, subscriber).id == complaint.id
        complaints.resolve(s, complaint, actor="ops", resolution="was a forwarded mail")
        s.flush()
        assert complaints.open_for(s, subscriber) is None


def test_the_fast_opt_out_never_names_a_policy_whose_notice_was_cancelled(db):
    """A version whose announcement was cancelled never takes effect: after its date the
    one-click statement still records the version in force before it, as the general
    path does (both find it through consent.in_force_query)."""
    from mailprefs.domain import campaigns, policies

    with db.transaction() as s:
        before = consent.policy_version_in_force(s, clock.now())
        what = announcement("withdrawn-1", clock.now() + timedelta(days=31))
        withdrawn = policies.announce(s, what, NOTICE_SETTINGS, "test")
        campaigns.cancel(s, withdrawn.campaign, "test")
    clock.freeze(clock.now() + timedelta(days=40))
    fast = make_person(db, opted_in=("offers",))
    general = make_person(db, opted_in=("offers",))
    with db.engine.begin() as connection:
        links.opt_out(connection, fast, "offers", PROOF)
    with db.transaction() as s:
        consent.opt_out(s, find_by_public_id(s, general), get_topic(s, "offers"), PROOF)
    assert recorded(db, fast)[0]["policy_version"] == before != "withdrawn-1"
    assert recorded(db, fast) == recorded(db, general)


# --- the twins held equal on any input ------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@st.composite
def _opt_outs(draw):
    """A starting state of the topic (none, pending, opted in, opted out) and the
    evidence of one unsubscribe click, as varied as clients send it."""
    slug, start = draw(
        st.sampled_from(
            [
                ("offers", "none"),
                ("offers", "opted_in"),
                ("offers", "opted_out"),
                ("newsletter", "pending"),
                ("newsletter", "opted_in"),
            ]
        )
    )
    proof = Evidence(
        source=draw(st.sampled_from(["one_click", "unsubscribe_page"])),
        ip=draw(st.sampled_from([None, "198.51.100.7", "2001:db8::7"])),
        user_agent=draw(st.none() | _text.filter(bool).map(lambda t: t * 40)),
        actor="recipient",
        context=draw(st.none() | st.fixed_dictionaries({"campaign": _text})),
        occurred_at=draw(
            st.none()
            | st.timedeltas(min_value=timedelta(hours=-2), max_value=timedelta(minutes=4)).map(
                lambda d: NOW + d
            )
        ),
    )
    return slug, start, proof


NOW = clock.now().replace(microsecond=0)


def _start(db, slug: str, start: str) -> str:
    opted_in = () if start == "none" else (slug,)
    public_id = make_person(db, opted_in=opted_in, confirmed=start != "pending")
    if start == "opted_out":
        with db.transaction() as s:
            consent.opt_out(s, find_by_public_id(s, public_id), get_topic(s, slug), evidence())
    return public_id


def _written(db, public_id: str, slug: str) -> dict:
    """Every event of the person (without ids), the topic's state row, `updated_at`."""
    with db.session(read_only=True) as s:
        person = find_by_public_id(s, public_id)
        topic = get_topic(s, slug)
        events = s.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.subscriber_id == person.id)
            .order_by(ConsentEvent.id)
        ).all()
        fields = ("topic_id", "action", "source", "ip", "user_agent", "actor", "context")
        fields += ("policy_version", "occurred_at", "recorded_at")
        state = s.get(TopicSubscription, (person.id, topic.id))
        return {
            "events": [{f: getattr(e, f) for f in fields} for e in events],
            "state": state and (state.state, state.changed_at, state.event_id == events[-1].id),
            "updated_at": person.updated_at,
        }


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_opt_outs())
def test_property_the_fast_opt_out_and_consent_opt_out_write_the_same(db, case):
    """Property: from any starting state, with any evidence a client sends, the link's
    fast opt-out (`links.opt_out`) and the general one (`consent.opt_out`) answer alike
    and leave the same events, state row and person behind."""
    slug, start, proof = case
    clock.freeze(NOW - timedelta(minutes=1))
    fast, general = _start(db, slug, start), _start(db, slug, start)
    clock.freeze(NOW)
    with db.engine.begin() as connection:
        done = links.opt_out(connection, fast, slug, proof)
    with db.transaction() as s:
        person = find_by_public_id(s, general)
        _state, event = consent.opt_out(s, person, get_topic(s, slug), proof)
    assert done.changed == (event is not None)
    assert _written(db, fast, slug) == _written(db, general, slug)
