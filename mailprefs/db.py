"""Engine, sessions, the declarative Base and `transaction()`.

SQLite and PostgreSQL are both first-class. On SQLite every transaction starts with
`BEGIN IMMEDIATE`: several processes (web, scheduler, workers, `run-due`) write to one
file, and a deferred transaction that later tries to write fails at once with
SQLITE_BUSY instead of waiting. WAL lets readers run beside the one writer.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Tables whose rows erasure blanks (see domain.subscribers.erase).
ERASURE_TABLES = (
    "subscribers",
    "consent_events",
    "deliveries",
    "bounce_events",
    "complaints",
    "suppressions",
    "audit_log",
    "idempotency_records",
    "campaigns",
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite would hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


def _json_dumps(value: Any) -> str:
    # NaN and infinities are not JSON: refused here as a last line, so that no code path
    # can store a document that later breaks every query reading it.
    return json.dumps(value, allow_nan=False)


def make_engine(url: str, *, sqlite_synchronous: str = "NORMAL", echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": 30, "check_same_thread": False},
            json_serializer=_json_dumps,
        )
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        json_serializer=_json_dumps,
    )


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError("MAILPREFS_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL: a commit survives a crash of the process (kill -9); only an
        # operating-system crash or power loss can undo the last commits. See
        # docs/operations.md, "Durability".
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Erasure must not leave personal data readable in free pages of the file.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front; a session that only reads can ask
        # for DEFERRED (Database.session(read_only=True)) and never blocks a writer.
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        # On the driver's connection: SQLAlchemy's execution machinery around a bare
        # BEGIN cost more than the statement (a tenth of a one-click request).
        connection.connection.driver_connection.execute(_BEGIN[mode])


_BEGIN = {"IMMEDIATE": "BEGIN IMMEDIATE", "DEFERRED": "BEGIN DEFERRED"}


class Database:
    """The engine and session factory of one app (or one worker process)."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = url
        self._turn: tuple[int, int] | None = None  # (pid, descriptor) of the write-turn file
        self.engine = make_engine(url, sqlite_synchronous=sqlite_synchronous)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessionmaker = sessionmaker(
            self.engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )

    @contextmanager
    def write_turn(self) -> Iterator[None]:
        """On a SQLite file: wait for this process's turn to write, in a queue the kernel
        keeps (an exclusive `flock` on DATABASE-writelock), before `BEGIN IMMEDIATE`.
        A writer that finds SQLite's own lock taken sleeps in its busy handler (at least
        a millisecond, several times a short transaction) where one waiting on the
        `flock` wakes as soon as the holder is done. For short write transactions run in
        bulk by several processes (the one-click POST); elsewhere, a no-op."""
        path = self.engine.url.database if self.is_sqlite else None
        if not path or path == ":memory:":
            yield
            return
        # One open file per process: a descriptor inherited through fork() would share
        # the lock with the parent instead of queueing against it.
        if self._turn is None or self._turn[0] != os.getpid():
            if self._turn is not None:  # the parent's: this process's copy goes
                os.close(self._turn[1])
                self._turn = None
            try:
                fd = os.open(f"{path}-writelock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:  # a folder we cannot write to: SQLite's own lock still holds
                yield
                return
            self._turn = (os.getpid(), fd)
        fd = self._turn[1]
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def session(self, *, read_only: bool = False) -> Session:
        """A new session. `read_only` sessions do not take SQLite's write lock."""
        return (self.read_sessionmaker if read_only else self.sessionmaker)()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on error."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def purge_erased(self, tables: tuple[str, ...] = ERASURE_TABLES) -> None:
        """After an erasure commits, clear the old row versions out of the files.

        SQLite: `secure_delete` already zeroes freed space; fold the write-ahead log
        into the file and truncate it. PostgreSQL: VACUUM the tables, which prunes the
        dead versions from the heap (indexes hold only the keyed hash, never an address).
        """
        if self.is_sqlite:
            raw = self.engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
            return
        self._vacuum(tables, full=False)

    def compact(self, tables: tuple[str, ...] = ERASURE_TABLES) -> None:
        """Rewrite the tables' files (PostgreSQL: VACUUM FULL), so no erased value is left
        in the free space of a page. PostgreSQL's plain VACUUM frees old row versions but
        leaves their bytes in place until the space is reused; SQLite needs no rewrite
        (secure_delete zeroes freed space). Takes an exclusive lock while it runs."""
        if not self.is_sqlite:
            self._vacuum(tables, full=True)

    def _vacuum(self, tables: tuple[str, ...], *, full: bool) -> None:
        verb = "VACUUM FULL" if full else "VACUUM"
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in tables:
                conn.exec_driver_sql(f"{verb} {table}")

    def dispose(self) -> None:
        self.engine.dispose()


class FastStatement:
    """A Core statement compiled once for one dialect and run on a DBAPI cursor.

    For the few statements run once per message or per one-click request, where
    SQLAlchemy's per-execution bookkeeping (~35 us a statement) is a large part of the
    cost. The SQL is what SQLAlchemy itself would send and every value passes through its
    column type's `bind_processor` (UTC datetimes, JSON, enums), so the same rows are
    written; rows come back as the driver returns them (SQLite: JSON as text, enums as
    their strings). Values fixed in the statement (a topic kind, a LIMIT, a bindparam
    with a callable) are taken once, through `effective_value`, which calls the callable
    where `value` would give None.
    """

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.order = list(compiled.positiontup or []) if compiled.positional else None
        self.processors: dict[str, Any] = {}
        self.constants: dict[str, Any] = {}
        for bind, name in compiled.bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self.processors[name] = process
            else:
                value = bind.effective_value
                self.constants[name] = process(value) if process is not None else value

    def parameters(self, values: dict[str, Any]) -> list[Any] | dict[str, Any]:
        """The driver's parameters: the statement's own names only (extra values are
        ignored, a missing one is a KeyError), in its order where it is positional."""
        params = dict(self.constants)
        for name, process in self.processors.items():
            value = values[name]
            params[name] = process(value) if process is not None else value
        if self.order is not None:
            return [params[name] for name in self.order]
        return params

    def execute(self, dbapi_connection: Any, values: dict[str, Any]) -> Any:
        """Run on `dbapi_connection` (in whatever transaction it is in); the cursor."""
        cursor = dbapi_connection.cursor()
        cursor.execute(self.sql, self.parameters(values))
        return cursor
