"""Inviting contacts and leads, and completing their registration, as idempotent ensure_* steps.

Contacts are invited through Keycloak's Organization invitations (a registration
link, or a join link for an existing identity); Keycloak keeps its own record of
pending invitations, which is how a repeated request knows not to send again.
Leads have no organization: Keybridge creates the identity with `crm_lead_id` and
the `lead` role and sends Keycloak's execute-actions email, whose link lets them
choose a password — that is their registration.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from .. import outbox, tasks
from ..db import utcnow
from ..events import (IDENTITY_REGISTERED, INVITATION_ACCEPTED, INVITATION_REVOKED, INVITATION_SENT, INVITATION_SKIPPED,
                      ContactInviteSchema, LeadInviteSchema)
from ..errors import PermanentError, RetryableError
from ..models import AccessRevocation, Invitation
from . import access, audit, landing, records

log = logging.getLogger(__name__)

CONTACT_ATTRIBUTE = "crm_contact_id"
LEAD_ATTRIBUTE = "crm_lead_id"
LEAD_ROLE = "lead"


# -- shared -------------------------------------------------------------------------

def ensure_invitation_row(session, kind: str, crm_id: str, email: str, **fields) -> Invitation:
    """The invitation record for this CRM record, created or brought up to date."""
    inv = session.scalar(select(Invitation).where(Invitation.kind == kind, Invitation.crm_id == crm_id))
    if inv is None:
        inv = Invitation(kind=kind, crm_id=crm_id, email=email, status="new", details={})
        session.add(inv)
    if inv.email != email and inv.status != "accepted":
        inv.email, inv.status, inv.keycloak_invitation_id = email, "new", None  # a new address needs a new invitation
    for key, value in fields.items():
        setattr(inv, key, value)
    session.flush()
    return inv


def _set_status(kb, inv_id: int, **changes) -> Invitation:
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        for key, value in changes.items():
            setattr(inv, key, value)
        return inv


def expires_in_days(kb, inv: Invitation) -> int:
    """How long the invitation's link lives: the request's expires_in_days, else KEYBRIDGE_INVITE_EXPIRES_IN_DAYS."""
    return (inv.details or {}).get("expires_in_days") or kb.settings.invite_expires_in_days


def _record_sent(kb, inv_id: int, cause: str) -> None:
    """A link went out: it lives `expires_in_days` from now and gets its one reminder (a new period)."""
    with kb.db.session() as session:
        outbox.record(session, *mark_sent(kb, session, session.get(Invitation, inv_id), cause))


def mark_sent(kb, session, inv: Invitation, cause: str) -> tuple[str, dict, str]:
    """An invitation went out: its row says so (its link lives `expires_in_days` from now and gets its one
    reminder: a new period) and the audit has it, in the caller's transaction (a batch marks a chunk's
    invitations in one). Returns the invitation.sent the CRM is owed, for the caller to record
    (outbox.record, or record_many for a chunk)."""
    now = kb.now()
    inv.status, inv.sent_at, inv.sent_count = "sent", now, (inv.sent_count or 0) + 1
    inv.expires_at, inv.reminded_at, inv.ended_at = now + timedelta(days=expires_in_days(kb, inv)), None, None
    key = "contact_id" if inv.kind == "contact" else "lead_id"
    data = {key: inv.crm_id, "email": inv.email, "account_id": inv.account_id, "expires_at": outbox.iso(inv.expires_at)}
    audit.record(session, "invitation.sent", f"{inv.kind}:{inv.crm_id}", cause, {"email": inv.email, "count": inv.sent_count})
    return INVITATION_SENT, data, f"{INVITATION_SENT}:{inv.kind}:{inv.crm_id}:{inv.sent_count}"


def _record_skipped(kb, inv_id: int, reason: str, cause: str, status: str = "skipped") -> None:
    """Tell the CRM no invitation went out and why; `status` is what the record becomes."""
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        inv.status = status
        key = "contact_id" if inv.kind == "contact" else "lead_id"
        data = {key: inv.crm_id, "email": inv.email, "account_id": inv.account_id, "reason": reason}
        outbox.record(session, INVITATION_SKIPPED, data, f"{INVITATION_SKIPPED}:{inv.kind}:{inv.crm_id}:{inv.email}:{reason}")
        audit.record(session, "invitation.skipped", f"{inv.kind}:{inv.crm_id}", cause, {"reason": reason})


# -- contacts -----------------------------------------------------------------------

@tasks.crm_event("contact.invite_requested", schema=ContactInviteSchema, ordering_key=lambda d: f"contact:{d['contact_id']}")
def invite_contact(kb, data: dict, cause: str, crm_time=None) -> str:
    """Handle contact.invite_requested; returns what happened (sent, pending, accepted, refused, ...).

    The request is also the contact's state as of `crm_time` (active, this email and account);
    a request older than a stored `left` is refused (invitation.skipped, reason contact_left).
    """
    email = data["email"].strip().lower()
    if revoked_after(kb, "contact", data["contact_id"], crm_time):
        return _refuse_older_than_revoke(kb, "contact", data["contact_id"], crm_time, cause)
    left_later = _left_after(kb, data["contact_id"], crm_time)
    if not left_later:
        records.take(kb, "contact", data["contact_id"], {
            "contact_id": data["contact_id"], "email": email, "account_id": data["account_id"],
            "first_name": data.get("first_name"), "last_name": data.get("last_name"), "status": "active"}, crm_time, cause)
    else:
        with kb.db.session() as session:
            inv_id = ensure_invitation_row(session, "contact", data["contact_id"], email, account_id=data["account_id"]).id
        _record_skipped(kb, inv_id, "contact_left", cause)
        return "refused"
    org = kb.keycloak.find_organization(data["account_id"])
    if org is None:
        raise RetryableError(f"Account {data['account_id']} has no organization yet: the CRM must send account.upserted for it first (retrying).", retry_after=30)
    details = contact_details(data)
    with kb.db.session() as session:
        inv = ensure_invitation_row(session, "contact", data["contact_id"], email,
                                    account_id=data["account_id"], organization_id=org["id"], details=details)
        inv_id, status = inv.id, inv.status

    user = kb.keycloak.find_user_by_email(email)
    if user is not None and kb.keycloak.is_member(org["id"], user["id"]):
        if status in ("sent", "sending"):
            complete_contact_registration(kb, inv_id, user["id"], cause)  # accepted; its event may still be on the way
            return "accepted"
        ensure_contact_identity(kb, inv_id, user)
        if status != "accepted":
            _set_status(kb, inv_id, keycloak_user_id=user["id"], accepted_at=utcnow())
            _record_skipped(kb, inv_id, "already_member", cause, status="accepted")
        return "already_member"

    pending = [i for i in kb.keycloak.organization_invitations(org["id"], email) if i.get("status", "PENDING") == "PENDING"]
    if pending and not data.get("resend"):
        if status != "sent":  # we crashed after Keycloak sent it: record, do not send again
            _set_status(kb, inv_id, keycloak_invitation_id=pending[0]["id"])
            _record_sent(kb, inv_id, cause)
            if status == "sending":
                return "sent"  # it was this request's own invitation: the worker died before recording it
        log.info("contact %s already has a pending invitation; nothing sent", data["contact_id"])
        return "pending"

    _set_status(kb, inv_id, status="sending")
    if pending:
        kb.keycloak.resend_organization_invitation(org["id"], pending[0]["id"])
    elif user is not None:
        kb.keycloak.invite_existing_member(org["id"], user["id"])
    else:
        kb.keycloak.invite_new_member(org["id"], email, data.get("first_name"), data.get("last_name"))
    fresh = [i for i in kb.keycloak.organization_invitations(org["id"], email) if i.get("status", "PENDING") == "PENDING"]
    _set_status(kb, inv_id, keycloak_invitation_id=fresh[0]["id"] if fresh else None,
                keycloak_user_id=user["id"] if user else None)
    _record_sent(kb, inv_id, cause)
    return "sent"


def contact_details(data: dict) -> dict:
    """What a contact invitation keeps of its request (its lifetime, and what applies when the person registers)."""
    return {k: data.get(k) for k in ("first_name", "last_name", "roles", "org_admin", "redirect_uri", "expires_in_days")}


REVOKED_AT = "invitation_revoked_at"  # in a contact's or lead's desired state: the CRM time of its revoke


def revoked_after(kb, kind: str, crm_id: str, crm_time) -> bool:
    """Whether the CRM revoked the record's invitation at a CRM time later than a request made at
    `crm_time` (events take effect in CRM time order, whatever order they arrive in). A request
    without a CRM time (an operator's resend) is not older: it is a decision of its own."""
    record = records.desired(kb, kind, crm_id)
    revoked_at = (record.state or {}).get(REVOKED_AT) if record is not None else None
    if not revoked_at or crm_time is None:
        return False
    return records.naive_utc(crm_time) < records.naive_utc(datetime.fromisoformat(revoked_at))


def _refuse_older_than_revoke(kb, kind: str, crm_id: str, crm_time, cause: str) -> str:
    with kb.db.session() as session:
        audit.record(session, "state.stale", f"{kind}:{crm_id}", cause,
                     {"event_time": outbox.iso(crm_time), "why": "the CRM revoked this invitation later"})
    return "stale"


def _left_after(kb, contact_id: str, crm_time) -> bool:
    """Whether the contact's stored state is `left` and newer than a request made at `crm_time`
    (a request without a CRM time counts as older)."""
    record = records.desired(kb, "contact", contact_id)
    if record is None or record.state.get("status") != "left":
        return False
    return crm_time is None or records.naive_utc(crm_time) < record.crm_time


def contact_of_invitation(kb, inv_id: int) -> str:
    with kb.db.session() as session:
        return session.get(Invitation, inv_id).crm_id


def revoke_open_invitations(kb, contact_id: str, email: str | None, reason: str, cause: str) -> int:
    """The contact's invitations not yet used stop working; returns how many were revoked.

    - its pending organization invitations are deleted in Keycloak (the link answers that the
      invitation is no longer valid);
    - a lead invitation to the same address whose link was not used yet (no password chosen)
      is ended by disabling that identity (Keycloak refuses action tokens of disabled users).
    The CRM hears `invitation.revoked` once per invitation.
    """
    email = (email or "").lower()
    with kb.db.session() as session:
        rows = [(i.id, i.kind, i.organization_id, i.email, i.keycloak_user_id) for i in session.scalars(
            select(Invitation).where(Invitation.status.in_(("new", "sending", "sent")),
                                     ((Invitation.kind == "contact") & (Invitation.crm_id == contact_id))
                                     | ((Invitation.kind == "lead") & (Invitation.email == email))))]
    revoked = 0
    for inv_id, kind, org_id, inv_email, user_id in rows:
        if kind == "contact" and org_id:
            for pending in kb.keycloak.organization_invitations(org_id, inv_email):
                if pending.get("status", "PENDING") == "PENDING":
                    kb.keycloak.delete_organization_invitation(org_id, pending["id"])
        if kind == "lead" and user_id and not kb.keycloak.has_password(user_id):
            user = kb.keycloak.get_user(user_id)
            if user is not None:
                access.revoke_users(kb, [user], access.LEFT_COMPANY, None, cause)
        _record_revoked(kb, inv_id, reason, cause)
        revoked += 1
    return revoked


def _record_revoked(kb, inv_id: int, reason: str, cause: str) -> str | None:
    """The invitation is revoked and the CRM told, once; returns the status that stood instead
    when it was no longer pending (accepted or revoked meanwhile), else None."""
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id, with_for_update=True)
        if inv.status not in ("new", "sending", "sent"):
            return inv.status
        inv.status, inv.ended_at = "revoked", kb.now()
        key = "contact_id" if inv.kind == "contact" else "lead_id"
        data = {key: inv.crm_id, "email": inv.email, "account_id": inv.account_id, "reason": reason}
        outbox.record(session, INVITATION_REVOKED, data, f"{INVITATION_REVOKED}:{inv.kind}:{inv.crm_id}:{inv.email}:{inv.sent_count}")
        audit.record(session, "invitation.revoked", f"{inv.kind}:{inv.crm_id}", cause, {"reason": reason, "email": inv.email})


