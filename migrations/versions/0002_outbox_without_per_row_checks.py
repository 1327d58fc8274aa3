"""outbox rows without foreign keys to campaigns and subscribers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

An expansion writes one delivery row per person, a million in one go, each from a
SELECT over subscribers for a campaign that the same transaction holds; the two
foreign keys of the outbox re-checked every row against its parent, which on
PostgreSQL was half of the expansion's time (a trigger per row and key). Neither parent
is ever deleted: erasure blanks a subscriber in place, and campaigns are only cancelled.
bounce_events keeps its foreign key to deliveries.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

FOREIGN_KEYS = (
    ('fk_deliveries_campaign_id_campaigns', 'campaign_id', 'campaigns'),
    ('fk_deliveries_subscriber_id_subscribers', 'subscriber_id', 'subscribers'),
)
QUEUE_WHERE = sa.text("status = 'queued'")


def _recreate(change) -> None:
    """SQLite alters a foreign key only by copying the table (env.py turns the checks
    off around it, as bounce_events points at deliveries, and runs foreign_key_check
    after). The partial queue index is made again by hand: reflection loses its WHERE."""
    op.drop_index('ix_deliveries_queue', table_name='deliveries')
    with op.batch_alter_table('deliveries', recreate='always') as batch_op:
        change(batch_op)
    op.create_index('ix_deliveries_queue', 'deliveries', ['priority', 'next_attempt_at', 'id'],
                    unique=False, sqlite_where=QUEUE_WHERE, postgresql_where=QUEUE_WHERE)


def upgrade() -> None:
    def drop(batch_op) -> None:
        for name, _column, _parent in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_='foreignkey')

    if op.get_bind().dialect.name == 'sqlite':
        _recreate(drop)
    else:
        with op.batch_alter_table('deliveries') as batch_op:
            drop(batch_op)


def downgrade() -> None:
    def add(batch_op) -> None:
        for name, column, parent in FOREIGN_KEYS:
            batch_op.create_foreign_key(name, parent, [column], ['id'])

    if op.get_bind().dialect.name == 'sqlite':
        _recreate(add)
    else:
        with op.batch_alter_table('deliveries') as batch_op:
            add(batch_op)
