"""Racing identical creates never answer 500: one wins, the others get 409."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from datetime import timedelta

import pytest

from mailprefs import clock
from mailprefs.domain import policies
from mailprefs.domain.errors import Conflict
from mailprefs.domain.outbox_models import PolicyVersion
from tests.conftest import bearer, count
from tests.policies.test_policies_api import T0, body
from tests.support.factories import NOTICE_SETTINGS, announcement
from tests.support.servers import live_server


def test_concurrent_announcements_of_one_version_store_one_and_answer_409(app, ops_key, db):
    clock.freeze(T0)
    payload = json.dumps(body()).encode()
    statuses: list[int] = []
    with live_server(app) as base:

        def post() -> None:
            request = urllib.request.Request(
                f"{base}/api/v1/policies",
                data=payload,
                method="POST",
                headers={**bearer(ops_key), "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)

        threads = [threading.Thread(target=post) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert sorted(statuses) == [201, 409, 409, 409, 409, 409]
    assert count(db, PolicyVersion.id) == 2  # the initial policy and the new one


@pytest.mark.postgres_only
def test_a_create_that_loses_the_race_after_its_first_look_answers_409_not_422(
    app, db, monkeypatch
):
    """The interleaving the test above meets by chance, made certain: the winner commits
    between the loser's look for the version and its check that versions take effect in
    order. The loser's own dates are then "not later than the latest", but the reason to
    refuse it is that its version exists: 409, and nothing stored."""
    clock.freeze(T0)
    what = announcement("2026-04-02", T0 + timedelta(days=31))
    settings = NOTICE_SETTINGS
    first_look = policies._refuse_known
    looks: list[str] = []

    def winner_commits_after_the_first_look(session, version):
        looks.append(version)
        first_look(session, version)
        if len(looks) == 1:
            with db.transaction() as other:
                policies.announce(other, what, settings, "winner")

    monkeypatch.setattr(policies, "_refuse_known", winner_commits_after_the_first_look)
    before = count(db, PolicyVersion.id)
    with pytest.raises(Conflict), db.transaction() as session:
        policies.announce(session, what, settings, "loser")
    assert count(db, PolicyVersion.id) == before + 1  # the winner's, not the loser's
