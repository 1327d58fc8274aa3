"""What the dashboard's browser tests share: the two screen sizes they look at, serving
over plain http, a staff account (`Staff`) and the login form, the page-width check, and
a worker running while a page polls.

A module takes the `app_config` fixture by importing it (name it in `__all__` so the
import is not taken for unused)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import expect

from mailprefs.delivery.worker import Worker
from mailprefs.domain import users

SIZES = {"laptop": {"width": 1280, "height": 900}, "phone": {"width": 360, "height": 740}}
LAPTOP, PHONE = SIZES["laptop"], SIZES["phone"]


@pytest.fixture
def app_config() -> dict:
    # Served over plain http on 127.0.0.1 in the tests: cookies must not require https.
    return {"MAILPREFS_BASE_URL": "http://127.0.0.1"}


def create_staff(db, email: str, role: str, password: str) -> None:
    with db.transaction() as s:
        users.create(s, email, role, password)


def fill_login(page, email: str, password: str) -> None:
    """Fill in and send the login form the page shows."""
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_in(page, server: str, email: str, password: str) -> None:
    """Log in from the login page; staff land on Campaigns."""
    page.goto(f"{server}/dashboard/login")
    fill_login(page, email, password)
    expect(page).to_have_url(f"{server}/dashboard/campaigns")


@dataclass(frozen=True)
class Staff:
    """A module's staff login: its fixture creates it, its tests log in with it."""

    email: str
    role: str
    password: str

    def create(self, db) -> None:
        create_staff(db, self.email, self.role, self.password)

    def log_in(self, page, server: str) -> None:
        log_in(page, server, self.email, self.password)


def fits(page, size: dict, what: str | None = None) -> None:
    """Nothing wider than the screen (tables scroll inside their own box)."""
    width = page.evaluate("document.documentElement.scrollWidth")
    where = page.url if what is None else what
    assert width <= size["width"] + 1, f"{where} is {width}px wide at {size['width']}px"


@contextlib.contextmanager
def worker_running(app) -> Iterator[None]:
    """The scheduler's part (firing due campaigns) and the worker's, as `run-due` does,
    a few times a second in a thread while the page polls; stopped on leaving."""
    worker = Worker(app)

    def work() -> None:
        for _ in range(300):
            if worker.stop.is_set():
                return
            worker.run_due()
            worker.stop.wait(0.2)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        worker.stop.set()
        thread.join(timeout=30)
