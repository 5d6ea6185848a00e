"""Delegated administration: an organization's admins manage its people, and only them.

Keycloak 26.7.3 does the part it can express with fine-grained admin permissions (v2),
which these idempotent ensure_* steps keep in step with the organizations and their
admins. For an organization with alias A whose admins (its members in its own `admins`
group, org_admins.py: admin rights belong to one organization) are not nobody:

- user policy ``keybridge: admins of A`` names those admins;
- permission ``keybridge: organization A`` (Organizations: this one; view) lets them read it;
- permission ``keybridge: members of A`` (Users: the organization's members; view, map-roles)
  lets them list and open their people in the admin console and give or take roles;
- permission ``keybridge: business roles`` (Roles: the business roles; map-role), one for
  all organizations with the policy ``keybridge: org admins`` (every holder of org_admin):
  Keycloak only grants what *every* permission on a resource grants, so the roles cannot
  carry one permission per organization. Which people an admin may give them to is what
  the per-organization members permission limits.

`org_admin` itself brings realm-management's `query-users` (realm-config), without which
the console shows no user list; with FGAP the list holds only the people an admin may view.

Writing these permissions needs realm-management's `manage-realm`, which the adapter's
runtime client (`keybridge-adapter`) does not hold: they are written with a second client,
`keybridge-delegation` (`kb.delegation_keycloak`), used for nothing else. Without its
secret, delegation is skipped, logged and audited (`delegation.unavailable`).

What Keycloak cannot limit to one organization is inviting, handling invitations and
removing: they need Organizations `manage`, which also lets the holder rename, disable or
delete the whole organization, and removing also needs Users `manage`, which lets them
delete people. And while the permissions above let an admin take a business role away,
the 26.7.3 console shows nobody without realm-management's view-realm (realm settings) any
role mapping, so it offers nothing to take away. The adapter's page (adapter/portal) does
those, and gives business roles too so that everything an org admin does is in one place,
with the adapter's own account, after checking that the logged-in person administers
that organization (the functions below take that organization).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from . import org_admins, outbox
from .db import utcnow
from .events import MEMBERSHIP_CHANGED
from .handlers import audit, invitation_lifecycle
from .keycloak import AdminPermissionsOff
from .models import OrgAdminInvitation
from .org_admins import ORG_ADMIN_ROLE, account_id_of, administered_organizations  # noqa: F401 (the page uses them from here)

log = logging.getLogger(__name__)

CONTACT_ATTRIBUTE = "crm_contact_id"
MEMBER_SCOPES = ("view", "map-roles")
ORGANIZATION_SCOPES = ("view",)
ROLE_SCOPES = ("map-role",)
ALL_ADMINS_POLICY = "keybridge: org admins"
BUSINESS_ROLES_PERMISSION = "keybridge: business roles"


@dataclass(frozen=True)
class DelegationNames:
    """The names of one organization's admin policy and permissions (stable: the alias never changes)."""

    admins: str
    organization: str
    members: str

    @classmethod
    def of(cls, alias: str) -> "DelegationNames":
        return cls(f"keybridge: admins of {alias}", f"keybridge: organization {alias}", f"keybridge: members of {alias}")


# -- what Keycloak enforces ---------------------------------------------------------------

class DelegationClientMissing(AdminPermissionsOff):
    """No secret for the keybridge-delegation client: the admin permissions cannot be written."""


def _permissions(kb):
    """The gateway of the delegation client, the only one allowed to write admin permissions."""
    gateway = getattr(kb, "delegation_keycloak", None)
    if gateway is None:
        raise DelegationClientMissing(
            "KEYBRIDGE_KEYCLOAK_DELEGATION_CLIENT_SECRET is not set, so the organization admins' Keycloak permissions "
            "are not kept: give the worker the secret of the keybridge-delegation client (realm-config/README.md)")
    return gateway


