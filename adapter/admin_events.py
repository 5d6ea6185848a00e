"""Reading Keycloak's admin event log with a durable cursor: what admins did, told to the CRM.

Read with keycloak_events.read_log, like the user event log, under its own cursor. Only role mappings, organization
memberships, organization group memberships and updates of users that set `enabled` are read. Each becomes a job in the transaction that moves the cursor; one
user's (or organization's) admin events run in the log's order.

What a job does (`handle_admin_event`):
- someone other than the adapter gave or took business roles of a member of a CRM
  organization (an org admin in the console, typically): membership.changed
  `roles_changed`, with the roles the person holds now and the actor;
- someone other than the adapter added a person to, or removed one from, a CRM
  organization: membership.changed `added` / `removed`; a removed person in no CRM
  organization any more loses their business roles and org_admin; an added person's
  access converges to the CRM's state (a contact who left is taken out again, a member
  of an organization without an active contract is cut off);
- any membership change or org_admin change, the adapter's own included (CRM webhooks
  move people too): the organizations' delegated admin permissions follow (delegation.py);
- someone put into or taken out of an organization's `admins` group: that organization's
  permissions follow, and org_admin follows whether they administer any (org_admins.py);
- org_admin given by someone to a person who administers no organization: they become the
  admin of the one organization they belong to (`org_admins.adopt`); org_admin taken by
  someone: they administer no organization any more;
- someone other than the adapter enabled or disabled a user (the console's switch, the
  admin API): an administrator's decision, kept as part of the desired state
  (`AdminAccessDecision`: a renewal never undoes a disable), told to the CRM as
  identity.access_changed (reason `admin`); the person's access converges again. The
  adapter's own updates are skipped as they are read.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

from sqlalchemy import delete

from . import delegation, keycloak_events, org_admins, outbox, tasks
from .db import utcnow
from .errors import PermanentError
from .events import IDENTITY_ACCESS_CHANGED
from .handlers import audit, convergence
from .models import AccessRevocation, AdminAccessDecision

log = logging.getLogger(__name__)

CURSOR = "keycloak_admin_events"
JOB_KIND = "keycloak_admin_event"
PAGE = keycloak_events.PAGE
RESOURCE_TYPES = ["REALM_ROLE_MAPPING", "ORGANIZATION_MEMBERSHIP", "ORGANIZATION_GROUP_MEMBERSHIP", "USER"]

_ROLE_MAPPING_PATH = re.compile(r"^users/([^/]+)/role-mappings/realm$")
_MEMBERS_PATH = re.compile(r"^organizations/([^/]+)/members(?:/([^/]+))?$")
_GROUP_MEMBERS_PATH = re.compile(r"^organizations/([^/]+)/groups/([^/]+)/members/([^/]+)$")
_USER_PATH = re.compile(r"^users/([^/]+)$")


def poll(kb) -> int:
    """Take every new admin event from Keycloak's log; returns how many became jobs."""
    return keycloak_events.read_log(
        kb, CURSOR, lambda date_from, first, size: kb.keycloak.admin_events(date_from, first, size, RESOURCE_TYPES),
        lambda session, event: _take_admin_event(session, event, kb.keycloak.service_account_user_id))


def _take_admin_event(session, event: dict, adapter_id=lambda: None) -> int:
    if not relevant(event):
        return 0
    if event.get("resourceType") == "USER" and (event.get("authDetails") or {}).get("userId") == adapter_id():
        return 0  # the adapter's own enable/disable (every cut-off and restore): nothing to learn
    # (kind, ref) is unique: even an id forgotten from seen_keycloak_events makes no second job
    return int(tasks.enqueue(session, JOB_KIND, event["id"], payload=event))


