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

from sqlalchemy import select

from .. import outbox, tasks
from ..db import utcnow
from ..events import (IDENTITY_REGISTERED, INVITATION_ACCEPTED, INVITATION_SENT, INVITATION_SKIPPED, ContactInviteSchema,
                      LeadInviteSchema)
from ..errors import PermanentError, RetryableError
from ..models import Invitation
from . import access, audit

log = logging.getLogger(__name__)

CONTACT_ATTRIBUTE = "crm_contact_id"
LEAD_ATTRIBUTE = "crm_lead_id"
LEAD_ROLE = "lead"
ORG_ADMIN_ROLE = "org_admin"


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


def _record_sent(kb, inv_id: int, cause: str) -> None:
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        inv.status, inv.sent_at, inv.sent_count = "sent", utcnow(), inv.sent_count + 1
        key = "contact_id" if inv.kind == "contact" else "lead_id"
        data = {key: inv.crm_id, "email": inv.email, "account_id": inv.account_id}
        outbox.record(session, INVITATION_SENT, data, f"{INVITATION_SENT}:{inv.kind}:{inv.crm_id}:{inv.sent_count}")
        audit.record(session, "invitation.sent", f"{inv.kind}:{inv.crm_id}", cause, {"email": inv.email, "count": inv.sent_count})


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
def invite_contact(kb, data: dict, cause: str) -> str:
    """Handle contact.invite_requested; returns what happened (sent, pending, accepted, ...)."""
    email = data["email"].strip().lower()
    org = kb.keycloak.find_organization(data["account_id"])
    if org is None:
        raise RetryableError(f"Account {data['account_id']} has no organization yet: the CRM must send account.upserted for it first (retrying).", retry_after=30)
    details = {k: data.get(k) for k in ("first_name", "last_name", "roles", "org_admin", "redirect_uri")}
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


def ensure_contact_identity(kb, inv_id: int, user: dict) -> None:
    """The user carries crm_contact_id, is a member of the account's organization, holds the mapped roles."""
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        contact_id, org_id, details, account_id = inv.crm_id, inv.organization_id, dict(inv.details or {}), inv.account_id
    kb.keycloak.set_user_attributes(user, {CONTACT_ATTRIBUTE: [contact_id]})
    if org_id and not kb.keycloak.is_member(org_id, user["id"]):
        kb.keycloak.add_member(org_id, user["id"])
    wanted = kb.roles.business_roles_for(details.get("roles"))
    if details.get("org_admin"):
        wanted.add(ORG_ADMIN_ROLE)
    kb.keycloak.ensure_realm_roles(user["id"], wanted)
    access.enforce_for_member(kb, account_id, user["id"], f"joined account {account_id}")
    if org_id:  # a new member (or admin) of the organization: its admins' permissions follow at once
        from .. import delegation

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
def invite_lead(kb, data: dict, cause: str) -> str:
    """Handle lead.invite_requested; returns what happened."""
    email = data["email"].strip().lower()
    details = {k: data.get(k) for k in ("first_name", "last_name", "company", "redirect_uri")}
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
    else:
        kb.keycloak.set_user_attributes(user, {LEAD_ATTRIBUTE: [data["lead_id"]]})
    kb.keycloak.ensure_realm_roles(user["id"], {LEAD_ROLE})
    _set_status(kb, inv_id, keycloak_user_id=user["id"])

    if kb.keycloak.has_password(user["id"]):
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
    days = data.get("expires_in_days") or kb.settings.invite_expires_in_days
    client_id, redirect = _lead_redirect(kb, data.get("redirect_uri"))
    kb.keycloak.send_actions_email(user["id"], ["UPDATE_PASSWORD"], days * 86400, client_id, redirect)
    _record_sent(kb, inv_id, cause)
    return "sent"


def _lead_redirect(kb, redirect_uri: str | None) -> tuple[str, str]:
    if redirect_uri:
        return "customer-portal", redirect_uri
    if kb.settings.invite_redirect_uri:
        return "customer-portal", kb.settings.invite_redirect_uri
    return "account-console", f"{kb.settings.keycloak_url.rstrip('/')}/realms/{kb.settings.keycloak_realm}/account/"


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