def ensure_contact_identity(kb, inv_id: int, user: dict) -> None:
    """The user carries crm_contact_id, is a member of the account's organization, holds the mapped roles."""
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        contact_id, org_id, details, account_id = inv.crm_id, inv.organization_id, dict(inv.details or {}), inv.account_id
    kb.keycloak.set_user_attributes(user, {CONTACT_ATTRIBUTE: [contact_id]})
    if org_id and not kb.keycloak.is_member(org_id, user["id"]):
        kb.keycloak.add_member(org_id, user["id"])
    kb.keycloak.ensure_realm_roles(user["id"], kb.roles.business_roles_for(details.get("roles")))
    from .. import delegation, org_admins  # they import this package

    if details.get("org_admin") and org_id:  # admin of this organization only (its admins group), not of all
        org_admins.make_admin(kb, org_id, user["id"], f"contact {contact_id} invited as org admin of account {account_id}")
    if org_id:  # a new member (or admin) of the organization: its admins' permissions follow at once
        delegation.ensure_organization_delegation(kb, org_id, f"contact {contact_id} joined account {account_id}")


def complete_contact_registration(kb, inv_id: int, user_id: str, cause: str, registered_at=None) -> None:
    """The invited contact registered (or joined): link, roles, and tell the CRM once."""
    user = kb.keycloak.get_user(user_id)
    if user is None:
        raise PermanentError(f"User {user_id} from a registration event no longer exists in Keycloak.")
    ensure_contact_identity(kb, inv_id, user)
    _accepted(kb, inv_id, user, cause, registered_at)


