"""dashboard: topics managed in the product; staff two-factor login and sessions

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-01

Topics are created, renamed, described and retired in the dashboard and through
`POST/PATCH /api/v1/topics`; the environment's catalogue only seeds topics the database
does not have yet. `from_addr` gives a topic its own From (within its stream);
`edited_at`/`edited_by` say who last changed it in the product. Retiring a topic is
`active = false` (the column exists): its ledger stays.

Staff accounts: `users.totp_secret`/`totp_enabled_at` (two-factor login), one-time
`recovery_codes` (hashed), and `staff_sessions` (each login session, listed on the
account page and revocable).
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

COLUMNS = ('from_addr', 'edited_at', 'edited_by')


def upgrade() -> None:
    op.add_column('topics', sa.Column('from_addr', sa.String(length=320), nullable=True))
    op.add_column('topics', sa.Column('edited_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('topics', sa.Column('edited_by', sa.String(length=100), nullable=True))
    op.add_column('users', sa.Column('totp_secret', sa.String(length=64), nullable=True))
    op.add_column('users', sa.Column('totp_enabled_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'staff_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=48), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ip', sa.String(length=45), nullable=True),
        sa.Column('user_agent', sa.String(length=200), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_staff_sessions_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_sessions')),
        sa.UniqueConstraint('public_id', name=op.f('uq_staff_sessions_public_id')),
    )
    op.create_index(op.f('ix_staff_sessions_user_id'), 'staff_sessions', ['user_id'], unique=False)
    op.create_table(
        'recovery_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_recovery_codes_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_recovery_codes')),
    )
    op.create_index(op.f('ix_recovery_codes_user_id'), 'recovery_codes', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_recovery_codes_user_id'), table_name='recovery_codes')
    op.drop_table('recovery_codes')
    op.drop_index(op.f('ix_staff_sessions_user_id'), table_name='staff_sessions')
    op.drop_table('staff_sessions')
    with op.batch_alter_table('users') as batch_op:
        batch_op.drop_column('totp_enabled_at')
        batch_op.drop_column('totp_secret')
    with op.batch_alter_table('topics') as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
