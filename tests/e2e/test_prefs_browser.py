"""Recipient pages in a real browser (Debian's chromium through Playwright), following
links taken from mail the worker really sent (captured as .eml files). Each page is
screenshotted; any console error fails the test (the `page` fixture)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.extensions import get_tokens
from tests.prefs.support import (
    aged_token,
    captured,
    events_of,
    link_in_text,
    make_person,
    send_campaign,
    states_of,
    unsubscribe_link,
)

JANE = "jane.doe@example.com"


@pytest.fixture
def mail_links_here(app, server):
    """Links in mail point at the live server (the worker reads the base URL)."""
    app.config["MAILPREFS_BASE_URL"] = server
    return server


def marketing_mail(app, db, address: str = JANE):
    make_person(db, address, opted_in=("offers",), attributes={"first_name": "Jane"})
    send_campaign(app, db, subject="Spring offers")
    (message,) = captured(app, address)
    return message


def test_a_person_unsubscribes_from_the_link_in_a_captured_mail(
    app, db, page, shot, mail_links_here
):
    """The List-Unsubscribe link of a real mail (the same as its footer link) opens a
    page naming the topic and the masked address; pressing Unsubscribe shows the
    confirmation and records the opt-out (source unsubscribe_page)."""
    message = marketing_mail(app, db)
    url = unsubscribe_link(message)
    assert url == link_in_text(message, "u")
    assert url.startswith(mail_links_here + "/u/")
    assert page.goto(url).status == 200
    assert page.get_by_role("heading", level=1).inner_text().startswith("Unsubscribe from")
    assert "j***e@e***.com" in page.inner_text("main")
    shot("unsubscribe-page")
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "You are unsubscribed"
    assert "Offers and product news" in page.get_by_role("status").inner_text()
    shot("unsubscribed")
    events = _events_for(db, JANE)
    assert (events[-1].action, events[-1].source) == ("opt_out", "unsubscribe_page")
    assert "HeadlessChrome" in events[-1].user_agent or "Chrome" in events[-1].user_agent


def _events_for(db, address: str):
    from mailprefs.domain.subscribers import find_by_address

    with db.session(read_only=True) as s:
        public_id = find_by_address(s, address, "test-hash-key").public_id
    return events_of(db, public_id)


def _states_for(db, address: str) -> dict[str, str]:
    from mailprefs.domain.subscribers import find_by_address

    with db.session(read_only=True) as s:
        public_id = find_by_address(s, address, "test-hash-key").public_id
    return states_of(db, public_id)


def test_a_person_changes_preferences_then_closes_the_account(app, db, page, shot, mail_links_here):
    """From the mail's preference link: untick offers, tick the newsletter, save (the page
    says so); then close the account through its second step."""
    message = marketing_mail(app, db)
    page.goto(link_in_text(message, "preferences"))
    shot("preferences")
    offers = page.get_by_label("Offers and product news")
    newsletter = page.get_by_label("Newsletter")
    assert offers.is_checked() and not newsletter.is_checked()
    offers.uncheck()
    newsletter.check()
    page.get_by_role("button", name="Save my choices").click()
    page.wait_for_url(re.compile(r"done=saved"))
    assert "Your choices are saved." in page.get_by_role("status").inner_text()
    assert not page.get_by_label("Offers and product news").is_checked()
    assert page.get_by_label("Newsletter").is_checked()
    shot("preferences-saved")
    assert _states_for(db, JANE)["offers"] == "opted_out"
    assert _states_for(db, JANE)["newsletter"] == "opted_in"

    page.get_by_role("link", name="Close my account").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Close your account?"
    assert _states_for(db, JANE)["newsletter"] == "opted_in"  # the first step changes nothing
    shot("close-account")
    page.get_by_role("button", name="Yes, close my account").click()
    page.wait_for_url(re.compile(r"done=closed"))
    assert "Your account is closed" in page.inner_text("main")
    shot("account-closed")
    assert [e.action for e in _events_for(db, JANE)][-1] == "deactivate"


def test_a_person_reports_an_unsolicited_email(app, db, page, shot, mail_links_here):
    """The report form on the preference page opens a complaint and says so."""
    message = marketing_mail(app, db)
    page.goto(link_in_text(message, "preferences"))
    page.get_by_label("What happened? (optional)").fill("I never asked for this.")
    page.get_by_role("button", name="Report an unsolicited email").click()
    page.wait_for_url(re.compile(r"done=reported"))
    assert "Thank you for telling us" in page.get_by_role("status").inner_text()
    shot("reported")
    assert _events_for(db, JANE)[-1].source == "complaint"


def test_a_person_confirms_a_double_opt_in_from_the_captured_mail(
    app, db, page, shot, mail_links_here
):
    """Registering for the newsletter queues a confirmation mail; its link shows a
    button; pressing it confirms (source confirmation)."""
    make_person(db, "pat@example.net", opted_in=("newsletter",), confirmed=False)
    Worker(app).run_due()
    (message,) = captured(app, "pat@example.net")
    assert "confirm" in message["Subject"].lower()
    page.goto(link_in_text(message, "confirm"))
    assert "Newsletter" in page.get_by_role("heading", level=1).inner_text()
    shot("confirm")
    page.get_by_role("button", name="Confirm my subscription").click()
    page.wait_for_load_state()
    assert "You are subscribed" in page.get_by_role("heading", level=1).inner_text()
    shot("confirmed")
    assert _states_for(db, "pat@example.net")["newsletter"] == "opted_in"
    assert _events_for(db, "pat@example.net")[-1].source == "confirmation"


def test_an_expired_confirmation_offers_a_new_link(app, db, page, server, shot, expected_console):
    """An expired link shows a 'send me a new link' button, which queues one."""
    expected_console.append(r"status of 400")
    public_id = make_person(db, "late@example.net", opted_in=("newsletter",), confirmed=False)
    clock.freeze(clock.now() + timedelta(hours=50))  # the first mail went out 50 hours ago
    token = aged_token(app, "confirm", {"s": public_id, "t": "newsletter"}, 50 * 3600)
    assert page.goto(f"{server}/confirm/{token}").status == 400
    shot("confirm-expired")
    page.get_by_role("button", name="Send me a new link").click()
    page.wait_for_load_state()
    assert "We have emailed a new confirmation link" in page.inner_text("main")
    shot("new-link-sent")


def test_a_bad_link_shows_a_plain_page(page, server, shot, expected_console):
    """A tampered link: a 400 page in the same style, with the organisation's footer."""
    expected_console.append(r"status of 400")
    assert page.goto(f"{server}/u/not-a-valid-token").status == 400
    assert page.get_by_role("heading", level=1).inner_text() == "This link is not valid"
    assert "ICVT Ltd." in page.locator("footer").inner_text()
    shot("bad-link")


