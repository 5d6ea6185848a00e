"""Invitations end when the CRM said (`expires_in_days`) and get one reminder before that.

Keycloak's organization invitations take no lifespan of their own (their links live the
realm's admin action token lifespan), so Keybridge expires every invitation itself: the
worker's scheduler (`schedule_due`, from Worker.schedule) queues an `invitation_expiry` job when
`expires_at` passed (the link ends, `invitation.expired` to the CRM) and, once,
an `invitation_reminder` job KEYBRIDGE_INVITE_REMINDER_DAYS_BEFORE days before it. "Now" is
the Keybridge clock (kb.now()), which tests move.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from .. import outbox, tasks
from ..errors import PermanentError
from ..events import INVITATION_EXPIRED, INVITATION_REMINDED
from ..models import Invitation
from . import audit, invitations
from . import invitation_lifecycle as lifecycle


def schedule_due(kb) -> int:
    """Queue what the clock made due: the expiry of every pending invitation whose `expires_at`
    passed, and the one reminder KEYBRIDGE_INVITE_REMINDER_DAYS_BEFORE days before it.

    The reminder is decided by setting `reminded_at` where it is still empty, in the transaction
    that queues its job: a second pass, or another worker at the same moment, finds it set and
    queues nothing. An invitation sent no more than that many days before it expires gets none.
    """
    now = kb.now()
    queued = 0
    with kb.db.session() as session:
        due = session.execute(select(Invitation.id, Invitation.kind, Invitation.crm_id, Invitation.expires_at).where(
            Invitation.status == "sent", Invitation.expires_at <= now).limit(500)).all()
        for inv_id, kind, crm_id, expires_at in due:
            queued += tasks.enqueue(session, "invitation_expiry", f"{inv_id}@{expires_at.isoformat()}",
                                    {"invitation_id": inv_id, "kind": kind, "crm_id": crm_id})
    days = kb.settings.invite_reminder_days_before
    if days <= 0:
        return queued
    before = timedelta(days=days)
    with kb.db.session() as session:
        candidates = session.execute(select(Invitation.id, Invitation.kind, Invitation.crm_id, Invitation.sent_count,
                                            Invitation.sent_at, Invitation.expires_at).where(
            Invitation.status == "sent", Invitation.reminded_at.is_(None), Invitation.expires_at > now,
            Invitation.expires_at <= now + before).limit(500)).all()
    for inv_id, kind, crm_id, sent_count, sent_at, expires_at in candidates:
        if sent_at is not None and sent_at >= expires_at - before:
            continue  # a life shorter than the reminder's lead: the invitation itself is the reminder
        with kb.db.session() as session:
            taken = session.execute(update(Invitation).where(
                Invitation.id == inv_id, Invitation.reminded_at.is_(None), Invitation.status == "sent",
                Invitation.sent_count == sent_count).values(reminded_at=now)).rowcount
            if taken == 1:
                queued += tasks.enqueue(session, "invitation_reminder", f"{inv_id}:{sent_count}",
                                        {"invitation_id": inv_id, "kind": kind, "crm_id": crm_id, "sent_count": sent_count})
    return queued


def _record_ordering(payload: dict) -> str:
    return lifecycle._subject(payload["kind"], payload["crm_id"])  # with the record's other events, one at a time


@tasks.job("invitation_expiry", ordering_key=_record_ordering)
def run_invitation_expiry(kb, job) -> str:
    """The invitation's `expires_at` passed: its link ends, it is expired, the CRM hears `invitation.expired`."""
    inv_id = job.payload["invitation_id"]
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        if inv is None or inv.status != "sent" or inv.expires_at is None or inv.expires_at > kb.now():
            return "not_due"  # accepted, revoked or sent again since it was queued
    invitations.end_invitation_link(kb, inv_id)
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id, with_for_update=True)
        if inv.status != "sent":
            return "not_due"
        inv.status, inv.ended_at = "expired", kb.now()
        data = {lifecycle._crm_key(inv.kind): inv.crm_id, "email": inv.email, "account_id": inv.account_id,
                "expired_at": outbox.iso(inv.expires_at)}
        outbox.record(session, INVITATION_EXPIRED, data, f"{INVITATION_EXPIRED}:{inv.kind}:{inv.crm_id}:{inv.sent_count}")
        audit.record(session, "invitation.expired", lifecycle._subject(inv.kind, inv.crm_id), f"schedule: expired at {outbox.iso(inv.expires_at)}",
                     {"email": inv.email})
    return "expired"


@tasks.job("invitation_reminder", ordering_key=_record_ordering)
def run_invitation_reminder(kb, job) -> str:
    """The one reminder before expiry: the invitation email once more (the same link's
    invitation, Keycloak's resend; for a lead a link that lives until `expires_at`), and
    `invitation.reminded` to the CRM. Nothing when the invitation was settled meanwhile."""
    inv_id, sent_count = job.payload["invitation_id"], job.payload["sent_count"]
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        if inv is None or inv.status != "sent" or inv.sent_count != sent_count or inv.expires_at <= kb.now():
            return "settled"
        kind, org_id, email, user_id, expires_at = inv.kind, inv.organization_id, inv.email, inv.keycloak_user_id, inv.expires_at
        details = dict(inv.details or {})
    if kind == "contact":
        pending = [i for i in kb.keycloak.organization_invitations(org_id, email) if i.get("status", "PENDING") == "PENDING"]
        if not pending:
            return "no_pending_invitation"  # deleted in Keycloak meanwhile: nothing to remind of
        kb.keycloak.resend_organization_invitation(org_id, pending[0]["id"])
        fresh = [i for i in kb.keycloak.organization_invitations(org_id, email) if i.get("status", "PENDING") == "PENDING"]
        if fresh:
            with kb.db.session() as session:
                session.get(Invitation, inv_id).keycloak_invitation_id = fresh[0]["id"]
    else:
        if not user_id:
            raise PermanentError(f"Lead invitation {inv_id} has no Keycloak user to remind; send lead.invite_requested again.")
        lifespan = max(60, int((expires_at - kb.now()).total_seconds()))
        client_id, redirect = invitations._lead_redirect(kb, details.get("redirect_uri"))
        kb.keycloak.send_actions_email(user_id, ["UPDATE_PASSWORD"], lifespan, client_id, redirect)
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        data = {lifecycle._crm_key(inv.kind): inv.crm_id, "email": inv.email, "account_id": inv.account_id,
                "expires_at": outbox.iso(inv.expires_at)}
        outbox.record(session, INVITATION_REMINDED, data, f"{INVITATION_REMINDED}:{inv.kind}:{inv.crm_id}:{sent_count}")
        audit.record(session, "invitation.reminded", lifecycle._subject(inv.kind, inv.crm_id), f"schedule: expires at {outbox.iso(inv.expires_at)}",
                     {"email": inv.email})
    return "reminded"
