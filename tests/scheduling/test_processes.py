"""Real scheduler and worker processes: kill -9 the leader, restart after downtime,
SIGTERM, `make run`'s single process. Real time here (these are about processes)."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.domain import campaigns, consent, policies, subscribers, suppression
from mailprefs.domain.models import SuppressionReason
from mailprefs.domain.outbox_models import Campaign, CampaignStatus, Lease
from mailprefs.domain.topics import get_topic
from mailprefs.scheduling import view
from tests.support import processes
from tests.support.factories import HASH_KEY, evidence, person
from tests.support.ports import free_port
from tests.support.processes import wait_until
from tests.support.smtp_sink import read_maildir

pytestmark = pytest.mark.slow

LEASE_SECONDS = 15  # the default of MAILPREFS_SCHEDULER_LEASE_SECONDS


@pytest.fixture
def app_config():
    # The test announces notices that take effect within a minute.
    return {"MAILPREFS_POLICY_NOTICE_DAYS": 0}


@pytest.fixture
def started(tmp_path):
    """Start CLI processes; whatever is still running at the end is killed."""
    procs: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str], name: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        proc = processes.start(args, env, log)
        procs.append(proc)
        return proc, log

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def says(log: Path, text: str) -> int:
    return log.read_text().count(text) if log.exists() else 0


def status(db, campaign_id) -> CampaignStatus:
    with db.session(read_only=True) as s:
        return s.get(Campaign, campaign_id).status


def received(maildir, subject_part: str) -> collections.Counter:
    return collections.Counter(
        str(m["To"]) for m in read_maildir(maildir) if subject_part in str(m["Subject"])
    )


def mixed_population(db) -> list[str]:
    """People the gate treats differently; returns the addresses a notice must reach."""
    told = []
    with db.transaction() as s:
        for i in range(30):
            told.append(person(s, f"p{i:02d}@example.com", opted_in=("offers",) * (i % 2)).email)
        out = person(s, "opted-out@example.com", opted_in=("offers",))
        consent.opt_out(s, out, get_topic(s, "offers"), evidence("one_click"))
        told.append(out.email)
        gone = person(s, "deactivated@example.com")
        subscribers.deactivate(s, gone, evidence("preference_page"))
        subscribers.erase(s, person(s, "erased@example.com"), hash_key=HASH_KEY, actor="t")
        child = person(s, "child@example.com")
        subscribers.erase(s, child, hash_key=HASH_KEY, actor="t", reason="underage")
        bounced = person(s, "bounced@example.com")
        suppression.add(s, bounced.email_hash, SuppressionReason.BOUNCE, source="smtp")
    return told


def announce(db, version, announce_in: float, effective_in: float) -> int:
    now = datetime.now(UTC)
    with db.transaction() as s:
        policy = policies.announce(
            s,
            policies.Announcement(
                version=version,
                title="Shorter retention",
                summary="We keep server logs for 30 days instead of 90.",
                url="https://example.test/privacy",
                effective_at=now + timedelta(seconds=effective_in),
                announce_at=now + timedelta(seconds=announce_in),
            ),
            policies.NoticeSettings(0, "ICVT Ltd.", "support@example.test"),
            "test",
        )
        return policy.campaign_id


@pytest.mark.postgres_only
def test_kill_9_of_the_leader_hands_over_within_30_s_and_the_notice_goes_out_once(
    db, database_url, tmp_path, sink_process, started, record_property
):
    """Two schedulers; the leader is killed with -9 right after firing a policy notice.
    The standby takes over in under 30 s (measured), fires what falls due afterwards,
    keeps the notice taking newcomers, and every eligible person gets exactly one
    notice; nothing is fired twice."""
    maildir, port = sink_process
    told = mixed_population(db)
    env = processes.environment(
        database_url, tmp_path, smtp_port=port, MAILPREFS_WORKER_IDLE_SECONDS="0.2"
    )
    leader, leader_log = started(["mailprefs", "scheduler"], env, "scheduler-a")
    assert wait_until(lambda: says(leader_log, "scheduler.elected"), timeout=60)
    standby, standby_log = started(["mailprefs", "scheduler"], env, "scheduler-b")
    assert wait_until(lambda: says(standby_log, "scheduler.standing_by"), timeout=60)
    for i in range(2):
        started(["mailprefs", "worker"], env, f"worker{i}")

    notice = announce(db, "2026-takeover", announce_in=1, effective_in=50)
    assert wait_until(lambda: status(db, notice) == CampaignStatus.SENDING, timeout=30)
    with db.session(read_only=True) as s:
        notice_id = s.get(Campaign, notice).public_id
    leader.send_signal(signal.SIGKILL)
    leader.wait(timeout=10)
    killed_at = time.monotonic()

    # While nobody leads: newcomers register, a campaign falls due.
    with db.transaction() as s:
        for i in range(3):
            told.append(person(s, f"newcomer{i}@example.com").email)
        offers = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject="Offers of the week",
            text="Hello",
            html=None,
            send_at=clock.now() + timedelta(seconds=2),
            audience=None,
            created_by="test",
        )
        offers_id, offers_public = offers.id, offers.public_id

    assert wait_until(lambda: says(standby_log, "scheduler.elected"), timeout=40)
    takeover = time.monotonic() - killed_at
    record_property("takeover_seconds", round(takeover, 1))
    (Path(os.environ.get("MAILPREFS_ARTIFACTS", tmp_path)) / "takeover.json").write_text(
        json.dumps({"takeover_seconds": round(takeover, 2), "lease_seconds": LEASE_SECONDS})
    )
    print(f"\ntakeover after kill -9: {takeover:.1f} s (lease {LEASE_SECONDS} s)")
    assert takeover < 30

    assert wait_until(lambda: status(db, offers_id) == CampaignStatus.SENT, timeout=60)
    assert wait_until(lambda: status(db, notice) == CampaignStatus.SENT, timeout=120)
    notices = received(maildir, "privacy policy")
    assert sorted(notices) == sorted(told), "exactly the eligible, newcomers included"
    assert set(notices.values()) == {1}, "nobody told twice"
    assert sorted(received(maildir, "Offers of the week")) == [
        f"p{i:02d}@example.com" for i in range(30) if i % 2
    ]
    logs = leader_log.read_text() + standby_log.read_text()
    assert logs.count(f"kind=policy campaign={notice_id}") == 1
    assert logs.count(f"kind=campaign campaign={offers_public}") == 1
    assert f"kind=campaign campaign={offers_public}" in standby_log.read_text()
    standby.send_signal(signal.SIGTERM)
    assert standby.wait(timeout=30) == 0


def test_a_job_missed_during_downtime_fires_once_after_a_restart(
    app, db, database_url, tmp_path, started
):
    """The scheduler is stopped; meanwhile a campaign falls due and the housekeeping job
    misses several runs. On restart each runs exactly once (not zero, not many), and the
    housekeeping run does its work (a stale confirmation mail is cancelled)."""
    env = processes.environment(database_url, tmp_path)
    first, first_log = started(["mailprefs", "scheduler"], env, "first")
    assert wait_until(lambda: says(first_log, "scheduler.elected"), timeout=60)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    assert says(first_log, "scheduler.stopped")

    # Downtime: 35 minutes for housekeeping (every 10), a campaign's time, a stale
    # confirmation request (older than its link would live).
    store = view._store(app)
    job = store.lookup_job("housekeeping")
    job.next_run_time = datetime.now(UTC) - timedelta(minutes=35)
    store.update_job(job)
    clock.freeze(datetime.now(UTC) - timedelta(hours=50))
    with db.transaction() as s:
        person(s, "stale@example.com", opted_in=("newsletter",), confirmed=False)
        campaign = campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject="Missed",
            text="Hello",
            html=None,
            send_at=clock.now() + timedelta(hours=49),
            audience=None,
            created_by="test",
        )
        campaign_id, public_id = campaign.id, campaign.public_id
    clock.unfreeze()

    second, second_log = started(["mailprefs", "scheduler"], env, "second")
    assert wait_until(
        lambda: says(second_log, "job.housekeeping stale_confirmations=1"), timeout=60
    )
    assert wait_until(lambda: status(db, campaign_id) == CampaignStatus.SENDING, timeout=30)
    time.sleep(7)  # a tick or two more
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    log = second_log.read_text()
    assert log.count("job.housekeeping") == 1
    assert log.count(f"kind=campaign campaign={public_id}") == 1


def test_sigterm_releases_leadership_so_a_standby_takes_over_at_its_next_poll(
    db, database_url, tmp_path, started
):
    """A leader stopped with SIGTERM exits 0 and ends its lease: the standby is elected
    at its next poll (a third of the lease), not after the lease runs out."""
    env = processes.environment(database_url, tmp_path)
    leader, leader_log = started(["mailprefs", "scheduler"], env, "leader")
    assert wait_until(lambda: says(leader_log, "scheduler.elected"), timeout=60)
    standby, standby_log = started(["mailprefs", "scheduler"], env, "standby")
    assert wait_until(lambda: says(standby_log, "scheduler.standing_by"), timeout=60)
    leader.send_signal(signal.SIGTERM)
    assert leader.wait(timeout=30) == 0
    stopped_at = time.monotonic()
    with db.session(read_only=True) as s:
        lease = s.get(Lease, "scheduler")
        assert lease.expires_at <= datetime.now(UTC), "released, not left to run out"
    assert wait_until(lambda: says(standby_log, "scheduler.elected"), timeout=LEASE_SECONDS)
    assert time.monotonic() - stopped_at < LEASE_SECONDS / 3 + 3
    standby.send_signal(signal.SIGTERM)
    assert standby.wait(timeout=30) == 0


def test_make_run_serves_schedules_and_sends_in_one_process_and_stops_cleanly(
    db, database_url, tmp_path, started
):
    """`flask mailprefs serve` (what `make run` starts) runs the web app, the scheduler
    and a worker: a campaign scheduled a moment ahead is fired and its mail captured;
    SIGTERM stops everything and releases the scheduler lease."""
    with db.transaction() as s:
        person(s, "ann@example.com", opted_in=("offers",))
        campaigns.create(
            s,
            topic=get_topic(s, "offers"),
            subject="From make run",
            text="Hello",
            html=None,
            send_at=clock.now() + timedelta(seconds=2),
            audience=None,
            created_by="test",
        )
    port = free_port()
    env = processes.environment(database_url, tmp_path, MAILPREFS_WORKER_IDLE_SECONDS="0.2")
    server, log = started(["mailprefs", "serve", "--port", str(port)], env, "serve")
    captured = tmp_path / "mail"
    assert wait_until(lambda: captured.exists() and any(captured.glob("*.eml")), timeout=60), (
        log.read_text()
    )
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        assert answer.status == 200
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0, log.read_text()
    assert "mailprefs stopped" in log.read_text()
    with db.session(read_only=True) as s:
        lease = s.scalar(select(Lease).where(Lease.name == "scheduler"))
        assert lease.expires_at <= datetime.now(UTC)