# -- leads --------------------------------------------------------------------------

@tasks.crm_event("lead.invite_requested", schema=LeadInviteSchema, ordering_key=lambda d: f"lead:{d['lead_id']}")
def invite_lead(kb, data: dict, cause: str, crm_time=None) -> str:
    """Handle lead.invite_requested; returns what happened. The request is also the lead's state as of `crm_time`."""
    email = data["email"].strip().lower()
    if revoked_after(kb, "lead", data["lead_id"], crm_time):
        return _refuse_older_than_revoke(kb, "lead", data["lead_id"], crm_time, cause)
    records.take(kb, "lead", data["lead_id"], {"lead_id": data["lead_id"], "email": email, "first_name": data.get("first_name"),
                                                "last_name": data.get("last_name"), "company": data.get("company")}, crm_time, cause)
    details = {k: data.get(k) for k in ("first_name", "last_name", "company", "redirect_uri", "expires_in_days")}
    with kb.db.session() as session:
        inv = ensure_invitation_row(session, "lead", data["lead_id"], email, details=details)
        inv_id, status = inv.id, inv.status
    domain = email.rsplit("@", 1)[-1]
    if kb.settings.lead_webmail_policy == "refuse" and domain in kb.settings.public_webmail_domains:
        _record_skipped(kb, inv_id, "public_webmail_domain", cause)
        return "skipped"
    if status == "accepted":
        return "accepted"

    user = kb.keycloak.find_user_by_email(email)
    if user is None:
        rep = {"username": email, "email": email, "enabled": True, "emailVerified": False,
               "firstName": data.get("first_name") or "", "lastName": data.get("last_name") or "",
               "attributes": {LEAD_ATTRIBUTE: [data["lead_id"]]}}
        kb.keycloak.create_user(rep)
        user = kb.keycloak.find_user_by_email(email)
    # An account someone made with this address, never verified, may not be the lead's: it is linked
    # only once the link in the invitation (sent to the address) is used (registrations.py).
    owned = bool(user.get("emailVerified")) or data["lead_id"] in (user.get("attributes") or {}).get(LEAD_ATTRIBUTE, [])
    if owned:
        kb.keycloak.set_user_attributes(user, {LEAD_ATTRIBUTE: [data["lead_id"]]})
        kb.keycloak.ensure_realm_roles(user["id"], {LEAD_ROLE})
    _set_status(kb, inv_id, keycloak_user_id=user["id"])

    if user.get("emailVerified") and kb.keycloak.has_password(user["id"]):
        if status in ("sent", "sending"):
            complete_lead_registration(kb, inv_id, user["id"], cause)
            return "accepted"
        _set_status(kb, inv_id, accepted_at=utcnow())
        _record_skipped(kb, inv_id, "already_registered", cause, status="accepted")
        return "already_registered"
    if status == "sent" and not data.get("resend"):
        return "pending"
    # 'sending' means an earlier attempt did not finish: Keycloak keeps no record of
    # actions emails, so send (the only window for a duplicate is a crash mid-call).

    _set_status(kb, inv_id, status="sending")
    reopen_lead_link(kb, user["id"])
    days = data.get("expires_in_days") or kb.settings.invite_expires_in_days
    client_id, redirect = _lead_redirect(kb, data.get("redirect_uri"))
    kb.keycloak.send_actions_email(user["id"], ["UPDATE_PASSWORD"], days * 86400, client_id, redirect)
    _record_sent(kb, inv_id, cause)
    return "sent"


