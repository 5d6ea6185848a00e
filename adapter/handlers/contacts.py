"""contact.upserted: an existing identity follows its CRM contact; `left` ends access and membership.

No identity is created here: a contact without one only updates its pending invitation.
The contact's newest state is stored first (records.py: an older event changes nothing).
`converge_contact` then makes the person's access match it, and runs again on every
Keycloak fact about the person and from the sweep:

- `left`: the person carries `crm_status: left`, is disabled with their sessions ended,
  belongs to no CRM organization; their pending organization invitations are deleted in
  Keycloak (the link stops working) and a lead link of theirs not yet used is ended;
- `active`: `crm_status: active`; access given back if Keybridge took it because they
  left (the contracts of their organizations are read by Keycloak's extension itself).

Profile, roles and the account's membership change only when a contact.upserted says so:
the sweep does not undo what people and org admins change themselves in between.
"""
from __future__ import annotations

from sqlalchemy import select

from .. import outbox, tasks
from ..events import MEMBERSHIP_CHANGED, ContactUpsertedSchema
from ..errors import RetryableError
from ..models import Invitation
from . import access, audit, contracts, invitations, records
from .invitations import CONTACT_ATTRIBUTE

CRM_STATUS_ATTRIBUTE = "crm_status"  # active | left, read by the Keycloak extension too
STATE_FIELDS = ("contact_id", "email", "account_id", "first_name", "last_name", "phone", "status")


def find_contact_identity(kb, contact_id: str) -> dict | None:
    """The Keycloak user linked to the contact: by crm_contact_id, else by its accepted invitation,
    else the invitee who registered through its invitation before Keybridge read the registration
    (a user with the invited email who is a member of the invitation's organization)."""
    user = kb.keycloak.find_user_by_attribute(CONTACT_ATTRIBUTE, contact_id)
    if user is not None:
        return user
    with kb.db.session() as session:
        inv = session.scalar(select(Invitation).where(Invitation.kind == "contact", Invitation.crm_id == contact_id))
        user_id = inv.keycloak_user_id if inv else None
        email, org_id = (inv.email, inv.organization_id) if inv else (None, None)
    if user_id:
        return kb.keycloak.get_user(user_id)
    if email and org_id:
        user = kb.keycloak.find_user_by_email(email)
        if user is not None and kb.keycloak.is_member(org_id, user["id"]):
            return user
    return None


def contact_state(data: dict) -> dict:
    """The part of a contact.upserted (or an invitation) that is the contact's desired state.
    Roles are not kept: they change only when an event gives them (org admins change them too)."""
    return {k: data.get(k) for k in STATE_FIELDS}


@tasks.crm_event("contact.upserted", schema=ContactUpsertedSchema, ordering_key=lambda d: f"contact:{d['contact_id']}")
def handle_contact_upserted(kb, data: dict, cause: str, crm_time=None) -> str:
    """The contact's newest state is stored and the identity follows it; an older event changes nothing."""
    contact_id = data["contact_id"]
    if not records.take(kb, "contact", contact_id, contact_state(data), crm_time, cause):
        return "stale"
    user = find_contact_identity(kb, contact_id)
    if user is None:
        if data.get("status") == "left":
            converge_contact(kb, contact_id, cause, data=data)
            return "left"
        _update_pending_invitation(kb, data)
        return "no_identity"
    if data.get("status") == "left":
        return converge_contact(kb, contact_id, cause, user=user, data=data)

    ensure_profile(kb, user, data)
    if data.get("account_id"):
        ensure_membership(kb, user, contact_id, data["account_id"], cause)
    if data.get("roles") is not None:
        wanted = kb.roles.business_roles_for(data["roles"])
        added, removed = kb.keycloak.ensure_realm_roles(user["id"], wanted, managed=set(kb.roles.business_roles))
        if added or removed:
            with kb.db.session() as session:
                audit.record(session, "roles.changed", f"user:{user['id']}", cause, {"added": sorted(added), "removed": sorted(removed)})
    converge_contact(kb, contact_id, cause, user=user, data=data)
    return "updated"


