"""session two: desired state, admin decisions, sessions, reconcile, vendors, job leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 08:15:01.079610
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('admin_access_decisions',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_table('crm_records',
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('crm_id', sa.String(length=200), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('crm_time', sa.DateTime(), nullable=False),
    sa.Column('source', sa.String(length=300), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'crm_id')
    )
    op.create_table('daily_logins',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('logins', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'user_id')
    )
    op.create_table('portal_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('id_token', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('portal_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portal_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_portal_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('reconcile_runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('export_label', sa.String(length=300), nullable=True),
    sa.Column('export_text', sa.Text(), nullable=True),
    sa.Column('exported_at', sa.DateTime(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('event_ids', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reconcile_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reconcile_runs_status'), ['status'], unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('crashes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))

    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject', sa.String(length=250), nullable=True))
        batch_op.add_column(sa.Column('leased_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('lease_token', sa.String(length=32), nullable=True))
        batch_op.create_index('ix_outbox_subject', ['subject', 'seq'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_subject')
        batch_op.drop_column('lease_token')
        batch_op.drop_column('leased_until')
        batch_op.drop_column('subject')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('request_id')
        batch_op.drop_column('crashes')

    with op.batch_alter_table('reconcile_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reconcile_runs_status'))

    op.drop_table('reconcile_runs')
    with op.batch_alter_table('portal_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_portal_sessions_expires_at'))

    op.drop_table('portal_sessions')
    op.drop_table('daily_logins')
    op.drop_table('crm_records')
    op.drop_table('admin_access_decisions')
