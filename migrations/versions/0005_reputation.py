"""reputation guard: why a campaign is paused, the counts a resume overruled; webhooks

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-01

New nullable campaign columns only, so both databases add them in place (no table copy
on SQLite); the downgrade drops them with ALTER TABLE ... DROP COLUMN (SQLite 3.35+).
Outgoing webhooks get three tables of their own: endpoints, the event outbox, and one
delivery row per event and endpoint (a partial index holds the pending ones).
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

CAMPAIGN_COLUMNS = (
    ('pause_reason', sa.String(length=32)),
    ('pause_detail', sa.JSON()),
    ('rates_baseline', sa.JSON()),
)


BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    for name, type_ in CAMPAIGN_COLUMNS:
        op.add_column('campaigns', sa.Column(name, type_, nullable=True))
    op.create_table('webhook_endpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('include_email', sa.Boolean(), nullable=False),
    sa.Column('secret', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints')),
    sa.UniqueConstraint('public_id', name=op.f('uq_webhook_endpoints_public_id'))
    )
    op.create_table('webhook_events',
    sa.Column('id', BigId, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('ordering_key', sa.String(length=48), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events')),
    sa.UniqueConstraint('public_id', name=op.f('uq_webhook_events_public_id'))
    )
    op.create_table('webhook_deliveries',
    sa.Column('id', BigId, nullable=False),
    sa.Column('event_id', BigId, nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('ordering_key', sa.String(length=48), nullable=True),
    sa.Column('status', sa.Enum('pending', 'delivered', 'failed', 'cancelled', name='webhook_delivery_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('attempts', sa.SmallInteger(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retry_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_owner', sa.String(length=128), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.SmallInteger(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints')),
    sa.ForeignKeyConstraint(['event_id'], ['webhook_events.id'], name=op.f('fk_webhook_deliveries_event_id_webhook_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('event_id', 'endpoint_id', name=op.f('uq_webhook_deliveries_event_id_endpoint_id'))
    )
    op.create_index('ix_webhook_deliveries_pending', 'webhook_deliveries', ['endpoint_id', 'ordering_key', 'id'],
                    unique=False, sqlite_where=PENDING, postgresql_where=PENDING)
    op.create_index(op.f('ix_webhook_deliveries_created_at'), 'webhook_deliveries', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_webhook_deliveries_created_at'), table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_pending', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_events')
    op.drop_table('webhook_endpoints')
    for name, _type in reversed(CAMPAIGN_COLUMNS):
        op.execute(f'ALTER TABLE campaigns DROP COLUMN {name}')
