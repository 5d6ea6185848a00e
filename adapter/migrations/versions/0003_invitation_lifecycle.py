"""invitation lifecycle: expiry Keybridge enforces, the one reminder, when an invitation ended

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('reminded_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('ended_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_invitations_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invitations_expires_at'))
        batch_op.drop_column('ended_at')
        batch_op.drop_column('reminded_at')
        batch_op.drop_column('expires_at')