def _lead_redirect(kb, redirect_uri: str | None) -> tuple[str, str]:
    """The link's client and redirect: the adapter's welcome page when there is one (landing.py)."""
    return landing.lead_link_redirect(kb, redirect_uri)


def complete_lead_registration(kb, inv_id: int, user_id: str, cause: str, registered_at=None) -> None:
    user = kb.keycloak.get_user(user_id)
    if user is None:
        raise PermanentError(f"User {user_id} from a registration event no longer exists in Keycloak.")
    with kb.db.session() as session:
        lead_id = session.get(Invitation, inv_id).crm_id
    kb.keycloak.set_user_attributes(user, {LEAD_ATTRIBUTE: [lead_id]})
    kb.keycloak.ensure_realm_roles(user_id, {LEAD_ROLE})
    _accepted(kb, inv_id, user, cause, registered_at)


def _accepted(kb, inv_id: int, user: dict, cause: str, registered_at) -> None:
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        inv.status, inv.keycloak_user_id = "accepted", user["id"]
        inv.accepted_at = inv.accepted_at or utcnow()
        key = "contact_id" if inv.kind == "contact" else "lead_id"
        when = outbox.iso(registered_at or inv.accepted_at)
        outbox.record(session, IDENTITY_REGISTERED,
                      {"user_id": user["id"], "email": inv.email, key: inv.crm_id, "account_id": inv.account_id,
                       "via": "invitation", "registered_at": when},
                      f"{IDENTITY_REGISTERED}:{user['id']}")
        outbox.record(session, INVITATION_ACCEPTED, {key: inv.crm_id, "email": inv.email, "account_id": inv.account_id},
                      f"{INVITATION_ACCEPTED}:{inv.kind}:{inv.crm_id}:{user['id']}")
        audit.record(session, "identity.registered", f"user:{user['id']}", cause, {key: inv.crm_id})


