"""account.upserted: the CRM account's Organization exists and matches the CRM.

The account's newest state is stored first (records.py: an older event changes nothing);
`converge_account` then makes Keycloak match the stored state, and runs again from the sweep.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from sqlalchemy import select

from .. import delegation, tasks
from ..events import AccountUpsertedSchema
from ..models import Account, AccountDomain
from . import audit, contracts, invitations, landing, records

MANAGED_ATTRIBUTES = ("crm_account_id", "contract_status", "contract_ends_at")


def organization_alias(account_id: str) -> str:
    """A stable, URL-safe alias derived from the CRM id (names may change, ids do not)."""
    return "crm-" + re.sub(r"[^a-z0-9-]+", "-", account_id.lower()).strip("-")


def contract_status(contract: dict) -> str:
    """The CRM's status, except that an 'active' contract whose end date passed is 'expired'."""
    status = contract.get("status", "none")
    ends_at = contract.get("ends_at")
    if status == "active" and ends_at is not None and ends_at <= datetime.now(timezone.utc):
        return "expired"
    return status


def desired_organization(data: dict) -> dict:
    contract = data.get("contract") or {}
    ends_at = contract.get("ends_at")
    attributes = {
        "crm_account_id": [data["account_id"]],
        "contract_status": [contract_status(contract)],
        "contract_ends_at": [ends_at.isoformat().replace("+00:00", "Z")] if ends_at else [],
    }
    return {
        "name": data["name"],
        "alias": organization_alias(data["account_id"]),
        "enabled": True,
        "attributes": attributes,
        "domains": [{"name": d.lower(), "verified": False} for d in data.get("domains") or []],
    }


def ensure_organization(kb, data: dict, cause: str) -> dict:
    """Create or update the account's organization; returns it. Calls nothing when it already matches."""
    want = desired_organization(data)
    org = kb.keycloak.find_organization(data["account_id"])
    if org is None:
        org_id = kb.keycloak.create_organization(want)
        with kb.db.session() as session:
            audit.record(session, "organization.created", f"account:{data['account_id']}", cause, {"organization_id": org_id})
        return kb.keycloak.get_organization(org_id)
    attributes = dict(org.get("attributes") or {})
    changed_attrs = {k: v for k, v in want["attributes"].items() if attributes.get(k, []) != v}
    have_domains = sorted(d["name"] for d in org.get("domains") or [])
    want_domains = sorted(d["name"] for d in want["domains"])
    if not changed_attrs and org.get("name") == want["name"] and have_domains == want_domains:
        return org
    attributes.update(want["attributes"])
    updated = {**org, "name": want["name"], "attributes": {k: v for k, v in attributes.items() if v},
               "domains": [{"name": d, "verified": False} for d in want_domains]}
    kb.keycloak.update_organization(org["id"], updated)
    with kb.db.session() as session:
        audit.record(session, "organization.updated", f"account:{data['account_id']}", cause,
                     {"attributes": changed_attrs, "domains": want_domains})
    return kb.keycloak.get_organization(org["id"])


def ensure_account_row(kb, data: dict, org: dict) -> None:
    """Keybridge's own record of the account and its contract (the schedule reads it)."""
    contract = data.get("contract") or {}
    ends_at = contract.get("ends_at")
    with kb.db.session() as session:
        account = session.get(Account, data["account_id"]) or Account(account_id=data["account_id"])
        account.organization_id, account.name = org["id"], data["name"]
        account.contract_status = contract_status(contract)
        account.contract_ends_at = ends_at.astimezone(timezone.utc).replace(tzinfo=None) if ends_at else None
        session.merge(account)
        wanted = {d.lower() for d in data.get("domains") or []}
        for row in session.scalars(select(AccountDomain).where(AccountDomain.account_id == data["account_id"])):
            if row.domain not in wanted:
                session.delete(row)
        for domain in wanted:
            session.merge(AccountDomain(domain=domain, account_id=data["account_id"]))


@tasks.crm_event("account.upserted", schema=AccountUpsertedSchema, ordering_key=lambda d: f"account:{d['account_id']}")
def handle_account_upserted(kb, data: dict, cause: str, crm_time=None) -> str:
    """The account's newest state is stored; the organization matches it (its contract attributes
    decide the members' access), the admin is invited. An older state than the stored one changes nothing."""
    if not records.take(kb, "account", data["account_id"], AccountUpsertedSchema().dump(data), crm_time, cause):
        return "stale"
    state = converge_account(kb, data["account_id"], cause, data)
    admin = data.get("admin_contact")
    if admin and state == "active":
        invitations.invite_contact(kb, {
            "contact_id": admin["contact_id"], "email": admin["email"], "account_id": data["account_id"],
            "first_name": admin.get("first_name"), "last_name": admin.get("last_name"),
            "roles": [], "org_admin": True, "resend": False,
        }, cause)  # the account's time is not the contact's: no contact state from it (a leaver is refused)
    return f"contract {state}"


def converge_account(kb, account_id: str, cause: str, data: dict | None = None) -> str:
    """Make Keycloak match the account's desired state (`data`, else the stored one): the organization,
    its attributes (the contract attributes are what Keycloak's extension decides access from: writing
    them is the cut-off or the renewal), its admins' permissions; what follows for the members runs in
    the background (contracts.follow_contract). Idempotent; returns the access state ('active',
    'inactive', or 'unknown' when the CRM never sent this account)."""
    if data is None:
        record = records.desired(kb, "account", account_id)
        if record is None:
            return "unknown"
        data = AccountUpsertedSchema().load(record.state)
    org = ensure_organization(kb, data, cause)
    org = landing.ensure_organization_landing(kb, org, cause)  # its invitations land on the welcome page
    ensure_account_row(kb, data, org)
    delegation.ensure_organization_delegation(kb, org["id"], cause)
    return contracts.follow_contract(kb, account_id, cause)

