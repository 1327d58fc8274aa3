"""The browser harness itself: chromium starts, pages load, console errors are caught."""

from __future__ import annotations


def test_chromium_loads_a_page_from_the_live_server(page, server, shot):
    response = page.goto(f"{server}/healthz")
    assert response.status == 200
    assert '"status":"ok"' in page.content().replace(" ", "")
    assert shot("healthz").exists()


def test_a_missing_page_is_a_plain_page_with_org_details(page, server, expected_console):
    expected_console.append(r"status of 404")
    response = page.goto(f"{server}/no-such-page")
    assert response.status == 404
    assert page.locator("html").get_attribute("lang") == "en"
    assert "ICVT Ltd." in page.locator("footer").inner_text()
    assert page.get_by_role("link", name="Privacy policy").count() == 1
