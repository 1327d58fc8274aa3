"""imports: bulk import jobs, their rejected rows, hashed suppressions; source_detail

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-01

Every consent event may now say which form, event, page or wording it came through
(`source_detail`); the ledger's append-only triggers are made again so the new column
is frozen like the others. `imports` holds each uploaded file's job and checkpoint,
`import_errors` its rejected rows, `hashed_suppressions` the plain SHA-256 hashes of
addresses another sender suppressed.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003s'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

# The ledger's frozen columns (0001's list). source_detail is free text that may quote the
# address, so, like IP and user agent, erasure may take the address out of it; the ORM
# guard (consent.ERASABLE_FIELDS) keeps it unchanged otherwise.
_FROZEN_BEFORE = (
    "id", "subscriber_id", "topic_id", "action", "source", "policy_version", "actor",
    "context", "occurred_at", "recorded_at",
)
_FROZEN_AFTER = _FROZEN_BEFORE


def upgrade() -> None:
    op.create_table('hashed_suppressions',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('import_id', BigId, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_hashed_suppressions'))
    )
    op.create_table('imports',
    sa.Column('id', BigId, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.Enum('subscribers', 'suppressions', name='import_kind', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'done', 'failed', 'cancelled', name='import_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('send_confirmations', sa.Boolean(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('done_records', sa.BigInteger(), nullable=False),
    sa.Column('done_lines', sa.BigInteger(), nullable=False),
    sa.Column('done_offset', sa.BigInteger(), nullable=False),
    sa.Column('seen', sa.LargeBinary(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imports')),
    sa.UniqueConstraint('created_by', 'idempotency_key', name=op.f('uq_imports_created_by_idempotency_key')),
    sa.UniqueConstraint('public_id', name=op.f('uq_imports_public_id'))
    )
    op.create_index('ix_imports_status', 'imports', ['status'], unique=False)
    op.create_table('import_errors',
    sa.Column('id', BigId, nullable=False),
    sa.Column('import_id', BigId, nullable=False),
    sa.Column('line', sa.Integer(), nullable=False),
    sa.Column('field', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['imports.id'], name=op.f('fk_import_errors_import_id_imports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_errors'))
    )
    op.create_index('ix_import_errors_import_id_id', 'import_errors', ['import_id', 'id'], unique=False)
    # A plain ADD COLUMN on both databases: nullable, no default, no table copy.
    op.add_column('consent_events', sa.Column('source_detail', sa.String(length=1000), nullable=True))
    _ledger_triggers(_FROZEN_AFTER)


def downgrade() -> None:
    _ledger_triggers(_FROZEN_BEFORE)
    with op.batch_alter_table('consent_events') as batch_op:
        batch_op.drop_column('source_detail')
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite copies the table to drop a column, which drops its triggers: make them again.
        _ledger_triggers(_FROZEN_BEFORE)
    op.drop_index('ix_import_errors_import_id_id', table_name='import_errors')
    op.drop_table('import_errors')
    op.drop_index('ix_imports_status', table_name='imports')
    op.drop_table('imports')
    op.drop_table('hashed_suppressions')


def _ledger_triggers(frozen: tuple[str, ...]) -> None:
    """(Re)make 0001's append-only triggers over `frozen` columns."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in frozen if c != "context")
        changed += " OR NEW.context::text IS DISTINCT FROM OLD.context::text"
        op.execute(f"""
            CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    RAISE EXCEPTION 'consent_events is append-only: rows cannot be deleted';
                END IF;
                IF {changed}
                   OR (NEW.ip IS NOT NULL AND NEW.ip IS DISTINCT FROM OLD.ip)
                   OR (NEW.user_agent IS NOT NULL AND NEW.user_agent IS DISTINCT FROM OLD.user_agent)
                THEN
                    RAISE EXCEPTION 'consent_events is append-only: only erasure may blank ip and user_agent';
                END IF;
                RETURN NEW;
            END;
            $$ LANGUAGE plpgsql
        """)
        return
    if dialect == "sqlite":
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in frozen)
        op.execute("DROP TRIGGER IF EXISTS consent_events_no_delete")
        op.execute("DROP TRIGGER IF EXISTS consent_events_no_update")
        op.execute("""
            CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
            BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: rows cannot be deleted'); END
        """)
        op.execute(f"""
            CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
            WHEN {changed}
              OR (NEW.ip IS NOT NULL AND NEW.ip IS NOT OLD.ip)
              OR (NEW.user_agent IS NOT NULL AND NEW.user_agent IS NOT OLD.user_agent)
            BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: only erasure may blank ip and user_agent'); END
        """)
