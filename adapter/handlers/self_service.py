"""Self-registration checked against the CRM, approvals, and what customers change themselves.

- Someone registers without an invitation: with a verified email at a domain of an account
  whose contract is active, they become a member with the default business roles at once;
  otherwise they are queued (`registration.pending_approval`) until a decision arrives
  (`registration.decided` from the CRM, or the CLI/API, which store the same event).
- An unverified email at a customer's domain is sent Keycloak's verification email first.
- Profile and email changes reach the CRM as `identity.profile_updated`, verification as
  `identity.email_verified`.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from .. import outbox, tasks
from ..db import utcnow
from ..events import (IDENTITY_EMAIL_VERIFIED, IDENTITY_PROFILE_UPDATED, IDENTITY_REGISTERED,
                      REGISTRATION_PENDING_APPROVAL, RegistrationDecidedSchema)
from ..errors import PermanentError, RetryableError
from ..models import Account, AccountDomain, SelfRegistration
from . import access, audit
from .access import contract_is_active

log = logging.getLogger(__name__)

REJECTED = "rejected"


def crm_link(user: dict) -> dict:
    """{contact_id: ...} or {lead_id: ...} (or nothing) from the user's CRM attributes."""
    attributes = user.get("attributes") or {}
    for attribute, key in (("crm_contact_id", "contact_id"), ("crm_lead_id", "lead_id")):
        if attributes.get(attribute):
            return {key: attributes[attribute][0]}
    return {}


def account_for_email(kb, email: str) -> tuple[str | None, bool]:
    """(account_id whose domain matches the email, whether its contract is active)."""
    domain = email.rsplit("@", 1)[-1].lower()
    with kb.db.session() as session:
        row = session.get(AccountDomain, domain)
        if row is None:
            return None, False
        account = session.get(Account, row.account_id)
        return row.account_id, bool(account and contract_is_active(account.contract_status, account.contract_ends_at))


def self_registered(kb, user_id: str, details: dict, when: datetime | None, cause: str) -> str:
    """A REGISTER with no invitation behind it."""
    user = kb.keycloak.get_user(user_id)
    if user is None:
        return "user_gone"
    email = (user.get("email") or details.get("email") or "").lower()
    account_id, active = account_for_email(kb, email)
    company = ((user.get("attributes") or {}).get("company") or [None])[0]
    with kb.db.session() as session:
        reg = session.get(SelfRegistration, user_id)
        if reg is not None:
            return reg.status  # this registration was handled already
        reg = SelfRegistration(user_id=user_id, email=email, company=company, matched_account_id=account_id,
                               status="pending", registered_at=(when.replace(tzinfo=None) if when else utcnow()))
        session.add(reg)
        if not active:
            outbox.record(session, REGISTRATION_PENDING_APPROVAL,
                          {"user_id": user_id, "email": email, "company": company, "matched_account_id": account_id},
                          f"{REGISTRATION_PENDING_APPROVAL}:{user_id}")
            audit.record(session, "registration.pending", f"user:{user_id}", cause, {"matched_account_id": account_id})
            return "pending"
        reg.status = "awaiting_verification"
    if user.get("emailVerified"):
        return approve(kb, user_id, account_id, None, cause, decided_by="auto: active contract")
    kb.keycloak.send_verify_email(user_id)
    return "awaiting_verification"


def email_verified(kb, user_id: str, cause: str) -> str:
    user = kb.keycloak.get_user(user_id)
    if user is None:
        return "user_gone"
    with kb.db.session() as session:
        outbox.record(session, IDENTITY_EMAIL_VERIFIED, {"user_id": user_id, **crm_link(user)},
                      f"{IDENTITY_EMAIL_VERIFIED}:{user_id}:{user.get('email')}")
        reg = session.get(SelfRegistration, user_id)
        waiting = reg is not None and reg.status == "awaiting_verification"
    if not waiting:
        return "verified"
    account_id, active = account_for_email(kb, user.get("email") or "")
    if active:
        return approve(kb, user_id, account_id, None, cause, decided_by="auto: active contract")
    with kb.db.session() as session:
        reg = session.get(SelfRegistration, user_id)
        reg.status = "pending"
        outbox.record(session, REGISTRATION_PENDING_APPROVAL,
                      {"user_id": user_id, "email": reg.email, "company": reg.company, "matched_account_id": account_id},
                      f"{REGISTRATION_PENDING_APPROVAL}:{user_id}")
    return "pending"


