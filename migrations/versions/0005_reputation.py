"""reputation guard: why a campaign is paused, and the counts a resume overruled

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-01

New nullable columns only, so both databases add them in place (no table copy on
SQLite); the downgrade drops them with ALTER TABLE ... DROP COLUMN (SQLite 3.35+).
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0002'
branch_labels = None
depends_on = None

CAMPAIGN_COLUMNS = (
    ('pause_reason', sa.String(length=32)),
    ('pause_detail', sa.JSON()),
    ('rates_baseline', sa.JSON()),
)


def upgrade() -> None:
    for name, type_ in CAMPAIGN_COLUMNS:
        op.add_column('campaigns', sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for name, _type in reversed(CAMPAIGN_COLUMNS):
        op.execute(f'ALTER TABLE campaigns DROP COLUMN {name}')