def ensure_organization_delegation(kb, org_id: str, cause: str, org_admin_ids: set[str] | None = None) -> str:
    """The organization's admins may view it, view its members and map business roles to them; nobody else may.

    `org_admin_ids` are the holders of realm role org_admin (for the shared business roles
    permission), asked of Keycloak when not given. Returns "delegated", "no_admins", or
    "admin_permissions_off" when the realm has them off or the delegation client is not
    configured (logged and audited: the CRM flows that call this go on without delegation).
    Calls nothing that writes when all is as it should be. Raises RetryableError/PermanentError
    from the gateway.
    """
    try:
        return _ensure_organization_delegation(kb, org_id, cause, org_admin_ids)
    except AdminPermissionsOff as exc:
        log.warning("organization %s: no delegated administration: %s", org_id, exc)
        with kb.db.session() as session:
            audit.record(session, "delegation.unavailable", f"organization:{org_id}", cause, {"reason": str(exc)})
        return "admin_permissions_off"


def follow_now(kb, org_id: str, cause: str) -> None:
    """After the page changed a membership: the permissions follow at once when this process holds the
    delegation client; otherwise the worker makes them follow from the admin event log."""
    if getattr(kb, "delegation_keycloak", None) is not None:
        ensure_organization_delegation(kb, org_id, cause)


def _ensure_organization_delegation(kb, org_id: str, cause: str, org_admin_ids: set[str] | None) -> str:
    permissions = _permissions(kb)
    org = kb.keycloak.get_organization(org_id)
    names = DelegationNames.of(org["alias"])
    members = sorted(m["id"] for m in kb.keycloak.organization_members(org_id))
    # an organization without members has no admins: no need to ask
    admins = sorted(set(members) & org_admins.admin_ids(kb, org_id)) if members else []
    changed: list[str] = []
    if not admins:
        # Permissions first: a permission left without its policy would grant nothing, but say nothing either.
        for name in (names.members, names.organization, names.admins):
            if permissions.delete_admin_policy(name):
                changed.append(f"deleted {name}")
        result = "no_admins"
    else:
        policy_id = _ensure_user_policy(permissions, names.admins, admins, f"Admins of organization {org['name']}", changed)
        _ensure_permission(permissions, names.organization, "Organizations", [org_id], ORGANIZATION_SCOPES, policy_id,
                           f"Admins of {org['name']} may read it", changed)
        _ensure_permission(permissions, names.members, "Users", members, MEMBER_SCOPES, policy_id,
                           f"Admins of {org['name']} may view its members and map business roles to them", changed)
        result = "delegated"
    if members or org_admin_ids is not None:
        ensure_business_role_permission(kb, org_admin_ids, cause)
    if changed:
        with kb.db.session() as session:
            audit.record(session, "delegation.updated", f"organization:{org_id}", cause,
                         {"changes": changed, "admins": admins, "members": len(members)})
        log.info("organization %s delegation: %s (%s)", org["alias"], "; ".join(changed), cause)
    return result


def ensure_business_role_permission(kb, org_admin_ids: set[str] | None, cause: str) -> None:
    """Holders of org_admin may map the business roles (to whom: see the members permissions); nobody else.

    Does nothing (but log) when the realm's admin permissions are off or the delegation client is missing.
    """
    try:
        _ensure_business_role_permission(kb, org_admin_ids, cause)
    except AdminPermissionsOff as exc:
        log.warning("no delegated administration: %s", exc)


def _ensure_business_role_permission(kb, org_admin_ids: set[str] | None, cause: str) -> None:
    permissions = _permissions(kb)
    holders = org_admin_ids if org_admin_ids is not None else kb.keycloak.realm_role_user_ids(ORG_ADMIN_ROLE)
    changed: list[str] = []
    if not holders:
        for name in (BUSINESS_ROLES_PERMISSION, ALL_ADMINS_POLICY):
            if permissions.delete_admin_policy(name):
                changed.append(f"deleted {name}")
    else:
        policy_id = _ensure_user_policy(permissions, ALL_ADMINS_POLICY, sorted(holders), "Every holder of org_admin", changed)
        role_ids = [kb.keycloak.realm_role(name)["id"] for name in sorted(kb.roles.business_roles)]
        _ensure_permission(permissions, BUSINESS_ROLES_PERMISSION, "Roles", role_ids, ROLE_SCOPES, policy_id,
                           "Org admins may map the business roles (to their own organization's members only)", changed)
    if changed:
        with kb.db.session() as session:
            audit.record(session, "delegation.updated", "realm:business-roles", cause, {"changes": changed})


def _ensure_user_policy(permissions, name: str, user_ids: list[str], description: str, changed: list[str]) -> str:
    current = permissions.admin_policy(name)
    if current is not None and sorted(current.get("users") or []) == sorted(user_ids):
        return current["id"]
    changed.append(f"{'created' if current is None else 'updated'} {name}")
    return permissions.save_admin_user_policy(name, user_ids, description)