def test_every_page_fits_a_360_pixel_screen(app, db, browser, server, shot, expected_console):
    """At 360 px wide no page scrolls sideways (scrollWidth <= 360)."""
    tokens = get_tokens()
    person = make_person(db, "a.rather.long.address.for.a.phone@example.org", opted_in=("offers",))
    pending = make_person(db, opted_in=("newsletter",), confirmed=False)
    expired = aged_token(app, "confirm", {"s": pending, "t": "newsletter"}, 50 * 3600)
    prefs = f"{server}/preferences/{tokens.preferences(person, 'cmp_1')}"
    urls = {
        "unsubscribe": f"{server}/u/{tokens.unsubscribe(person, 'offers', 'cmp_1')}",
        "preferences": prefs,
        "preferences-saved": prefs + "?done=saved",
        "close-account": prefs + "?step=close",
        "confirm": f"{server}/confirm/{tokens.confirm(pending, 'newsletter')}",
        "confirm-expired": f"{server}/confirm/{expired}",
        "bad-link": f"{server}/u/not-a-valid-token",
    }
    context = browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2)
    phone = context.new_page()
    errors: list[str] = []
    phone.on(
        "console",
        lambda m: m.type == "error" and "status of 400" not in m.text and errors.append(m.text),
    )
    try:
        for name, url in urls.items():
            phone.goto(url)
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"{name} is {width}px wide"
            shot(f"360-{name}", phone)
    finally:
        context.close()
    assert errors == []


def test_the_unsubscribe_works_with_javascript_off(app, db, browser, server, shot):
    """No script is needed: with JavaScript disabled the button still unsubscribes."""
    person = make_person(db, opted_in=("offers",))
    context = browser.new_context(java_script_enabled=False)
    try:
        nojs = context.new_page()
        nojs.goto(f"{server}/u/{get_tokens().unsubscribe(person, 'offers', 'cmp_1')}")
        nojs.get_by_role("button", name="Unsubscribe").click()
        nojs.wait_for_load_state()
        assert nojs.get_by_role("heading", level=1).inner_text() == "You are unsubscribed"
        shot("unsubscribed-without-javascript", nojs)
    finally:
        context.close()
    assert states_of(db, person)["offers"] == "opted_out"


def test_keyboard_focus_is_visible(app, db, page, server):
    """Tabbing to the button gives it a visible outline of at least 2 px."""
    person = make_person(db, opted_in=("offers",))
    page.goto(f"{server}/u/{get_tokens().unsubscribe(person, 'offers')}")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.tagName") == "BUTTON":
            break
    style = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )
    assert style[0] != "none" and style[1] >= 2
