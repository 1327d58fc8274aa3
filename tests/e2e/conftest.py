"""Browser tests: Playwright driving Debian's chromium (never a downloaded browser).

`page` opens a fresh context on a live server of the test app, fails the test on any
console error or uncaught page error, and `shot(name)` saves a screenshot under
test-artifacts/screenshots/. Without /usr/bin/chromium the tests are skipped, unless
MAILPREFS_REQUIRE_BROWSER=1 (as in CI), where that fails the run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import live_server

CHROMIUM = os.environ.get("MAILPREFS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("MAILPREFS_REQUIRE_BROWSER") == "1":
            pytest.exit(f"browser tests are required but {CHROMIUM} is missing", returncode=3)
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def server(app) -> Iterator[str]:
    with live_server(app) as base:
        yield base


@pytest.fixture
def expected_console() -> list[str]:
    """Regular expressions of console errors a test expects (say, its own 404 page)."""
    return []


@pytest.fixture
def page(browser, server, expected_console):
    """A fresh page; console errors (other than expected ones) and page errors fail the test.

    It asks for `server` so that the server outlives it: torn down first, a page that
    polls (the dashboard's progress bars) would see its requests reset and report them.
    What the browser reports after the test's own steps (while closing) is not counted.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []

    def on_console(message) -> None:
        if message.type == "error" and not any(
            re.search(pattern, message.text) for pattern in expected_console
        ):
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    yield page
    reported = list(problems)
    context.close()
    if reported:
        pytest.fail("the browser reported errors:\n" + "\n".join(reported))


@pytest.fixture
def shot(page, request):
    """shot("name") saves a full-page screenshot named after the test and the step."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def take(step: str, target=None) -> Path:
        path = ARTIFACTS / f"{test}-{step}.png"
        (target or page).screenshot(path=str(path), full_page=True)
        return path

    return take
