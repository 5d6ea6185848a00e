"""contact.upserted: an existing identity follows its CRM contact; `left` ends access and membership.

No identity is created here: a contact without one only updates its pending invitation.
"""
from __future__ import annotations

from sqlalchemy import select

from .. import outbox, tasks
from ..events import MEMBERSHIP_CHANGED, ContactUpsertedSchema
from ..errors import RetryableError
from ..models import Invitation
from . import access, audit
from .invitations import CONTACT_ATTRIBUTE


def find_contact_identity(kb, contact_id: str) -> dict | None:
    """The Keycloak user linked to the contact (by crm_contact_id, else by its accepted invitation)."""
    user = kb.keycloak.find_user_by_attribute(CONTACT_ATTRIBUTE, contact_id)
    if user is not None:
        return user
    with kb.db.session() as session:
        inv = session.scalar(select(Invitation).where(Invitation.kind == "contact", Invitation.crm_id == contact_id))
        user_id = inv.keycloak_user_id if inv else None
    return kb.keycloak.get_user(user_id) if user_id else None


@tasks.crm_event("contact.upserted", schema=ContactUpsertedSchema, ordering_key=lambda d: f"contact:{d['contact_id']}")
def handle_contact_upserted(kb, data: dict, cause: str) -> str:
    """An existing identity follows its CRM contact; `left` ends access and membership."""
    contact_id = data["contact_id"]
    user = find_contact_identity(kb, contact_id)
    if user is None:
        _update_pending_invitation(kb, data)
        return "no_identity"
    if data.get("status") == "left":
        return contact_left(kb, user, contact_id, cause)

    ensure_profile(kb, user, data)
    if data.get("account_id"):
        ensure_membership(kb, user, contact_id, data["account_id"], cause)
    if data.get("roles") is not None:
        wanted = kb.roles.business_roles_for(data["roles"])
        added, removed = kb.keycloak.ensure_realm_roles(user["id"], wanted, managed=set(kb.roles.business_roles))
        if added or removed:
            with kb.db.session() as session:
                audit.record(session, "roles.changed", f"user:{user['id']}", cause, {"added": sorted(added), "removed": sorted(removed)})
    # Back from `left`: give access back unless the contract says otherwise.
    access.restore_revoked(kb, access.LEFT_COMPANY, access.CONTRACT_ACTIVE, cause, user_ids=[user["id"]])
    return "updated"


def ensure_profile(kb, user: dict, data: dict) -> None:
    """Names, email and phone as in the CRM; one update call, only when something differs."""
    want = {"firstName": data.get("first_name"), "lastName": data.get("last_name"), "email": data["email"].lower()}
    want = {k: v for k, v in want.items() if v is not None}
    attributes = dict(user.get("attributes") or {})
    if data.get("phone") is not None:
        attributes["phone"] = [data["phone"]]
    changed = {k: v for k, v in want.items() if user.get(k) != v}
    if not changed and attributes == (user.get("attributes") or {}):
        return
    rep = {k: user[k] for k in ("username", "email", "firstName", "lastName", "enabled", "emailVerified") if k in user}
    rep.update(want)
    if "email" in changed:
        rep["emailVerified"] = False
    rep["attributes"] = attributes
    kb.keycloak.update_user(user["id"], rep)
    user.update(rep)


def ensure_membership(kb, user: dict, contact_id: str, account_id: str, cause: str) -> None:
    """Member of the account's organization, and of no other CRM account's organization."""
    org = kb.keycloak.find_organization(account_id)
    if org is None:
        raise RetryableError(f"Account {account_id} has no organization yet: the CRM must send account.upserted first (retrying).", retry_after=30)
    for other in kb.keycloak.user_organizations(user["id"]):
        if other["id"] != org["id"] and (other.get("attributes") or {}).get("crm_account_id"):
            kb.keycloak.remove_member(other["id"], user["id"])
            _membership_changed(kb, other["attributes"]["crm_account_id"][0], user, contact_id, "removed", cause)
    if not kb.keycloak.is_member(org["id"], user["id"]):
        kb.keycloak.add_member(org["id"], user["id"])
        _membership_changed(kb, account_id, user, contact_id, "added", cause)
    access.enforce_for_member(kb, account_id, user["id"], cause)


def contact_left(kb, user: dict, contact_id: str, cause: str) -> str:
    """Access ends now (disabled, sessions ended) and every CRM organization membership goes."""
    access.revoke_users(kb, [user], access.LEFT_COMPANY, None, cause)
    for org in kb.keycloak.user_organizations(user["id"]):
        account_ids = (org.get("attributes") or {}).get("crm_account_id") or []
        if account_ids:
            # Keycloak 26.7.3 deletes a "managed" member (one who joined by invitation) with
            # its membership; the CRM is told the identity went with it.
            deleted = kb.keycloak.membership_type(org["id"], user["id"]) == "MANAGED"
            roles = _business_roles(kb, user)
            kb.keycloak.remove_member(org["id"], user["id"])
            _membership_changed(kb, account_ids[0], user, contact_id, "removed", cause,
                                roles=roles, identity_deleted=deleted)
    return "left"


def _business_roles(kb, user: dict) -> list[str]:
    return sorted(kb.keycloak.user_realm_roles(user["id"]) & set(kb.roles.business_roles))


def _membership_changed(kb, account_id: str, user: dict, contact_id: str, change: str, cause: str,
                        roles: list[str] | None = None, identity_deleted: bool = False) -> None:
    data = {"account_id": account_id, "user_id": user["id"], "contact_id": contact_id, "change": change,
            "roles": roles if roles is not None else _business_roles(kb, user), "actor": "crm"}
    if identity_deleted:
        data["identity_deleted"] = True
    with kb.db.session() as session:
        outbox.record(session, MEMBERSHIP_CHANGED, data, f"{MEMBERSHIP_CHANGED}:{account_id}:{user['id']}:{change}:{cause}")
        audit.record(session, f"membership.{change}", f"account:{account_id}", cause, {"user_id": user["id"]})


def _update_pending_invitation(kb, data: dict) -> None:
    with kb.db.session() as session:
        inv = session.scalar(select(Invitation).where(Invitation.kind == "contact", Invitation.crm_id == data["contact_id"]))
        if inv is None or inv.status == "accepted":
            return
        details = dict(inv.details or {})
        for key in ("first_name", "last_name", "roles"):
            if data.get(key) is not None:
                details[key] = data[key]
        inv.details = details
