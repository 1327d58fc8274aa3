"""topics managed in the product: a sender per topic, who last edited it

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-01

Topics are created, renamed, described and retired in the dashboard and through
`POST/PATCH /api/v1/topics`; the environment's catalogue only seeds topics the database
does not have yet. `from_addr` gives a topic its own From (within its stream);
`edited_at`/`edited_by` say who last changed it in the product. Retiring a topic is
`active = false` (the column exists): its ledger stays.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0002'
branch_labels = None
depends_on = None

COLUMNS = ('from_addr', 'edited_at', 'edited_by')


def upgrade() -> None:
    op.add_column('topics', sa.Column('from_addr', sa.String(length=320), nullable=True))
    op.add_column('topics', sa.Column('edited_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('topics', sa.Column('edited_by', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('topics') as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