# -- links that end (revoked, expired) ------------------------------------------------

LINK_ENDED = "invitation_ended"  # AccessRevocation reason: an unused lead link was ended by disabling its identity


def end_invitation_link(kb, inv_id: int) -> None:
    """The invitation's link stops working; idempotent.

    - contact: its pending organization invitations are deleted in Keycloak (the link then
      answers that the invitation is no longer valid);
    - lead: Keycloak keeps no record of action tokens and cannot withdraw one, but refuses the
      tokens of a disabled user: an identity whose link was not used yet (no password) is
      disabled, noted as LINK_ENDED so that a new invitation enables it again
      (`reopen_lead_link`). An identity with a password is someone's account and is left alone
      (its link ends with its lifespan).
    """
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        kind, org_id, email, user_id = inv.kind, inv.organization_id, inv.email, inv.keycloak_user_id
    if kind == "contact" and org_id:
        for pending in kb.keycloak.organization_invitations(org_id, email):
            if pending.get("status", "PENDING") == "PENDING":
                kb.keycloak.delete_organization_invitation(org_id, pending["id"])
    if kind == "lead" and user_id and not kb.keycloak.has_password(user_id):
        user = kb.keycloak.get_user(user_id)
        if user is None:
            return
        with kb.db.session() as session:
            if session.get(AccessRevocation, (user_id, LINK_ENDED)) is None and user.get("enabled", True):
                session.add(AccessRevocation(user_id=user_id, reason=LINK_ENDED, revoked_at=utcnow()))
        if user.get("enabled", True):  # noted first: a crash after disabling still knows it was Keybridge
            kb.keycloak.logout(user_id)
            kb.keycloak.set_enabled(user_id, False)


def reopen_lead_link(kb, user_id: str) -> None:
    """A new lead invitation goes out: an identity Keybridge disabled only to end an earlier link
    is enabled again (not one disabled for another reason, or by an administrator)."""
    with kb.db.session() as session:
        row = session.get(AccessRevocation, (user_id, LINK_ENDED))
        if row is None:
            return
        others = session.scalar(select(AccessRevocation.user_id).where(
            AccessRevocation.user_id == user_id, AccessRevocation.reason != LINK_ENDED).limit(1))
        decision = access.admin_decisions(session, [user_id]).get(user_id)
    if others is None and (decision is None or decision.enabled or decision.decided_at < row.revoked_at):
        kb.keycloak.set_enabled(user_id, True)
    with kb.db.session() as session:
        row = session.get(AccessRevocation, (user_id, LINK_ENDED))
        if row is not None:
            session.delete(row)