def approve(kb, user_id: str, account_id: str | None, crm_roles: list[str] | None, cause: str, decided_by: str) -> str:
    """Membership of the account's organization and business roles; the CRM hears identity.registered once."""
    with kb.db.session() as session:
        reg = session.get(SelfRegistration, user_id)
        account_id = account_id or (reg.matched_account_id if reg else None)
    if not account_id:
        raise PermanentError(f"Approving {user_id} needs an account_id: no customer domain matched their email; send registration.decided with account_id.")
    org = kb.keycloak.find_organization(account_id)
    if org is None:
        raise RetryableError(f"Account {account_id} has no organization yet: the CRM must send account.upserted first (retrying).", retry_after=30)
    user = kb.keycloak.get_user(user_id)
    if user is None:
        raise PermanentError(f"User {user_id} no longer exists in Keycloak.")
    if not kb.keycloak.is_member(org["id"], user_id):
        kb.keycloak.add_member(org["id"], user_id)
    roles = kb.roles.business_roles_for(crm_roles)
    kb.keycloak.ensure_realm_roles(user_id, roles)
    access.restore_revoked(kb, REJECTED, "admin", cause, user_ids=[user_id])
    with kb.db.session() as session:
        reg = session.get(SelfRegistration, user_id) or SelfRegistration(user_id=user_id, email=user.get("email", ""), status="pending")
        reg.status, reg.account_id, reg.decided_at, reg.decided_by = "approved", account_id, utcnow(), decided_by
        session.merge(reg)
        outbox.record(session, IDENTITY_REGISTERED,
                      {"user_id": user_id, "email": reg.email, **crm_link(user), "account_id": account_id,
                       "via": "self_service", "registered_at": outbox.iso(reg.registered_at)},
                      f"{IDENTITY_REGISTERED}:{user_id}")
        audit.record(session, "registration.approved", f"user:{user_id}", cause, {"account_id": account_id, "roles": sorted(roles), "by": decided_by})
    return "approved"


def reject(kb, user_id: str, cause: str, decided_by: str) -> str:
    """The registration is refused: the identity is disabled and its sessions end."""
    user = kb.keycloak.get_user(user_id)
    if user is None:
        raise PermanentError(f"User {user_id} no longer exists in Keycloak.")
    access.revoke_users(kb, [user], REJECTED, None, cause)
    with kb.db.session() as session:
        reg = session.get(SelfRegistration, user_id) or SelfRegistration(user_id=user_id, email=user.get("email", ""), status="pending")
        reg.status, reg.decided_at, reg.decided_by = "rejected", utcnow(), decided_by
        session.merge(reg)
        audit.record(session, "registration.rejected", f"user:{user_id}", cause, {"by": decided_by})
    return "rejected"


def _registration_key(data: dict) -> str:
    return f"user:{data['user_id']}" if data.get("user_id") else f"email:{data['email'].lower()}"


@tasks.crm_event("registration.decided", schema=RegistrationDecidedSchema, ordering_key=_registration_key)
def handle_registration_decided(kb, data: dict, cause: str, crm_time=None) -> str:
    """registration.decided (from the CRM, or stored the same way by the CLI/API)."""
    user_id = data.get("user_id")
    if not user_id:
        with kb.db.session() as session:
            reg = session.scalar(select(SelfRegistration).where(SelfRegistration.email == data["email"].lower())
                                 .order_by(SelfRegistration.registered_at.desc()))
            user_id = reg.user_id if reg else None
        if user_id is None:
            user = kb.keycloak.find_user_by_email(data["email"])
            if user is None:
                raise PermanentError(f"No identity registered with {data['email']}: check the address, or wait for the registration.")
            user_id = user["id"]
    if data["decision"] == "approved":
        return approve(kb, user_id, data.get("account_id"), data.get("roles") or None, cause, decided_by=cause)
    return reject(kb, user_id, cause, decided_by=cause)


def profile_updated(kb, event: dict, cause: str) -> str:
    """UPDATE_PROFILE / UPDATE_EMAIL: the CRM hears old and new values of what changed."""
    details = event.get("details") or {}
    changes = {}
    for key, new in details.items():
        if key.startswith("updated_"):
            field = key.removeprefix("updated_")
            old = details.get(f"previous_{field}")
            if old != new:
                changes[field] = {"old": old, "new": new}
    if not changes:
        return "no_change"
    user = kb.keycloak.get_user(event["userId"]) or {}
    with kb.db.session() as session:
        outbox.record(session, IDENTITY_PROFILE_UPDATED, {"user_id": event["userId"], **crm_link(user), "changes": changes},
                      f"{IDENTITY_PROFILE_UPDATED}:{event['id']}")
    return "reported"


def pending_registrations(kb, status: str | None = "pending") -> list[dict]:
    with kb.db.session() as session:
        query = select(SelfRegistration).order_by(SelfRegistration.registered_at)
        if status:
            query = query.where(SelfRegistration.status == status)
        return [{"user_id": r.user_id, "email": r.email, "company": r.company, "matched_account_id": r.matched_account_id,
                 "status": r.status, "account_id": r.account_id, "registered_at": outbox.iso(r.registered_at),
                 "decided_at": outbox.iso(r.decided_at), "decided_by": r.decided_by} for r in session.scalars(query)]
