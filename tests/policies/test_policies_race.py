"""Racing identical creates never answer 500: one wins, the others get 409."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from mailprefs import clock
from mailprefs.domain.outbox_models import PolicyVersion
from tests.conftest import bearer, count
from tests.policies.test_policies_api import T0, body
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
