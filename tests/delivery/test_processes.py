"""Nothing lost, nothing twice: real worker processes, a real SMTP server, kill -9."""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select

from mailprefs import clock
from mailprefs.domain import campaigns
from mailprefs.domain.outbox_models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from tests.support import processes
from tests.support.factories import campaign_due_now, person
from tests.support.processes import wait_until
from tests.support.smtp_sink import read_maildir

pytestmark = pytest.mark.slow


def audience(db, count, local="p"):
    with db.transaction() as s:
        for i in range(count):
            person(s, f"{local}{i:04d}@example.com", opted_in=("offers",))
        return campaign_due_now(s).id


def received(maildir) -> collections.Counter:
    return collections.Counter(str(m["To"]) for m in read_maildir(maildir))


def finished(db, campaign_id) -> bool:
    """Expanded and drained: the campaign is `sent` (nothing queued is not enough: before
    expansion nothing is queued either)."""
    with db.session(read_only=True) as s:
        return s.get(Campaign, campaign_id).status == CampaignStatus.SENT


def queued(db, campaign_id) -> int:
    with db.session(read_only=True) as s:
        return s.scalar(
            select(func.count(Delivery.id)).where(
                Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.QUEUED
            )
        )


def test_several_run_due_at_once_fire_once_and_mail_each_person_once(
    db, database_url, tmp_path, sink_process
):
    maildir, port = sink_process
    campaign_id = audience(db, 120)
    env = processes.environment(
        database_url,
        tmp_path,
        smtp_port=port,
        MAILPREFS_BATCH_SIZE="10",
        MAILPREFS_EXPANSION_BATCH_SIZE="25",
    )
    runs = [
        subprocess.Popen(
            [processes.FLASK, "--app", "wsgi", "mailprefs", "run-due", "--quiet"],
            cwd=processes.ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [r.communicate(timeout=300)[0] for r in runs]
    assert all(r.returncode == 0 for r in runs), outputs
    fired = sum(int(o.split("fired ")[1].split()[0]) for o in outputs if "fired " in o)
    assert fired == 1, outputs
    got = received(maildir)
    assert len(got) == 120 and set(got.values()) == {1}
    with db.session(read_only=True) as s:
        assert s.get(Campaign, campaign_id).status == CampaignStatus.SENT


@pytest.mark.parametrize("connections", [1, 8])
def test_kill_9_of_a_worker_loses_nobody_and_duplicates_at_most_the_messages_on_the_wire(
    db, database_url, tmp_path, sink_process, connections
):
    """Promise: after kill -9 of a worker with a pool of N connections, nobody is lost
    and at most N messages per kill (those on the wire) go twice."""
    maildir, port = sink_process
    # Each message takes 8 ms per connection at the server (1.6 s for all at full speed),
    # so kills land mid-batch, mid-message, with every connection busy.
    campaign_id = audience(db, 200, local=f"slow{8 * connections}.p")
    with db.transaction() as s:
        campaigns.fire_due(s, clock.now())
    env = processes.environment(
        database_url,
        tmp_path,
        smtp_port=port,
        MAILPREFS_LEASE_SECONDS="2",
        MAILPREFS_BATCH_SIZE="50",
        MAILPREFS_WORKER_IDLE_SECONDS="0.2",
        MAILPREFS_SMTP_CONNECTIONS=str(connections),
    )
    rng = random.Random(20261126)
    kills = 0
    for round_ in range(3):
        worker = processes.start(["mailprefs", "worker"], env, tmp_path / f"worker{round_}.log")
        time.sleep(rng.uniform(0.4, 1.0))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        kills += 1
        if finished(db, campaign_id):
            break
    worker = processes.start(["mailprefs", "worker"], env, tmp_path / "worker-final.log")
    assert wait_until(lambda: "started" in (tmp_path / "worker-final.log").read_text(), timeout=60)
    try:
        assert wait_until(lambda: finished(db, campaign_id), timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    got = received(maildir)
    assert len(got) == 200, "every recipient got the mail"
    duplicates = sum(n - 1 for n in got.values())
    assert duplicates <= kills * connections, f"{duplicates} duplicates after {kills} kills"
    with db.session(read_only=True) as s:
        sent = s.scalar(
            select(func.count(Delivery.id)).where(Delivery.status == DeliveryStatus.SENT)
        )
    assert sent == 200


def test_sigterm_finishes_the_message_in_hand_and_releases_the_rest(
    db, database_url, tmp_path, sink_process
):
    maildir, port = sink_process
    campaign_id = audience(db, 60, local="slow20.p")
    with db.transaction() as s:
        campaigns.fire_due(s, clock.now())
    env = processes.environment(
        database_url,
        tmp_path,
        smtp_port=port,
        MAILPREFS_LEASE_SECONDS="600",
        MAILPREFS_BATCH_SIZE="60",
    )
    worker = processes.start(["mailprefs", "worker"], env, tmp_path / "worker.log")
    assert wait_until(lambda: len(read_maildir(maildir)) >= 3, timeout=60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    with db.session(read_only=True) as s:
        leased = s.scalar(select(func.count(Delivery.id)).where(Delivery.lease_owner.is_not(None)))
        sent = s.scalar(
            select(func.count(Delivery.id)).where(Delivery.status == DeliveryStatus.SENT)
        )
    assert leased == 0, "the rest of the batch was given back, not left leased for 10 minutes"
    assert sent == len(read_maildir(maildir)), "every message that left is marked"
    # Another worker takes the rest at once (the lease was released, not left to expire).
    done = processes.flask(["mailprefs", "run-due", "--quiet"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(received(maildir)) == 60 and set(received(maildir).values()) == {1}
    assert queued(db, campaign_id) == 0


@pytest.mark.postgres_only
def test_several_workers_on_postgresql_never_mail_anyone_twice(
    db, database_url, tmp_path, sink_process
):
    maildir, port = sink_process
    campaign_id = audience(db, 400)
    with db.transaction() as s:
        campaigns.fire_due(s, clock.now())
    env = processes.environment(
        database_url,
        tmp_path,
        smtp_port=port,
        MAILPREFS_BATCH_SIZE="20",
        MAILPREFS_EXPANSION_BATCH_SIZE="50",
        MAILPREFS_WORKER_IDLE_SECONDS="0.2",
    )
    workers = [
        processes.start(["mailprefs", "worker"], env, tmp_path / f"w{i}.log") for i in range(4)
    ]
    assert wait_until(
        lambda: all("started" in (tmp_path / f"w{i}.log").read_text() for i in range(4)), timeout=60
    )
    try:
        assert wait_until(lambda: finished(db, campaign_id), timeout=180)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        assert [w.wait(timeout=30) for w in workers] == [0, 0, 0, 0]
    got = received(maildir)
    assert len(got) == 400 and set(got.values()) == {1}
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(4)]
    assert all("started" in log for log in logs)