def converge_contact(kb, contact_id: str, cause: str, user: dict | None = None, data: dict | None = None) -> str:
    """Make the contact's identity's access match their desired state (the stored one; `data` when
    Keybridge keeps none, e.g. work without a CRM time). Idempotent; see the module docstring.
    Returns 'left', 'active', 'no_identity' or 'unknown' (no state at all)."""
    record = records.desired(kb, "contact", contact_id)
    state = record.state if record is not None else (contact_state(data) if data else None)
    if state is None:
        return "unknown"
    since = record.updated_at if record is not None else None
    if user is None:
        user = find_contact_identity(kb, contact_id)
    if state.get("status") == "left":
        invitations.revoke_open_invitations(kb, contact_id, state.get("email"), "contact_left", cause)
        if user is None:
            return "left"
        ensure_crm_status(kb, user, "left")
        contact_left(kb, user, contact_id, cause, since=since)
        return "left"
    if user is None:
        return "no_identity"
    ensure_crm_status(kb, user, "active")
    # Back from `left`: the flag back, unless an administrator says otherwise (a contract that is
    # not active still refuses them: the extension reads it).
    access.restore_revoked(kb, access.LEFT_COMPANY, access.CONTRACT_ACTIVE, cause, user_ids=[user["id"]])
    return "active"


def ensure_crm_status(kb, user: dict, status: str) -> None:
    """The person carries `crm_status` (active | left) where Keycloak can read it; no call when it does.

    The write is made on a freshly read user: an update carries `enabled`, and a stale copy
    would give back access that was just taken."""
    if (user.get("attributes") or {}).get(CRM_STATUS_ATTRIBUTE) == [status]:
        return
    fresh = kb.keycloak.get_user(user["id"])
    if fresh is None:
        return
    kb.keycloak.set_user_attributes(fresh, {CRM_STATUS_ATTRIBUTE: [status]})
    user["attributes"] = fresh["attributes"]


def refuse_registration(kb, inv_id: int, user_id: str, contact_id: str, cause: str) -> str:
    """Someone registered through the invitation of a contact whose newest state is `left`:
    the identity is linked to the contact and ends with no access (converge_contact)."""
    user = kb.keycloak.get_user(user_id)
    if user is None:
        return "user_gone"
    kb.keycloak.set_user_attributes(user, {CONTACT_ATTRIBUTE: [contact_id], CRM_STATUS_ATTRIBUTE: ["left"]})  # fresh: read above
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        if inv.status != "refused":
            inv.status, inv.keycloak_user_id = "refused", user_id
            audit.record(session, "registration.refused", f"contact:{contact_id}", cause,
                         {"user_id": user_id, "reason": "contact_left"})
    converge_contact(kb, contact_id, cause, user=user)
    return "refused_left"


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
    before = kb.keycloak.user_organizations(user["id"])
    changed = False
    for other in before:
        if other["id"] != org["id"] and (other.get("attributes") or {}).get("crm_account_id"):
            kb.keycloak.remove_member(other["id"], user["id"])
            _membership_changed(kb, other["attributes"]["crm_account_id"][0], user, contact_id, "removed", cause)
            changed = True
    if not kb.keycloak.is_member(org["id"], user["id"]):
        kb.keycloak.add_member(org["id"], user["id"])
        _membership_changed(kb, account_id, user, contact_id, "added", cause)
        changed = True
    if changed:  # another organization's contract may give (or take) access: the CRM hears if it did
        contracts.tell_if_access_changed(kb, user, before, cause)


def contact_left(kb, user: dict, contact_id: str, cause: str, since=None) -> str:
    """Access ends now (disabled, sessions ended) and every CRM organization membership goes.

    `since`: when the `left` state was taken; an administrator who enabled the person later is respected."""
    access.revoke_users(kb, [user], access.LEFT_COMPANY, None, cause, since=since)
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
