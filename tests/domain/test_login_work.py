"""Issue 13 finding 7: a login attempt costs the same whatever the login's state
(unknown, locked, wrong password, right password): one argon2 operation each, so the
answer's timing tells nothing. (Timings themselves are measured in bench/, not here.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailprefs import clock
from mailprefs.domain import users

PASSWORD = "a long enough password"


class CountingHasher:
    def __init__(self, real):
        self.real = real
        self.operations = 0

    def hash(self, *args, **kwargs):
        self.operations += 1
        return self.real.hash(*args, **kwargs)

    def verify(self, *args, **kwargs):
        self.operations += 1
        return self.real.verify(*args, **kwargs)

    def check_needs_rehash(self, *args, **kwargs):
        return self.real.check_needs_rehash(*args, **kwargs)


@pytest.mark.parametrize(
    ("email", "password", "locked"),
    [
        ("nobody@example.com", "whatever password", False),
        ("staff@example.com", "wrong password here", True),
        ("staff@example.com", PASSWORD, True),
        ("staff@example.com", "wrong password here", False),
        ("staff@example.com", PASSWORD, False),
    ],
    ids=["unknown", "locked-wrong", "locked-right", "wrong", "right"],
)
def test_every_login_answer_costs_one_argon2_operation(db, monkeypatch, email, password, locked):
    with db.transaction() as s:
        user = users.create(s, "staff@example.com", "ops", PASSWORD)
        if locked:
            user.locked_until = clock.now() + timedelta(minutes=10)
    counting = CountingHasher(users._hasher)
    monkeypatch.setattr(users, "_hasher", counting)
    with db.transaction() as s:
        users.verify(s, email, password, max_failures=5, lockout=timedelta(minutes=10))
    assert counting.operations == 1
