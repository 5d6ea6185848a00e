"""schema before migrations

Revision ID: 0001
Revises: 
Create Date: 2026-11-30 08:14:27.796926
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('access_revocations',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=200), nullable=True),
    sa.Column('contact_id', sa.String(length=200), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('user_id', 'reason')
    )
    with op.batch_alter_table('access_revocations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_revocations_account_id'), ['account_id'], unique=False)

    op.create_table('account_domains',
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('account_id', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('domain')
    )
    with op.batch_alter_table('account_domains', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_domains_account_id'), ['account_id'], unique=False)

    op.create_table('accounts',
    sa.Column('account_id', sa.String(length=200), nullable=False),
    sa.Column('organization_id', sa.String(length=64), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('contract_status', sa.String(length=20), nullable=False),
    sa.Column('contract_ends_at', sa.DateTime(), nullable=True),
    sa.Column('access', sa.String(length=20), nullable=True),
    sa.Column('access_enforced_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('account_id')
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_contract_ends_at'), ['contract_ends_at'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('action', sa.String(length=80), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('cause', sa.String(length=300), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_subject'), ['subject'], unique=False)

    op.create_table('batch_items',
    sa.Column('batch_id', sa.String(length=200), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('crm_id', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('outcome', sa.String(length=40), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('batch_id', 'idx')
    )
    with op.batch_alter_table('batch_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batch_items_outcome'), ['outcome'], unique=False)

    op.create_table('batches',
    sa.Column('batch_id', sa.String(length=200), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('webhook_id', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('batch_id')
    )
    op.create_table('cursors',
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('position', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('inbound_events',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('type', sa.String(length=80), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('invitations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('crm_id', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('account_id', sa.String(length=200), nullable=True),
    sa.Column('organization_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('keycloak_user_id', sa.String(length=64), nullable=True),
    sa.Column('keycloak_invitation_id', sa.String(length=64), nullable=True),
    sa.Column('sent_count', sa.Integer(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('accepted_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'crm_id', name='uq_invitations_kind_crm_id')
    )
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invitations_email'), ['email'], unique=False)
        batch_op.create_index(batch_op.f('ix_invitations_keycloak_invitation_id'), ['keycloak_invitation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_invitations_keycloak_user_id'), ['keycloak_user_id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('ref', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('ordering_key', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('run_at', sa.DateTime(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'ref', name='uq_jobs_kind_ref')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_due', ['status', 'run_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_ordering_key'), ['ordering_key'], unique=False)

    op.create_table('login_activity',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('last_login_at', sa.DateTime(), nullable=False),
    sa.Column('logins_since_report', sa.Integer(), nullable=False),
    sa.Column('last_reported_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_table('org_admin_invitations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('organization_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=200), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('invited_by', sa.String(length=64), nullable=False),
    sa.Column('invited_by_email', sa.String(length=320), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('checked_at', sa.DateTime(), nullable=True),
    sa.Column('settled_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('org_admin_invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_org_admin_invitations_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_org_admin_invitations_status'), ['status'], unique=False)

    op.create_table('outbox_events',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=80), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('window_started_at', sa.DateTime(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('dedupe_key'),
    sa.UniqueConstraint('id')
    )
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)

    op.create_table('seen_keycloak_events',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('time_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('seen_keycloak_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seen_keycloak_events_time_ms'), ['time_ms'], unique=False)

    op.create_table('self_registrations',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('company', sa.String(length=255), nullable=True),
    sa.Column('matched_account_id', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=30), nullable=False),
    sa.Column('account_id', sa.String(length=200), nullable=True),
    sa.Column('registered_at', sa.DateTime(), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('decided_by', sa.String(length=300), nullable=True),
    sa.PrimaryKeyConstraint('user_id')
    )
    with op.batch_alter_table('self_registrations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_self_registrations_email'), ['email'], unique=False)
        batch_op.create_index(batch_op.f('ix_self_registrations_status'), ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('self_registrations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_self_registrations_status'))
        batch_op.drop_index(batch_op.f('ix_self_registrations_email'))

    op.drop_table('self_registrations')
    with op.batch_alter_table('seen_keycloak_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seen_keycloak_events_time_ms'))

    op.drop_table('seen_keycloak_events')
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox_events')
    with op.batch_alter_table('org_admin_invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_org_admin_invitations_status'))
        batch_op.drop_index(batch_op.f('ix_org_admin_invitations_organization_id'))

    op.drop_table('org_admin_invitations')
    op.drop_table('login_activity')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_ordering_key'))
        batch_op.drop_index('ix_jobs_due')

    op.drop_table('jobs')
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invitations_keycloak_user_id'))
        batch_op.drop_index(batch_op.f('ix_invitations_keycloak_invitation_id'))
        batch_op.drop_index(batch_op.f('ix_invitations_email'))

    op.drop_table('invitations')
    op.drop_table('inbound_events')
    op.drop_table('cursors')
    op.drop_table('batches')
    with op.batch_alter_table('batch_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batch_items_outcome'))

    op.drop_table('batch_items')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_subject'))
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_contract_ends_at'))

    op.drop_table('accounts')
    with op.batch_alter_table('account_domains', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_domains_account_id'))

    op.drop_table('account_domains')
    with op.batch_alter_table('access_revocations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_revocations_account_id'))

    op.drop_table('access_revocations')