def _ensure_permission(permissions, name: str, resource_type: str, resource_ids: list[str], scopes, policy_id: str,
                       description: str, changed: list[str]) -> str:
    current = permissions.admin_policy(name)
    if (current is not None and current.get("resourceType") == resource_type
            and sorted(current.get("resources") or []) == sorted(resource_ids)
            and sorted(current.get("scopes") or []) == sorted(scopes)
            and (current.get("policies") or []) == [policy_id]):
        return current["id"]
    changed.append(f"{'created' if current is None else 'updated'} {name}")
    return permissions.save_admin_permission(name, resource_type, resource_ids, list(scopes), [policy_id], description)


def ensure_user_delegations(kb, user_id: str, cause: str) -> list[str]:
    """Every organization the user belongs to has its delegation up to date (after their membership or org_admin changed)."""
    orgs = kb.keycloak.organizations_of_member(user_id)
    holders = kb.keycloak.realm_role_user_ids(ORG_ADMIN_ROLE)
    for org in orgs:
        ensure_organization_delegation(kb, org["id"], cause, org_admin_ids=holders)
    if not orgs:
        ensure_business_role_permission(kb, holders, cause)
    return [o["id"] for o in orgs]


# -- who may use the adapter's page: org_admins.administered_organizations ----------------

def business_roles_of(kb, user_id: str) -> list[str]:
    return sorted(kb.keycloak.user_realm_roles(user_id) & set(kb.roles.business_roles))


# -- what org admins do: telling the CRM ---------------------------------------------------

@dataclass(frozen=True)
class Actor:
    """Who did something in Keycloak, as the CRM is told (`actor` is their email or a stand-in)."""

    label: str
    user_id: str | None = None


def actor_of_user(user: dict | None, user_id: str | None) -> Actor:
    if user is None:
        return Actor(f"keycloak-admin:{user_id}" if user_id else "keycloak-admin", user_id)
    return Actor(user.get("email") or user.get("username") or user["id"], user["id"])


def record_membership_changed(kb, account_id: str, user: dict, change: str, actor: Actor, fact_id: str,
                              roles: list[str] | None = None, identity_deleted: bool | None = None) -> bool:
    """Owe the CRM one membership.changed; `fact_id` makes it once-only. Returns whether it is new.

    A removal says whether Keycloak deleted the identity with it (`identity_deleted`, see `remove_member`).
    """
    contact = ((user.get("attributes") or {}).get(CONTACT_ATTRIBUTE) or [None])[0]
    data = {"account_id": account_id, "user_id": user["id"], "contact_id": contact, "change": change,
            "roles": roles if roles is not None else business_roles_of(kb, user["id"]),
            "actor": actor.label, "actor_user_id": actor.user_id}
    if identity_deleted is not None:
        data["identity_deleted"] = identity_deleted
    with kb.db.session() as session:
        new = outbox.record(session, MEMBERSHIP_CHANGED, data, f"{MEMBERSHIP_CHANGED}:{fact_id}")
        if new:
            audit.record(session, f"membership.{change}", f"account:{account_id}", f"{actor.label} in Keycloak",
                         {"user_id": user["id"], "roles": data["roles"]})
    return new


def take_business_access(kb, user_id: str) -> set[str]:
    """A person in no CRM organization keeps no business role and no org_admin (their next token has no app roles)."""
    if any(account_id_of(o) for o in kb.keycloak.organizations_of_member(user_id)):
        org_admins.ensure_role_follows(kb, user_id)  # still a member elsewhere: org_admin only where they administer
        return set()
    _, removed = kb.keycloak.ensure_realm_roles(user_id, set(), managed=set(kb.roles.business_roles) | {ORG_ADMIN_ROLE})
    return removed


# -- the three things the page does ----------------------------------------------------------

