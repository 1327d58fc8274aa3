"""Issue 13 finding 10: an address the service could never send to is refused at the
door (422 naming the field): a non-ASCII local part (it would need SMTPUTF8, which the
relay path does not use) and lengths beyond RFC 5321 (local part 64, path 254 octets).
An internationalised domain is fine: it is sent in its IDNA (punycode) form."""

from __future__ import annotations

import pytest

from mailprefs.domain.models import Subscriber
from tests.conftest import bearer, count


@pytest.mark.parametrize(
    "address",
    ["用户@example.com", "josé@example.com", "a" * 65 + "@example.com"],
    ids=["chinese-local-part", "accented-local-part", "65-character-local-part"],
)
def test_an_address_that_cannot_be_sent_to_is_refused_at_the_door(
    client, marketing_key, db, address
):
    response = client.post(
        "/api/v1/subscribers", json={"email": address}, headers=bearer(marketing_key)
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    (error,) = response.get_json()["errors"]
    assert error["field"] == "email" and "not a valid email address" in error["detail"]
    assert count(db, Subscriber.id) == 0


@pytest.mark.parametrize(
    "address",
    ["a" * 64 + "@example.com", "jo@bücher.example"],
    ids=["64-character-local-part", "internationalised-domain"],
)
def test_addresses_within_the_limits_are_accepted(client, marketing_key, address):
    response = client.post(
        "/api/v1/subscribers", json={"email": address}, headers=bearer(marketing_key)
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def test_a_message_to_an_unsendable_address_is_refused(client, ops_key):
    response = client.post(
        "/api/v1/messages",
        json={"topic": "account", "to": "用户@example.com", "subject": "S", "text": "T"},
        headers=bearer(ops_key),
    )
    assert response.status_code == 422, response.get_data(as_text=True)
