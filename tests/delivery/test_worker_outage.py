"""Real processes: a worker outlives PostgreSQL stopping and starting under it (nothing
lost, nothing sent twice), and no log line of a full send holds an address."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select

from mailprefs.db import Database
from mailprefs.domain import messages, test_copies, users
from mailprefs.domain.outbox_models import Campaign, Delivery, DeliveryStatus
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import get_db
from mailprefs.migrate import upgrade
from tests.conftest import make_test_app
from tests.support import processes
from tests.support.factories import person, started_campaign
from tests.support.private_postgres import PrivateCluster
from tests.support.processes import wait_until
from tests.support.smtp_sink import read_maildir

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    private = PrivateCluster().init()
    private.start()
    yield private
    private.destroy()


def campaign_for(db, addresses: list[str]) -> int:
    with db.transaction() as s:
        for address in addresses:
            person(s, address, opted_in=("offers",), attributes={"first_name": "Ada"})
        return started_campaign(s, text="Hello {{ first_name }}, {{ email }}")


def json_events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_worker_outlives_postgresql_stopping_and_starting_nothing_lost_or_doubled(
    cluster, tmp_path, sink_process
):
    """A running `worker` process; PostgreSQL (a private cluster) is stopped mid-send for
    a few seconds and started again. The worker stays up, says so in its log, and once
    the database is back finishes: every person mailed exactly once, every row sent."""
    maildir, port = sink_process
    database = Database(cluster.url)
    upgrade(database)
    database.dispose()
    app = make_test_app(cluster.url, tmp_path)
    db = get_db(app)
    addresses = [f"p{i:03d}@example.com" for i in range(300)]
    campaign_for(db, addresses)
    db.dispose()  # the test's own connections must not outlive the restart either

    env = processes.environment(
        cluster.url,
        tmp_path,
        smtp_port=port,
        MAILPREFS_SEND_RATE="40",
        MAILPREFS_BATCH_SIZE="25",
        MAILPREFS_WORKER_IDLE_SECONDS="0.2",
        MAILPREFS_LOG_FORMAT="json",
    )
    log = tmp_path / "worker.log"
    worker = processes.start(["mailprefs", "worker"], env, log)
    try:
        assert wait_until(lambda: len(read_maildir(maildir)) >= 60, timeout=120), log.read_text()
        cluster.stop("fast")
        time.sleep(4)
        assert worker.poll() is None, log.read_text()
        assert wait_until(lambda: "worker.database_unavailable" in log.read_text(), timeout=30)
        during = len(read_maildir(maildir))
        assert during < len(addresses)
        cluster.start()

        def all_sent() -> bool:
            with db.session(read_only=True) as s:
                return s.scalar(
                    select(func.count(Delivery.id)).where(Delivery.status == DeliveryStatus.SENT)
                ) == len(addresses)

        assert wait_until(all_sent, timeout=180), log.read_text()
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    assert code == 0, log.read_text()
    got = collections.Counter(str(m["To"]) for m in read_maildir(maildir))
    assert sorted(got) == sorted(addresses), "nobody lost"
    assert set(got.values()) == {1}, "nobody mailed twice"
    events = [e["event"] for e in json_events(log.read_text())]
    assert "worker.database_unavailable" in events and "worker.recovered" in events
    assert "@" not in log.read_text()
    db.dispose()


def test_no_log_line_of_a_full_send_holds_an_address(db, database_url, tmp_path, sink_process):
    """`run-due` in its own process, JSON logs: batches, a retry (450), refusals quoting
    the address (550 and 554), a blocked message to an unknown address, a test copy. Its
    whole output is searched for the addresses, their local parts and any `@`."""
    maildir, port = sink_process
    addresses = [
        "jane.doe@example.com",
        "reject550.rita@example.com",
        "temp450.tom@example.com",
        "data554.dan@example.com",
        "flaky1.fay@example.com",
    ]
    campaign_id = campaign_for(db, addresses)
    with db.transaction() as s:
        users.create(s, "staff.sam@example.com", "ops", "a long enough password")
        staff = test_copies.staff_addresses(s, None)
        campaign = s.get(Campaign, campaign_id)
        test_copies.queue(s, campaign, ["staff.sam@example.com"], staff=staff, actor="test")
        messages.enqueue(
            s,
            topic=get_topic(s, "account"),
            subscriber=None,
            subject="Receipt for ghost@example.com",
            text="Thanks",
            html=None,
            created_by="test",
        )
    env = processes.environment(database_url, tmp_path, smtp_port=port, MAILPREFS_LOG_FORMAT="json")
    run = subprocess.run(
        [processes.FLASK, "--app", "wsgi", "mailprefs", "run-due", "--quiet"],
        cwd=processes.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    output = run.stdout + run.stderr
    events = [e["event"] for e in json_events(run.stderr)]
    assert "worker.batch" in events and "outbox.retry" in events
    assert all(line.startswith("{") for line in run.stderr.splitlines()), run.stderr
    mailed = {str(m["To"]) for m in read_maildir(maildir)}
    assert {"jane.doe@example.com", "staff.sam@example.com"} <= mailed  # it did send
    assert "@" not in output
    for address in [*addresses, "staff.sam@example.com", "ghost@example.com"]:
        assert address.split("@")[0] not in output
