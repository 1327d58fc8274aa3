"""imports: bulk import jobs, their rejected rows, hashed suppressions; source_detail

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-01

Every consent event may now say which form, event, page or wording it came through
(`source_detail`); the ledger's append-only triggers stay as 0001 made them (see below).
`imports` holds each uploaded file's job and checkpoint, `import_errors` its rejected
rows, `hashed_suppressions` the plain SHA-256 hashes of addresses another sender
suppressed.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003s'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

# source_detail is free text that may quote the address, so, like IP and user agent,
# erasure may take the address out of it: it is not one of the ledger's frozen columns,
# and the ORM guard (consent.ERASABLE_FIELDS) keeps it unchanged otherwise. Adding it
# leaves 0001's append-only triggers as they are.


def _columns(*specs: tuple[str, sa.types.TypeEngine, bool]) -> list[sa.Column]:
    """The columns of a table, from (name, type, nullable) in order."""
    return [sa.Column(name, type_, nullable=nullable) for name, type_, nullable in specs]


def upgrade() -> None:
    op.create_table('hashed_suppressions',
    *_columns(
        ('sha256', sa.String(length=64), False),
        ('reason', sa.String(length=16), False),
        ('import_id', BigId, True),
        ('created_at', sa.DateTime(timezone=True), False),
    ),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_hashed_suppressions'))
    )
    op.create_table('imports',
    *_columns(
        ('id', BigId, False),
        ('public_id', sa.String(length=32), False),
        ('kind', sa.Enum('subscribers', 'suppressions', name='import_kind', native_enum=False, create_constraint=True), False),
        ('status', sa.Enum('queued', 'running', 'done', 'failed', 'cancelled', name='import_status', native_enum=False, create_constraint=True), False),
        ('format', sa.String(length=8), False),
        ('dry_run', sa.Boolean(), False),
        ('send_confirmations', sa.Boolean(), False),
        ('sha256', sa.String(length=64), False),
        ('path', sa.Text(), False),
        ('size', sa.BigInteger(), False),
        ('counts', sa.JSON(), False),
        ('done_records', sa.BigInteger(), False),
        ('done_lines', sa.BigInteger(), False),
        ('done_offset', sa.BigInteger(), False),
        ('seen', sa.LargeBinary(), True),
        ('error', sa.Text(), True),
        ('cancel_requested', sa.Boolean(), False),
        ('owner', sa.String(length=128), True),
        ('lease_until', sa.DateTime(timezone=True), True),
        ('created_by', sa.String(length=128), False),
        ('idempotency_key', sa.String(length=255), True),
        ('created_at', sa.DateTime(timezone=True), False),
        ('started_at', sa.DateTime(timezone=True), True),
        ('finished_at', sa.DateTime(timezone=True), True),
    ),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imports')),
    sa.UniqueConstraint('created_by', 'idempotency_key', name=op.f('uq_imports_created_by_idempotency_key')),
    sa.UniqueConstraint('public_id', name=op.f('uq_imports_public_id'))
    )
    op.create_index('ix_imports_status', 'imports', ['status'], unique=False)
    op.create_table('import_errors',
    *_columns(
        ('id', BigId, False),
        ('import_id', BigId, False),
        ('line', sa.Integer(), False),
        ('field', sa.String(length=64), False),
        ('detail', sa.String(length=500), False),
    ),
    sa.ForeignKeyConstraint(['import_id'], ['imports.id'], name=op.f('fk_import_errors_import_id_imports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_errors'))
    )
    op.create_index('ix_import_errors_import_id_id', 'import_errors', ['import_id', 'id'], unique=False)
    # A plain ADD COLUMN on both databases: nullable, no default, no table copy.
    op.add_column('consent_events', sa.Column('source_detail', sa.String(length=1000), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    triggers = []
    if bind.dialect.name == 'sqlite':
        # SQLite copies the table to drop a column, which drops its triggers: make them
        # again afterwards, each exactly as it was.
        triggers = bind.execute(sa.text(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'consent_events'"
        )).scalars().all()
    with op.batch_alter_table('consent_events') as batch_op:
        batch_op.drop_column('source_detail')
    for trigger in triggers:
        op.execute(trigger)
    op.drop_index('ix_import_errors_import_id_id', table_name='import_errors')
    op.drop_table('import_errors')
    op.drop_index('ix_imports_status', table_name='imports')
    op.drop_table('imports')
    op.drop_table('hashed_suppressions')
