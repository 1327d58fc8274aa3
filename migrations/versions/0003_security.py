"""security: finite JSON documents

Revision ID: 0003s
Revises: 0002
Create Date: 2026-12-01

Before issue 13 a NaN or an infinity could be stored in a JSON document on SQLite (the
text 'NaN' is not JSON; PostgreSQL refused it). SQLite's json_extract then fails on
that row ("malformed JSON"), so every audience query with a condition, and every
expansion, failed for everyone. Such values are rewritten as null; the application now
refuses them at every door and in its JSON serializer.

users.session_version: the dashboard's session cookie carries it; logout and a password
change move it on, so a cookie copied before stops working.
"""

import json
import math

from alembic import op
import sqlalchemy as sa


revision = "0003s"
down_revision = "0003h"
branch_labels = None
depends_on = None

JSON_COLUMNS = (
    ("subscribers", "attributes"),
    ("consent_events", "context"),
    ("suppressions", "evidence"),
    ("audit_log", "detail"),
    ("idempotency_records", "response"),
    ("campaigns", "audience"),
    ("campaigns", "meta"),
)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _repair_sqlite(connection) -> None:
    tables = set(sa.inspect(connection).get_table_names())
    for table, column in JSON_COLUMNS:
        if table not in tables:
            continue
        rows = connection.execute(
            sa.text(
                f'SELECT id, "{column}" FROM "{table}" '
                f'WHERE "{column}" IS NOT NULL AND NOT json_valid("{column}")'
            )
        ).all()
        for row_id, raw in rows:
            try:
                repaired = json.dumps(_finite(json.loads(raw)), allow_nan=False)
            except ValueError:
                repaired = None  # not even Python's JSON: nothing to keep
            connection.execute(
                sa.text(f'UPDATE "{table}" SET "{column}" = :v WHERE id = :id'),
                {"v": repaired, "id": row_id},
            )


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        _repair_sqlite(connection)
    # The session cookie names this version; logout and password change move it on.
    op.add_column(
        "users",
        sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("session_version")
    # The repaired JSON values stay null: NaN was never valid.
