"""campaigns of kind 'test': test copies go through the outbox

Revision ID: 0003h
Revises: 0002
Create Date: 2026-12-01

A test copy of a campaign is queued as a campaign of kind `test` with one outbox row,
so the web request no longer talks to a relay. Only the CHECK constraint on
`campaigns.kind` changes (the column is long enough). SQLite changes a constraint only
by copying the table (batch mode); downgrading first deletes the test copies, which
nothing else refers to.
"""
from alembic import op
import sqlalchemy as sa


revision = '0003h'
down_revision = '0002'
branch_labels = None
depends_on = None

NAME = 'ck_campaigns_campaign_kind'
BEFORE = ('campaign', 'transactional', 'policy', 'confirmation')
AFTER = BEFORE + ('test',)


def _allow(kinds) -> None:
    condition = sa.column('kind').in_(kinds)
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('campaigns', recreate='always') as batch_op:
            batch_op.drop_constraint(op.f(NAME), type_='check')
            batch_op.create_check_constraint(op.f(NAME), condition)
    else:
        op.drop_constraint(op.f(NAME), 'campaigns', type_='check')
        op.create_check_constraint(op.f(NAME), 'campaigns', condition)


def upgrade() -> None:
    _allow(AFTER)


def downgrade() -> None:
    tests = "SELECT id FROM campaigns WHERE kind = 'test'"
    op.execute(f"DELETE FROM deliveries WHERE campaign_id IN ({tests})")
    op.execute(f"DELETE FROM bounce_events WHERE delivery_id IN (SELECT id FROM deliveries WHERE campaign_id IN ({tests}))")
    op.execute("DELETE FROM campaigns WHERE kind = 'test'")
    _allow(BEFORE)
