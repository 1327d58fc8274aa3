"""Issue 13 finding 9: the under-13 check reads every spelling of an age or birth-date
attribute (case and separators ignored), and refuses the intake with nothing stored."""

from __future__ import annotations

import pytest

from mailprefs import clock
from mailprefs.domain.models import Subscriber
from tests.conftest import bearer, count


def years_ago(n: int) -> str:
    today = clock.now().date()
    return today.replace(year=today.year - n).isoformat()


def register(client, key: str, email: str, name: str, value):
    """A person with the one attribute `name`, through the API."""
    body = {"email": email, "attributes": {name: value}}
    return client.post("/api/v1/subscribers", json=body, headers=bearer(key))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Age", 9),
        ("AGE", 12),
        ("age_years", 10),
        ("birthDate", "10"),
        ("BirthDate", "10"),
        ("Birth_Date", "10"),
        ("Date_Of_Birth", "10"),
        ("DateOfBirth", "10"),
        ("DOB", "10"),
    ],
)
def test_every_spelling_of_an_age_under_13_is_refused(client, marketing_key, db, name, value):
    if isinstance(value, str):
        value = years_ago(int(value))
    response = register(client, marketing_key, "kid@example.com", name, value)
    assert response.status_code == 422, response.get_data(as_text=True)
    (error,) = response.get_json()["errors"]
    assert error["field"] == f"attributes.{name}" and "under 13" in error["detail"]
    assert count(db, Subscriber.id) == 0


@pytest.mark.parametrize(
    ("name", "value"), [("Age", 30), ("birthDate", "40"), ("agency", "x"), ("dobby", 3)]
)
def test_adults_and_unrelated_names_are_accepted(client, marketing_key, name, value):
    if name == "birthDate":
        value = years_ago(int(value))
    response = register(client, marketing_key, "adult@example.com", name, value)
    assert response.status_code == 201, response.get_data(as_text=True)
