"""Every table Keybridge keeps: the inbox of webhooks, the job queue, invitations,
the outbox of identity events, the Keycloak event cursor, the audit trail and the desired state of CRM records."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, utcnow


class InboundEvent(Base):
    """A webhook exactly as accepted; `id` is the sender's webhook-id (the idempotency key)."""

    __tablename__ = "inbound_events"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    source: Mapped[str] = mapped_column(String(40), default="crm")
    type: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Job(Base):
    """One unit of work for the worker, retried with backoff, dead after the retry window."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    ref: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    # Jobs with the same ordering key run one at a time, oldest first (e.g. one user's events).
    ordering_key: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued running done dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Runs that never finished (the worker died: SIGKILL, out of memory); at the limit the job is dead.
    crashes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the request that queued it (logs)
    __table_args__ = (
        UniqueConstraint("kind", "ref", name="uq_jobs_kind_ref"),
        Index("ix_jobs_due", "status", "run_at"),
    )


class Invitation(Base):
    """What Keybridge promised a CRM record: one invitation per contact or lead."""

    __tablename__ = "invitations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10))  # contact | lead
    crm_id: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), index=True)
    account_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    organization_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # new sending sent | accepted skipped revoked expired (adapter/handlers/invitation_lifecycle.py)
    status: Mapped[str] = mapped_column(String(20), default="new")
    details: Mapped[dict] = mapped_column(JSON, default=dict)  # names, roles, org_admin, redirect
    keycloak_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    keycloak_invitation_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # When the link sent last stops working (Keybridge ends it: Keycloak's org invitations take no lifespan).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    # The one reminder before expires_at was decided (set in the transaction that queued it): never twice.
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # revoked or expired
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    __table_args__ = (UniqueConstraint("kind", "crm_id", name="uq_invitations_kind_crm_id"),)


class OutboxEvent(Base):
    """An identity event owed to the CRM; `id` is its stable event id (webhook-id outbound)."""

    __tablename__ = "outbox_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(80))
    data: Mapped[dict] = mapped_column(JSON)
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending delivered dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    window_started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)  # reset by a replay
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The CRM record the event is about (contact:C-1, lead:L-1, user:<id>, ...): its events go out in order.
    subject: Mapped[str | None] = mapped_column(String(250), nullable=True)
    # A worker sending the event holds a short lease (no lock or transaction across the HTTP call).
    leased_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"), Index("ix_outbox_subject", "subject", "seq"))


class Cursor(Base):
    """A durable reading position, e.g. in Keycloak's event log."""

    __tablename__ = "cursors"
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    position: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class SeenKeycloakEvent(Base):
    """Keycloak event ids already turned into jobs, so an overlapping re-read repeats nothing."""

    __tablename__ = "seen_keycloak_events"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    time_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class AuditEntry(Base):
    """What Keybridge changed in Keycloak, why, and when."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(80))
    subject: Mapped[str] = mapped_column(String(300), index=True)
    cause: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class Account(Base):
    """A CRM account as Keybridge last enforced it: its organization and its contract."""

    __tablename__ = "accounts"
    account_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    organization_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    contract_status: Mapped[str] = mapped_column(String(20), default="none")
    contract_ends_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    access: Mapped[str | None] = mapped_column(String(20), nullable=True)  # active | inactive, as last enforced
    access_enforced_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class AccessRevocation(Base):
    """Keybridge disabled this user, and why; only these are re-enabled when the reason ends.

    A user an administrator disabled for another reason has no row and stays disabled.
    Reasons are per person (left_company, rejected): a contract is the organization's
    attributes. Rows with contract_inactive come from earlier versions only; the worker's
    upgrade step (handlers/contracts.py) gives those flags back and deletes them.
    """

    __tablename__ = "access_revocations"
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40), primary_key=True)  # left_company | rejected
    account_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    contact_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Batch(Base):
    """An invitations.batch_requested: its items are jobs; counts are derived from BatchItem."""

    __tablename__ = "batches"
    batch_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    webhook_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class BatchItem(Base):
    __tablename__ = "batch_items"
    batch_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    crm_id: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    outcome: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)  # None while waiting
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class AccountDomain(Base):
    """An email domain of a CRM account: self-registrations are matched against these."""

    __tablename__ = "account_domains"
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(200), index=True)


class SelfRegistration(Base):
    """Someone who registered without an invitation, and what was decided about them."""

    __tablename__ = "self_registrations"
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    company: Mapped[str | None] = mapped_column(String(255), nullable=True)
    matched_account_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(30), index=True)  # awaiting_verification pending approved rejected
    account_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    registered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(300), nullable=True)


class LoginActivity(Base):
    """Logins counted from Keycloak's event log since the last identity.activity report."""

    __tablename__ = "login_activity"
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_login_at: Mapped[datetime] = mapped_column(DateTime)
    logins_since_report: Mapped[int] = mapped_column(Integer, default=0)
    last_reported_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class DailyLogin(Base):
    """Logins per user and day (UTC), counted from Keycloak's event log with LoginActivity:
    who was active on a day, for the operator dashboard's funnel."""

    __tablename__ = "daily_logins"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    logins: Mapped[int] = mapped_column(Integer, default=0)


class OrgAdminInvitation(Base):
    """An existing identity an organization's admin invited from the adapter's page (Keycloak's join link).

    Keycloak records no admin event when the person follows the link, so the worker
    checks until they joined (then tells the CRM, with the admin as actor) or the
    invitation is gone.
    """

    __tablename__ = "org_admin_invitations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    email: Mapped[str] = mapped_column(String(320))
    user_id: Mapped[str] = mapped_column(String(64))
    invited_by: Mapped[str] = mapped_column(String(64))  # the org admin's user id
    invited_by_email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending joined expired
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    checked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ReconcileRun(Base):
    """One reconciliation of a CRM export against Keycloak (adapter/reconcile): its result,
    and for runs asked through the operator API the export itself (the worker runs those)."""

    __tablename__ = "reconcile_runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(20))  # cli | api
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)  # queued running completed failed
    export_label: Mapped[str | None] = mapped_column(String(300), nullable=True)
    export_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    exported_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    event_ids: Mapped[list | None] = mapped_column(JSON, nullable=True)  # webhook ids of the events it stored
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class CrmRecord(Base):
    """What the CRM last said a record (account, contact, lead) should be: the desired state.

    `crm_time` is the envelope `timestamp` of the event it came from; an event older than
    it changes nothing (stale). `updated_at` is when Keybridge took the state in.
    """

    __tablename__ = "crm_records"
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # account | contact | lead
    crm_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[dict] = mapped_column(JSON, default=dict)
    crm_time: Mapped[datetime] = mapped_column(DateTime)
    source: Mapped[str] = mapped_column(String(300), default="")  # the webhook (event type and id) it came from
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AdminAccessDecision(Base):
    """An administrator (anyone but the adapter) enabled or disabled this user in Keycloak, read
    from the admin event log. A disable stands until an administrator enables them again: no
    renewal or CRM change gives that access back."""

    __tablename__ = "admin_access_decisions"
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    actor: Mapped[str] = mapped_column(String(320))
    decided_at: Mapped[datetime] = mapped_column(DateTime)  # the admin event's time (naive UTC)
    event_id: Mapped[str] = mapped_column(String(64))


class PortalSession(Base):
    """Someone signed in on the org admin page. `id` is the SHA-256 of the random token in their
    cookie (the token itself is never stored); signing out deletes the row, so a copy of the cookie
    opens nothing. `id_token` is Keycloak's, kept to end the Keycloak session too (RP-initiated logout)."""

    __tablename__ = "portal_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    id_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