def relevant(event: dict) -> bool:
    path = event.get("resourcePath") or ""
    if event.get("operationType") not in ("CREATE", "DELETE", "UPDATE"):
        return False
    if event.get("operationType") == "UPDATE" and event.get("resourceType") != "USER":
        return False
    if event.get("resourceType") == "REALM_ROLE_MAPPING":
        return bool(_ROLE_MAPPING_PATH.match(path))
    if event.get("resourceType") == "ORGANIZATION_GROUP_MEMBERSHIP":
        return bool(_GROUP_MEMBERS_PATH.match(path))
    if event.get("resourceType") == "USER":
        return event.get("operationType") == "UPDATE" and bool(_USER_PATH.match(path)) and isinstance(
            _representation(event).get("enabled"), bool)
    return event.get("resourceType") == "ORGANIZATION_MEMBERSHIP" and bool(_MEMBERS_PATH.match(path))


def _ordering_key(event: dict) -> str | None:
    path = event.get("resourcePath") or ""
    if m := _ROLE_MAPPING_PATH.match(path):
        return f"user:{m.group(1)}"
    if m := _MEMBERS_PATH.match(path):
        return f"organization:{m.group(1)}"
    if m := _GROUP_MEMBERS_PATH.match(path):
        return f"organization:{m.group(1)}"
    if m := _USER_PATH.match(path):
        return f"user:{m.group(1)}"
    return None


def _representation(event: dict) -> dict:
    try:
        rep = json.loads(event.get("representation") or "{}")
    except ValueError:
        return {}
    return rep if isinstance(rep, dict) else {}


def _role_names(event: dict) -> set[str]:
    try:
        return {r.get("name") for r in json.loads(event.get("representation") or "[]") if isinstance(r, dict)}
    except ValueError:
        return set()


@tasks.job(JOB_KIND, ordering_key=_ordering_key)
def run_admin_event(kb, job) -> str:
    """One event of Keycloak's admin event log (its payload); one user's or organization's run in log order."""
    return handle_admin_event(kb, job.payload)


def handle_admin_event(kb, event: dict) -> str:
    """Run one admin event's job (see the module docstring); returns what happened."""
    auth = event.get("authDetails") or {}
    by_adapter = auth.get("userId") == kb.keycloak.service_account_user_id()
    cause = f"keycloak admin event {event.get('id')} ({event.get('resourceType')} {event.get('operationType')})"
    path = event.get("resourcePath") or ""
    if m := _ROLE_MAPPING_PATH.match(path):
        return _role_mapping_changed(kb, event, m.group(1), by_adapter, cause)
    if m := _MEMBERS_PATH.match(path):
        return _membership_changed(kb, event, m.group(1), m.group(2), by_adapter, cause)
    if m := _GROUP_MEMBERS_PATH.match(path):
        return _group_membership_changed(kb, m.group(1), m.group(3), cause)
    if m := _USER_PATH.match(path):
        return _access_decided(kb, event, m.group(1), by_adapter, cause)
    return "ignored"


def _group_membership_changed(kb, org_id: str, user_id: str, cause: str) -> str:
    """Someone joined or left one of an organization's groups (its `admins` group is the one that matters)."""
    try:
        kb.keycloak.get_organization(org_id)
    except PermanentError:
        return "organization_gone"
    if kb.keycloak.get_user(user_id) is not None:
        org_admins.ensure_role_follows(kb, user_id)
    delegation.ensure_organization_delegation(kb, org_id, cause)
    return "delegation_updated"


