"""Every recipient page: `lang`, the organisation's name, postal address and privacy link,
labelled controls, no script, nothing loaded from elsewhere, visible focus styles."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from mailprefs.extensions import get_tokens
from tests.prefs.support import ONE_CLICK, aged_token, make_person

ROOT = Path(__file__).resolve().parents[2]


class Page(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.label_for: set[str] = set()
        self.buttons: list[str] = []
        self._button: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "label" and attributes.get("for"):
            self.label_for.add(attributes["for"])
        if tag == "button":
            self._button = []

    def handle_data(self, data):
        if self._button is not None:
            self._button.append(data)

    def handle_endtag(self, tag):
        if tag == "button" and self._button is not None:
            self.buttons.append("".join(self._button).strip())
            self._button = None


@pytest.fixture
def pages(app, client, db) -> dict[str, str]:
    """Every kind of page a recipient can see, by name."""
    tokens = get_tokens()
    person = make_person(db, opted_in=("offers",))
    pending = make_person(db, opted_in=("newsletter",), confirmed=False)
    other = make_person(db, opted_in=("offers",))
    prefs = f"/preferences/{tokens.preferences(person, 'cmp_1')}"
    expired = aged_token(app, "confirm", {"s": pending, "t": "newsletter"}, 50 * 3600)

    def get(url: str) -> str:
        return client.get(url).get_data(as_text=True)

    out = {
        "unsubscribe": get(f"/u/{tokens.unsubscribe(person, 'offers', 'cmp_1')}"),
        "preferences": get(prefs),
        "close account": get(prefs + "?step=close"),
        "confirm": get(f"/confirm/{tokens.confirm(pending, 'newsletter')}"),
        "confirm expired": get(f"/confirm/{expired}"),
        "bad link": get("/u/not-a-token"),
        "unknown person": get(f"/u/{tokens.unsubscribe('nobody', 'offers')}"),
    }
    out["unsubscribed"] = client.post(
        f"/u/{tokens.unsubscribe(person, 'offers')}", data={"unsubscribe": "yes"}
    ).get_data(as_text=True)
    out["one-click answer"] = client.post(
        f"/u/{tokens.unsubscribe(other, 'offers')}", data=ONE_CLICK
    ).get_data(as_text=True)
    out["saved"] = get(prefs + "?done=saved")
    out["confirmed"] = client.post(
        f"/confirm/{tokens.confirm(pending, 'newsletter')}", data={"confirm": "yes"}
    ).get_data(as_text=True)
    return out


def test_every_page_has_lang_and_the_organisations_details(pages):
    """lang, the organisation's name and postal address, and the privacy policy link."""
    for name, html in pages.items():
        page = Page(html)
        assert ("html", {"lang": "en"}) in page.tags, name
        assert "ICVT Ltd." in html and "23 Menachem Begin Rd., Tel Aviv, Israel" in html, name
        links = [a.get("href") for tag, a in page.tags if tag == "a"]
        assert "https://www.jpegmini.com/main/privacy" in links, name


def test_every_control_is_labelled_and_every_button_says_what_it_does(pages):
    """Each visible input and textarea has a <label for>; each button has text."""
    for name, html in pages.items():
        page = Page(html)
        for tag, attributes in page.tags:
            if tag in ("input", "textarea", "select") and attributes.get("type") != "hidden":
                assert attributes.get("id") in page.label_for, f"{name}: {attributes}"
        assert all(page.buttons), name


def test_pages_run_no_script_and_load_nothing_from_elsewhere(pages):
    """No <script>, no inline styles or handlers; stylesheets and icons come from us."""
    for name, html in pages.items():
        page = Page(html)
        for tag, attributes in page.tags:
            assert tag not in ("script", "iframe", "img", "object", "embed"), name
            assert "style" not in attributes, name
            assert not any(key.startswith("on") for key in attributes), name
            if tag == "link":
                assert attributes["href"].startswith("/static/"), name
        assert "@import" not in html and "url(" not in html, name


def test_forms_post_to_the_page_itself(pages):
    """Every form posts back to its own path (no cross-origin action; JS not needed)."""
    for name, html in pages.items():
        for tag, attributes in Page(html).tags:
            if tag == "form":
                assert attributes["method"] == "post", name
                assert attributes["action"].startswith(("/u/", "/preferences/", "/confirm/"))


def test_the_stylesheet_keeps_focus_visible_and_fits_a_phone():
    """page.css: an outline on focus, a viewport-wide layout, no remote fonts."""
    css = (ROOT / "mailprefs" / "static" / "page.css").read_text()
    assert ":focus-visible { outline: 3px solid" in css
    assert "@media (max-width: 30rem)" in css and "max-width: 100%" in css
    assert "http" not in css and "@font-face" not in css
