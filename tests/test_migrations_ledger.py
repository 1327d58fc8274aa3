"""Migration 0004 (a `source_detail` column on the consent ledger) leaves the ledger's
append-only triggers exactly as 0001 made them, up and down, on both databases.

The schema is compared whole, as each database describes itself (SQLite's
`sqlite_master`; PostgreSQL's catalogue: columns, constraints, indexes, triggers and
function bodies), not only as far as the models' metadata sees it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from mailprefs.db import Database
from mailprefs.migrate import alembic_config, upgrade
from tests.test_migrations import fresh_url  # noqa: F401  (the fixture: both databases)

_SQLITE = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
_POSTGRES = {
    "columns": """
        SELECT table_name, ordinal_position, column_name, data_type, character_maximum_length,
               is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY table_name, ordinal_position""",
    "constraints": """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public' ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' ORDER BY 1, 2""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' ORDER BY 1""",
}


def _clauses(body: str) -> list[str]:
    """A CREATE TABLE's body split at its top-level commas (not those inside parentheses)."""
    clauses, depth, current = [], 0, ""
    for char in body:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            clauses.append(" ".join(current.split()))
            current = ""
        else:
            current += char
    return [*clauses, " ".join(current.split())]


def _sqlite_object(kind: str, name: str, table: str, sql: str | None) -> tuple:
    if kind != "table" or sql is None:
        return kind, name, table, sql
    # SQLite keeps a table's CREATE statement as last written: a copy made by batch mode
    # quotes the name, lists the constraints in no fixed order and puts columns added by
    # ALTER on lines of their own. What the table is: its columns in order, and the set of
    # its constraints.
    clauses = _clauses(sql[sql.index("(") + 1 : sql.rindex(")")])
    constraints = sorted(c for c in clauses if c.startswith("CONSTRAINT"))
    return kind, name, table, [c for c in clauses if c not in constraints], constraints


def schema(database: Database) -> dict[str, list[tuple]]:
    """Everything the database holds about its schema, by kind of object."""
    with database.engine.connect() as connection:
        if database.engine.dialect.name == "sqlite":
            found: dict[str, list[tuple]] = {}
            for row in connection.execute(sa.text(_SQLITE)):
                found.setdefault(row.type, []).append(_sqlite_object(*row))
            return found
        return {
            kind: [tuple(r) for r in connection.execute(sa.text(sql))]
            for kind, sql in _POSTGRES.items()
        }


def ledger_guard(found: dict[str, list[tuple]]) -> list[tuple]:
    """The ledger's append-only guard: its triggers (and, on PostgreSQL, their function)."""
    if "table" in found:  # SQLite's kinds of object
        return [t for t in found["trigger"] if t[2] == "consent_events"]
    guard = [t for t in found["triggers"] if t[0] == "consent_events"]
    return guard + [f for f in found["functions"] if f[0] == "consent_events_append_only"]


def test_0004_keeps_the_ledger_triggers_up_and_down(fresh_url):  # noqa: F811
    """Upgrading through 0004 leaves the ledger's triggers as 0001 made them, and the
    downgrade gives back the schema 0003s had, object for object (triggers included)."""
    database = Database(fresh_url)
    upgrade(database, "0003s")
    before = schema(database)
    guard = ledger_guard(before)
    assert len(guard) == 2, "0001 makes two triggers (SQLite), or a trigger and its function"
    upgrade(database, "0004")
    assert ledger_guard(schema(database)) == guard
    upgrade(database)
    assert ledger_guard(schema(database)) == guard
    command.downgrade(alembic_config(database), "0003s")
    after = schema(database)
    database.dispose()
    assert ledger_guard(after) == guard
    assert after == before