def _access_decided(kb, event: dict, user_id: str, by_adapter: bool, cause: str) -> str:
    """An administrator enabled or disabled the user: their decision is kept, the CRM told, access converges."""
    enabled = _representation(event).get("enabled")
    if by_adapter or not isinstance(enabled, bool):
        return "ignored"
    user = kb.keycloak.get_user(user_id)
    if user is None:
        return "user_gone"
    attributes = user.get("attributes") or {}
    if not (attributes.get(delegation.CONTACT_ATTRIBUTE) or attributes.get("crm_lead_id")) and not any(
            delegation.account_id_of(org) for org in kb.keycloak.organizations_of_member(user_id)):
        return "not_managed"  # someone Keybridge does not manage: theirs entirely
    actor = _actor(kb, event.get("authDetails") or {})
    when = datetime.fromtimestamp(int(event.get("time", 0)) / 1000, tz=timezone.utc).replace(tzinfo=None) if event.get("time") else utcnow()
    with kb.db.session() as session:
        decision = session.get(AdminAccessDecision, user_id)
        if decision is not None and decision.decided_at > when:
            return "stale"
        if decision is None:
            decision = AdminAccessDecision(user_id=user_id)
            session.add(decision)
        decision.enabled, decision.actor, decision.decided_at, decision.event_id = enabled, actor.label, when, event["id"]
        if enabled:  # the administrator gave access back: it is theirs now, not Keybridge's to restore later
            session.execute(delete(AccessRevocation).where(AccessRevocation.user_id == user_id))
        contact_id = ((user.get("attributes") or {}).get(delegation.CONTACT_ATTRIBUTE) or [None])[0]
        outbox.record(session, IDENTITY_ACCESS_CHANGED, {"user_id": user_id, "contact_id": contact_id, "enabled": enabled,
                                                         "reason": "admin"}, f"{IDENTITY_ACCESS_CHANGED}:admin-event:{event['id']}")
        audit.record(session, "access.admin_enabled" if enabled else "access.admin_disabled", f"user:{user_id}", cause,
                     {"by": actor.label, "by_user_id": actor.user_id})
    convergence.converge_person(kb, user_id, cause)
    return "admin_enabled" if enabled else "admin_disabled"


def _actor(kb, auth: dict) -> delegation.Actor:
    user_id = auth.get("userId")
    user = kb.keycloak.get_user(user_id) if user_id else None  # None too for an admin of another realm (master)
    return delegation.actor_of_user(user, user_id)


def _role_mapping_changed(kb, event: dict, user_id: str, by_adapter: bool, cause: str) -> str:
    names = _role_names(event)
    outcome = "ignored"
    if org_admins.ORG_ADMIN_ROLE in names:
        if kb.keycloak.get_user(user_id) is not None:
            if event.get("operationType") == "CREATE":
                org_admins.adopt(kb, user_id, cause)  # which organization: the one they belong to
            elif not by_adapter:
                org_admins.revoke_everywhere(kb, user_id, cause)  # taken by an operator: admin of nothing
        delegation.ensure_user_delegations(kb, user_id, cause)
        outcome = "delegation_updated"
    if by_adapter or not names & set(kb.roles.business_roles):
        return outcome
    user = kb.keycloak.get_user(user_id)
    if user is None:
        return "user_gone"
    actor = _actor(kb, event.get("authDetails") or {})
    told = 0
    for org in kb.keycloak.organizations_of_member(user_id):
        account_id = delegation.account_id_of(org)
        if account_id:
            told += delegation.record_membership_changed(kb, account_id, user, "roles_changed", actor,
                                                         f"admin-event:{event['id']}:{org['id']}")
    return "roles_changed" if told else outcome


def _membership_changed(kb, event: dict, org_id: str, member_id: str | None, by_adapter: bool, cause: str) -> str:
    details = event.get("details") or {}
    removed = event.get("operationType") == "DELETE"
    user = kb.keycloak.get_user(member_id) if member_id else None
    if user is None and not member_id:
        user = kb.keycloak.find_user_by_email(details.get("email") or details.get("username") or "")
    gone = removed and member_id is not None and user is None  # a managed member: Keycloak deleted the identity too
    if gone:
        user = {"id": member_id, "email": details.get("email"), "attributes": {}}
    try:
        org = kb.keycloak.get_organization(org_id)
    except PermanentError:
        return "organization_gone"
    account_id = delegation.account_id_of(org)
    by_someone = not by_adapter and user is not None and account_id is not None
    if by_someone and removed and not gone:
        delegation.take_business_access(kb, user["id"])  # before the permissions follow: org_admin may go too
    delegation.ensure_organization_delegation(kb, org_id, cause)
    if not by_someone:
        return "delegation_updated"
    change = "removed" if removed else "added"
    delegation.record_membership_changed(kb, account_id, user, change, _actor(kb, event.get("authDetails") or {}),
                                         f"admin-event:{event['id']}", roles=[] if gone else None,
                                         identity_deleted=gone if removed else None)
    if not removed:  # joining is a fact about the person: their access follows the CRM's state (a leaver stays out)
        convergence.converge_person(kb, user["id"], cause)
    return change
