"""Leader election through the database: one row of `leases`, a heartbeat, a fencing token.

Works the same on PostgreSQL and SQLite. Every step is one conditional UPDATE, so the
database decides who wins:

- acquire: take the row when its lease has run out, and add one to `fencing_token`;
- renew (the heartbeat): push `expires_at` forward, only while holder and token are ours;
- guard: inside a job's own transaction, check that holder and token are still ours and
  the lease has not run out (PostgreSQL: `FOR SHARE`, so a takeover waits for the job's
  transaction to end instead of overlapping it);
- release (clean shutdown): end the lease now, so a standby takes over at its next poll.

A leader killed with -9 is replaced once its lease has run out and a standby polls:
at most `lease + heartbeat` seconds (15 + 5 by default). Lease times come from
`mailprefs.clock`: the machines' clocks must agree to well within the lease (NTP).
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.db import Database
from mailprefs.domain.outbox_models import Lease

SCHEDULER_LEASE = "scheduler"


def new_holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leadership:
    """One process's claim on a named lease. Not shared between processes."""

    def __init__(
        self,
        db: Database,
        *,
        seconds: int,
        name: str = SCHEDULER_LEASE,
        holder: str | None = None,
    ) -> None:
        self.db = db
        self.name = name
        self.holder = holder or new_holder_id()
        self.lease = timedelta(seconds=seconds)
        self.token: int | None = None

    @property
    def held(self) -> bool:
        """Whether we believe we lead (the database has the last word: see `guard`)."""
        return self.token is not None

    def acquire(self) -> bool:
        """Take the lease if it has run out (or never existed). True when we now lead."""
        now = clock.now()
        with self.db.transaction() as session:
            self._ensure_row(session, now)
            token = session.execute(
                update(Lease)
                .where(Lease.name == self.name, Lease.expires_at < now)
                .values(
                    holder=self.holder,
                    fencing_token=Lease.fencing_token + 1,
                    acquired_at=now,
                    renewed_at=now,
                    expires_at=now + self.lease,
                )
                .returning(Lease.fencing_token)
                .execution_options(synchronize_session=False)
            ).scalar()
        self.token = token
        return token is not None

    def renew(self) -> bool:
        """The heartbeat. False when someone else took over (we must stop at once)."""
        if self.token is None:
            return False
        now = clock.now()
        with self.db.transaction() as session:
            renewed = session.execute(
                update(Lease)
                .where(*self._ours())
                .values(renewed_at=now, expires_at=now + self.lease)
                .execution_options(synchronize_session=False)
            ).rowcount
        if renewed != 1:
            self.token = None
        return renewed == 1

    def guard(self, session: Session) -> bool:
        """In the caller's transaction: are we still the leader, with an unexpired lease?"""
        if self.token is None:
            return False
        query = (
            select(Lease.fencing_token)
            .where(*self._ours(), Lease.expires_at > clock.now())
            .with_for_update(read=True)
        )
        return session.scalar(query) is not None

    def release(self) -> None:
        """End our lease now (clean shutdown): a standby need not wait for it to run out."""
        if self.token is None:
            return
        with self.db.transaction() as session:
            session.execute(
                update(Lease)
                .where(*self._ours())
                .values(expires_at=clock.now())
                .execution_options(synchronize_session=False)
            )
        self.token = None

    def _ours(self) -> tuple:
        return (
            Lease.name == self.name,
            Lease.holder == self.holder,
            Lease.fencing_token == self.token,
        )

    def _ensure_row(self, session: Session, now: datetime) -> None:
        dialect = session.get_bind().dialect.name
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(Lease.__table__)
        session.execute(
            insert.values(
                name=self.name,
                holder="",
                acquired_at=now,
                renewed_at=now,
                expires_at=now - timedelta(seconds=1),
                fencing_token=0,
            ).on_conflict_do_nothing()
        )


def current(db: Database, name: str = SCHEDULER_LEASE) -> Lease | None:
    """The lease row as it is (for status displays)."""
    with db.session(read_only=True) as session:
        lease = session.get(Lease, name)
        if lease is not None:
            session.expunge(lease)
        return lease