def invite_member(kb, org: dict, email: str, first_name: str | None, last_name: str | None, admin: dict) -> str:
    """An org admin invites someone into their organization; returns what happened.

    The same invitation as the CRM's contact invitation (invitations.invite_contact): Keycloak's
    organization invitation, so it is listed with the organization's pending invitations and
    can be sent again or revoked like any other.

    - "invited": a new person gets the registration link; registering makes them a member;
    - "join_link_sent": someone with an identity already gets the join link;
    - "already_member", "already_invited" (an invitation to the address is pending: send it again instead).
    Either way the worker notices when they joined (`settle_invitations`, and the REGISTER event at
    once, `settle_page_invitation`): the default business roles, the delegation, and
    membership.changed to the CRM with the admin as actor.
    """
    email = email.strip().lower()
    actor = actor_of_user(admin, admin["id"])
    account_id = account_id_of(org)
    user = kb.keycloak.find_user_by_email(email)
    if user is not None and kb.keycloak.is_member(org["id"], user["id"]):
        return "already_member"
    if any(i.get("status", "PENDING") == "PENDING" for i in kb.keycloak.organization_invitations(org["id"], email)):
        return "already_invited"  # Keycloak refuses a second invitation while one is pending
    if user is not None:
        kb.keycloak.invite_existing_member(org["id"], user["id"])
    else:
        kb.keycloak.invite_new_member(org["id"], email, first_name, last_name)
    with kb.db.session() as session:
        for old in session.scalars(select(OrgAdminInvitation).where(  # an earlier invitation that lapsed
                OrgAdminInvitation.organization_id == org["id"], OrgAdminInvitation.email == email,
                OrgAdminInvitation.status == "pending")):
            old.status, old.settled_at = "expired", utcnow()
        # A new person has no identity yet: user_id stays "" until they registered (settle_invitations).
        session.add(OrgAdminInvitation(organization_id=org["id"], account_id=account_id, email=email,
                                       user_id=user["id"] if user else "", invited_by=admin["id"], invited_by_email=actor.label))
        audit.record(session, "org_admin.invited", f"organization:{org['id']}", f"{actor.label} on the Keybridge page",
                     {"email": email, "existing_user": user["id"] if user else None})
    return "join_link_sent" if user is not None else "invited"


def remove_member(kb, org: dict, user_id: str, admin: dict) -> str:
    """An org admin takes someone out of their organization; returns "removed", "removed_and_deleted" or "not_member".

    Either way their next token refresh is refused ("Invalid organization"). Someone who
    registered through an organization invitation is a *managed* member in Keycloak 26.7.3,
    and Keycloak deletes a managed member's identity with the membership (there is no call
    to make them unmanaged first): "removed_and_deleted". Anyone else keeps their identity
    but, in no CRM organization any more, loses their business roles and org_admin, so a
    new login carries no application role either.
    """
    actor = actor_of_user(admin, admin["id"])
    if user_id == admin["id"]:
        raise ValueError("You cannot remove yourself; ask another admin of your organization or your account manager.")
    membership = kb.keycloak.membership_type(org["id"], user_id)
    if membership is None:
        return "not_member"
    user = kb.keycloak.get_user(user_id)
    kb.keycloak.remove_member(org["id"], user_id)
    return member_left(kb, org, user, actor, f"remove:{org['id']}:{user_id}:{utcnow().isoformat()}",
                       identity_deleted=membership == "MANAGED")


def take_business_role(kb, org: dict, user_id: str, role: str, admin: dict) -> str:
    """An org admin takes a business role from one of their members; returns "taken" or "not_held".

    Keycloak would allow it (the members permission has map-roles), but its console shows an
    admin without view-realm no role mappings, so there is nothing to click there.
    Raises ValueError for a role that is no business role or a person who is no member.
    """
    if role not in kb.roles.business_roles:
        raise ValueError(f"{role} is not a business role.")
    if not kb.keycloak.is_member(org["id"], user_id):
        raise ValueError("That person is not a member of your organization.")
    _, removed = kb.keycloak.ensure_realm_roles(user_id, set(), managed={role})
    if not removed:
        return "not_held"
    account_id = account_id_of(org)
    if account_id:
        record_membership_changed(kb, account_id, kb.keycloak.get_user(user_id), "roles_changed", actor_of_user(admin, admin["id"]),
                                  f"take:{org['id']}:{user_id}:{role}:{utcnow().isoformat()}")
    return "taken"


