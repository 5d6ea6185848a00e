"""Who administers which organization: the organization's own `admins` group.

Admin rights belong to one organization. Keycloak 26.6+ gives each organization its
own groups (`/admin/realms/{realm}/organizations/{id}/groups`); every CRM organization
gets a top-level group `admins`, and its admins are the members in it. Someone who
administers organization A and is a plain member of B is in A's `admins` group only,
so the page (adapter/portal) and the permissions (delegation.py) give them A alone.

The realm role `org_admin` stays what lets an admin into Keycloak's admin console
(it brings realm-management's `query-users`); it says nothing about *which*
organization. The adapter gives it to whoever it puts into an `admins` group and takes
it from whoever administers no organization any more.

Organization groups are written with the Organizations `manage` permission (and Users
`manage-group-membership`), which org admins do not hold: nobody makes themselves an
admin. An operator makes someone an admin by adding them to the organization's
`admins` group in the admin console (Organizations > the organization > Groups), or by
giving `org_admin` to someone who belongs to one CRM organization only (`adopt`).
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from . import tasks
from .handlers import audit
from .models import Invitation

log = logging.getLogger(__name__)

ADMINS_GROUP = "admins"
ORG_ADMIN_ROLE = "org_admin"
MIGRATION_JOB = "org_admins_migration"


def account_id_of(org: dict) -> str | None:
    values = (org.get("attributes") or {}).get("crm_account_id") or []
    return values[0] if values else None


def admins_group_id(kb, org_id: str, create: bool = False) -> str | None:
    """The id of the organization's `admins` group (made first when `create`), or None."""
    group = kb.keycloak.organization_group(org_id, ADMINS_GROUP)
    if group is not None:
        return group["id"]
    if not create:
        return None
    return kb.keycloak.create_organization_group(org_id, ADMINS_GROUP, "Administer this organization's people (kept by Keybridge)")


def admin_ids(kb, org_id: str) -> set[str]:
    """The people in the organization's `admins` group."""
    group_id = admins_group_id(kb, org_id)
    return kb.keycloak.organization_group_member_ids(org_id, group_id) if group_id else set()


def is_admin_of(kb, org_id: str, user_id: str) -> bool:
    """Whether the user is a member of the organization and in its `admins` group (asked of Keycloak now)."""
    return any(g.get("name") == ADMINS_GROUP and g.get("path") == f"/{ADMINS_GROUP}"
               for g in kb.keycloak.member_organization_groups(org_id, user_id))


def administered_organizations(kb, user_id: str) -> list[dict]:
    """The CRM organizations this person administers (member and in its `admins` group)."""
    return [o for o in kb.keycloak.organizations_of_member(user_id) if account_id_of(o) and is_admin_of(kb, o["id"], user_id)]


def make_admin(kb, org_id: str, user_id: str, cause: str) -> bool:
    """The member administers this organization: in its `admins` group, holding org_admin. Returns whether it is new.

    Raises PermanentError (from Keycloak, 400) when the user is not a member of the organization.
    """
    group_id = admins_group_id(kb, org_id, create=True)
    added = kb.keycloak.add_organization_group_member(org_id, group_id, user_id)
    kb.keycloak.ensure_realm_roles(user_id, {ORG_ADMIN_ROLE})
    if added:
        with kb.db.session() as session:
            audit.record(session, "org_admin.granted", f"organization:{org_id}", cause, {"user_id": user_id})
    return added


def revoke_everywhere(kb, user_id: str, cause: str) -> list[str]:
    """The user administers no organization any more (org_admin was taken from them); returns the organizations."""
    revoked = []
    for org in kb.keycloak.organizations_of_member(user_id):
        group_id = admins_group_id(kb, org["id"])
        if group_id and is_admin_of(kb, org["id"], user_id):
            kb.keycloak.remove_organization_group_member(org["id"], group_id, user_id)
            revoked.append(org["id"])
    if revoked:
        with kb.db.session() as session:
            audit.record(session, "org_admin.revoked", f"user:{user_id}", cause, {"organizations": revoked})
    return revoked


def ensure_role_follows(kb, user_id: str) -> None:
    """org_admin is held by someone who administers an organization, and taken from anyone who administers none."""
    if administered_organizations(kb, user_id):
        kb.keycloak.ensure_realm_roles(user_id, {ORG_ADMIN_ROLE})
    else:
        kb.keycloak.ensure_realm_roles(user_id, set(), managed={ORG_ADMIN_ROLE})


def adopt(kb, user_id: str, cause: str) -> list[str]:
    """Someone holds org_admin but administers no organization (given by an operator, or from before
    admin rights belonged to one organization): decide which organization they administer.

    - a member of one CRM organization: that one;
    - of several: those whose CRM invitation made them org admin (Keybridge's own records);
    - otherwise none: logged and audited; an operator adds them to the right `admins` group.
    Returns the organizations they now administer (none when they already administered one).
    """
    if ORG_ADMIN_ROLE not in kb.keycloak.user_realm_roles(user_id):
        return []
    orgs = [o for o in kb.keycloak.organizations_of_member(user_id) if account_id_of(o)]
    if any(is_admin_of(kb, o["id"], user_id) for o in orgs):
        return []
    chosen = [o["id"] for o in orgs]
    if len(chosen) > 1:
        with kb.db.session() as session:
            invited_as_admin = {inv.organization_id for inv in session.scalars(select(Invitation).where(
                Invitation.kind == "contact", Invitation.keycloak_user_id == user_id, Invitation.status == "accepted"))
                if (inv.details or {}).get("org_admin")}
        chosen = [org_id for org_id in chosen if org_id in invited_as_admin]
    if not chosen:
        reason = ("is a member of several organizations and no CRM invitation says which one they administer"
                  if orgs else "is a member of no CRM organization")
        log.warning("user %s holds %s but %s: they administer nothing until an operator adds them to the "
                    "'%s' group of their organization", user_id, ORG_ADMIN_ROLE, reason, ADMINS_GROUP)
        with kb.db.session() as session:
            audit.record(session, "org_admin.unassigned", f"user:{user_id}", cause,
                         {"reason": reason, "organizations": [o["id"] for o in orgs],
                          "fix": f"add them to the '{ADMINS_GROUP}' group of the organization they administer"})
        return []
    for org_id in chosen:
        make_admin(kb, org_id, user_id, cause)
    return chosen


@tasks.job(MIGRATION_JOB)
def run_migration(kb, job) -> str:
    """Queued once per database when a worker starts (worker.py)."""
    return "migrated: {holders} holders of org_admin, {adopted} given their organization".format(**migrate(kb))


def migrate(kb, cause: str = "admin rights per organization (migration)") -> dict:
    """Every holder of org_admin from before gets the organization they administer (`adopt`); idempotent.

    Runs once per database as a job the worker queues when it starts. Returns counts.
    """
    holders = kb.keycloak.realm_role_user_ids(ORG_ADMIN_ROLE)
    adopted = sum(bool(adopt(kb, user_id, cause)) for user_id in sorted(holders))
    with kb.db.session() as session:
        audit.record(session, "org_admin.migrated", "realm:org-admins", cause, {"holders": len(holders), "adopted": adopted})
    return {"holders": len(holders), "adopted": adopted}