def give_business_role(kb, org: dict, user_id: str, role: str, admin: dict) -> str:
    """An org admin gives a business role to one of their members; returns "given" or "held".

    The page's counterpart of the console's Assign role (one place for what an org admin does).
    Raises ValueError for a role that is no business role (org_admin, realm-management's, any
    other) or a person who is no member of this organization.
    """
    if role not in kb.roles.business_roles:
        raise ValueError(f"{role} is not a business role.")
    if not kb.keycloak.is_member(org["id"], user_id):
        raise ValueError("That person is not a member of your organization.")
    added, _ = kb.keycloak.ensure_realm_roles(user_id, {role})
    if not added:
        return "held"
    account_id = account_id_of(org)
    if account_id:
        record_membership_changed(kb, account_id, kb.keycloak.get_user(user_id), "roles_changed", actor_of_user(admin, admin["id"]),
                                  f"give:{org['id']}:{user_id}:{role}:{utcnow().isoformat()}")
    return "given"


# -- the organization's pending invitations (Keycloak's record of them) ----------------------

def pending_invitations(kb, org: dict) -> list[dict]:
    """The organization's invitations whose link still works, as Keycloak lists them (newest first).

    Keycloak holds every organization invitation, the CRM's and the page's alike, so this is
    the one list; each row: id, email, name, sent (datetime or None), expires (datetime or None).
    """
    rows = []
    for inv in kb.keycloak.organization_invitations(org["id"]):
        if inv.get("status", "PENDING") != "PENDING":
            continue
        rows.append({"id": inv["id"], "email": (inv.get("email") or "").lower(),
                     "name": " ".join(p for p in (inv.get("firstName"), inv.get("lastName")) if p),
                     "sent": _from_epoch(inv.get("sentDate")), "expires": _from_epoch(inv.get("expiresAt"))})
    return sorted(rows, key=lambda r: (r["sent"] is None, -(r["sent"].timestamp() if r["sent"] else 0), r["email"]))


def _from_epoch(value):
    """Keycloak's invitation times: epoch seconds or milliseconds; None when absent."""
    from datetime import datetime, timezone

    if not isinstance(value, (int, float)) or value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000 if value > 10**11 else value, tz=timezone.utc)


def _page_invitation(kb, org: dict, invitation_id: str, admin: dict) -> tuple[dict | None, str]:
    """The organization's pending invitation with this id (None for another organization's too), and
    the cause an org admin's action on it is audited with."""
    inv = next((i for i in pending_invitations(kb, org) if i["id"] == invitation_id), None)
    return inv, f"{actor_of_user(admin, admin['id']).label} on the Keybridge page"


def resend_invitation(kb, org: dict, invitation_id: str, admin: dict) -> str:
    """An org admin sends one of their organization's pending invitations again; returns "resent" or "gone".

    The CRM's invitation goes again as the CRM's own resend does (invitation_lifecycle: a new
    expiry, invitation.sent); one the CRM did not ask for, with Keycloak's resend.
    """
    inv, cause = _page_invitation(kb, org, invitation_id, admin)
    if inv is None:
        return "gone"
    # The CRM's invitation is resent as the CRM's resend is (a new expiry; invitation.sent), another by Keycloak.
    invitation_lifecycle.resend_organization_invitation(kb, org["id"], invitation_id, cause, email=inv["email"])
    with kb.db.session() as session:
        audit.record(session, "org_admin.invitation_resent", f"organization:{org['id']}", cause,
                     {"email": inv["email"], "invitation_id": invitation_id})
    return "resent"


def revoke_invitation(kb, org: dict, invitation_id: str, admin: dict) -> str:
    """An org admin withdraws one of their organization's pending invitations; returns "revoked" or "gone".

    Keycloak deletes it, so its link stops working. When the CRM asked for it (a contact
    invitation Keybridge sent), the CRM hears invitation.revoked once, like any revocation.
    """
    inv, cause = _page_invitation(kb, org, invitation_id, admin)
    if inv is None:
        return "gone"
    # The CRM's invitation is revoked as the CRM's revoke is (its link ends; invitation.revoked once), another by Keycloak.
    invitation_lifecycle.revoke_organization_invitation(kb, org["id"], invitation_id, cause, email=inv["email"])
    with kb.db.session() as session:
        audit.record(session, "org_admin.invitation_revoked", f"organization:{org['id']}", cause,
                     {"email": inv["email"], "invitation_id": invitation_id})
        for row in session.scalars(select(OrgAdminInvitation).where(
                OrgAdminInvitation.organization_id == org["id"], OrgAdminInvitation.email == inv["email"],
                OrgAdminInvitation.status == "pending")):
            row.status, row.settled_at = "expired", utcnow()
    return "revoked"


def member_left(kb, org: dict, user: dict, actor: Actor, fact_id: str, identity_deleted: bool = False) -> str:
    """Someone is no longer a member: access ends, the delegation follows, the CRM is told."""
    if not identity_deleted:
        take_business_access(kb, user["id"])
    follow_now(kb, org["id"], f"{actor.label} removed {user.get('email') or user['id']}")
    account_id = account_id_of(org)
    if account_id:
        record_membership_changed(kb, account_id, user, "removed", actor, fact_id,
                                  roles=[] if identity_deleted else None, identity_deleted=identity_deleted)
    return "removed_and_deleted" if identity_deleted else "removed"


def settle_invitations(kb, now=None) -> int:
    """Look at invitations sent from the page: who joined becomes a member the admins see; returns how many settled."""
    now = now or utcnow()
    recheck = timedelta(seconds=5 * kb.settings.events_poll_seconds)
    with kb.db.session() as session:
        pending = [i.id for i in session.scalars(select(OrgAdminInvitation).where(OrgAdminInvitation.status == "pending"))
                   if i.checked_at is None or i.checked_at <= now - recheck]
    return sum(_settle(kb, inv_id) for inv_id in pending)


def settle_page_invitation(kb, user_id: str, cause: str) -> bool:
    """A registration or join (Keycloak event) of someone an org admin invited from the page settles
    that invitation at once; returns whether there was one (then it is no self-registration)."""
    user = kb.keycloak.get_user(user_id)
    email = ((user or {}).get("email") or "").lower()
    if not email:
        return False
    with kb.db.session() as session:
        rows = [(i.id, i.status, i.user_id) for i in session.scalars(select(OrgAdminInvitation).where(
            OrgAdminInvitation.email == email, OrgAdminInvitation.status.in_(("pending", "joined"))))]
    # The worker's pass may have settled it first (joined, with this user): the event is theirs all the same.
    settled = [inv_id for inv_id, status, joined_by in rows
               if (status == "joined" and joined_by == user_id) or (status == "pending" and _settle(kb, inv_id, user))]
    if settled:
        log.info("user %s joined on an org admin's invitation (%s)", user_id, cause)
    return bool(settled)


def _settle(kb, inv_id: int, user: dict | None = None) -> bool:
    """One page invitation: joined (a member now: roles, delegation, the CRM told), expired (Keycloak holds
    no pending invitation any more) or still pending. Returns whether it settled as joined."""
    with kb.db.session() as session:
        inv = session.get(OrgAdminInvitation, inv_id)
        if inv is None or inv.status != "pending":
            return False
        org_id, user_id, email, admin_id, admin_email = inv.organization_id, inv.user_id, inv.email, inv.invited_by, inv.invited_by_email
    if not user_id:  # a new person: their identity exists once they registered through the link
        user = user or kb.keycloak.find_user_by_email(email)
        user_id = user["id"] if user and (user.get("email") or "").lower() == email else ""
    status = None
    if user_id and kb.keycloak.is_member(org_id, user_id):
        status = "joined"
        org, user = kb.keycloak.get_organization(org_id), kb.keycloak.get_user(user_id)
        if user is not None:
            if not kb.keycloak.user_realm_roles(user_id) & set(kb.roles.business_roles):
                kb.keycloak.ensure_realm_roles(user_id, set(kb.roles.default_business_roles))
            ensure_organization_delegation(kb, org_id, f"{email} joined on {admin_email}'s invitation")
            if account_id_of(org):
                record_membership_changed(kb, account_id_of(org), user, "added", Actor(admin_email, admin_id),
                                          f"join:{inv_id}")
    elif not any(i.get("status", "PENDING") == "PENDING" for i in kb.keycloak.organization_invitations(org_id, email)):
        status = "expired"  # expired, or revoked
    with kb.db.session() as session:
        inv = session.get(OrgAdminInvitation, inv_id)
        inv.checked_at = utcnow()
        if user_id and not inv.user_id:
            inv.user_id = user_id
        if status and inv.status == "pending":
            inv.status, inv.settled_at = status, utcnow()
    return status == "joined"
