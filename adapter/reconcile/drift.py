"""Where Keycloak and a CRM export disagree, and which CRM record fixes it.

Every difference is a `Drift` of one kind (`KINDS`). Most are fixed by feeding the
record's state to its handler again (`account.upserted` or `contact.upserted`, see
`converge.py`); a few only a person can fix (who to invite, which stray identity to
delete), and those carry a `fix` saying what to do. Roles are compared on the business
roles only (adapter/roles.py); nobody Keybridge does not manage is a drift.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import select

from ..events import AccountUpsertedSchema
from ..models import Invitation
from .export import ACCOUNT, CONTACT, Export
from .realm import RealmFacts, RealmReader

CONTACT_ATTRIBUTE = "crm_contact_id"
LEFT_COMPANY = "left_company"

KINDS: dict[str, str] = {
    "missing_organization": "accounts in the CRM without an organization",
    "account_differs": "organizations that differ from their account (name, contract, domains)",
    "access_contradicts_contract": "access that contradicts the contract",
    "left_can_login": "people who left but can log in",
    "left_pending_invitation": "pending invitations of people who left",
    "roles_differ": "business roles that differ",
    "membership_differs": "organization memberships that differ",
    "profile_differs": "names, email or phone that differ",
    "missing_identity": "contacts in the CRM without an identity (not invited)",
    "unknown_identity": "identities no CRM contact in the export knows",
    "unknown_organization": "organizations no CRM account in the export knows",
}
ITEMS_KEPT_PER_KIND = 1000


@dataclass(slots=True)
class Drift:
    kind: str
    record: str  # account:<id>, contact:<id> or user:<id>
    detail: str
    user_id: str | None = None
    fix: str | None = None  # what a person must do; None when the reconcile run converges it

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("kind", "record", "user_id", "detail", "fix") if getattr(self, k) is not None}


@dataclass
class DriftReport:
    counts: Counter = field(default_factory=Counter)
    items: dict[str, list[Drift]] = field(default_factory=dict)  # the first ITEMS_KEPT_PER_KIND of each kind
    accounts_to_converge: set[str] = field(default_factory=set)
    contacts_to_converge: set[str] = field(default_factory=set)
    stats: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def add(self, drift: Drift, converge: tuple[str, str] | None = None) -> None:
        self.counts[drift.kind] += 1
        kept = self.items.setdefault(drift.kind, [])
        if len(kept) < ITEMS_KEPT_PER_KIND:
            kept.append(drift)
        if converge is not None:
            kind, crm_id = converge
            (self.accounts_to_converge if kind == ACCOUNT else self.contacts_to_converge).add(crm_id)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self, limit: int = ITEMS_KEPT_PER_KIND) -> dict:
        return {
            "counts": {kind: self.counts.get(kind, 0) for kind in KINDS},
            "total": self.total,
            "to_converge": {"accounts": len(self.accounts_to_converge), "contacts": len(self.contacts_to_converge)},
            "stats": dict(self.stats),
            "notes": list(self.notes),
            "items": {kind: [d.as_dict() for d in self.items.get(kind, [])[:limit]] for kind in KINDS if self.items.get(kind)},
        }


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _organization_differences(data: dict, org: dict) -> list[str]:
    """What `account.upserted` would change on the organization (the handler's own desired state)."""
    from ..handlers.accounts import desired_organization

    want = desired_organization(AccountUpsertedSchema().load(data))
    have_attributes = org.get("attributes") or {}
    differences = [f"{name} {have_attributes.get(name, [])} -> {value}" for name, value in want["attributes"].items()
                   if have_attributes.get(name, []) != value]
    if org.get("name") != want["name"]:
        differences.append(f"name {org.get('name')!r} -> {want['name']!r}")
    have_domains = sorted(d["name"] for d in org.get("domains") or [])
    want_domains = sorted(d["name"] for d in want["domains"])
    if have_domains != want_domains:
        differences.append(f"domains {have_domains} -> {want_domains}")
    return differences


class DriftFinder:
    """Compares an export with the realm: `run()` reads Keycloak (in pages) and returns the report."""

    def __init__(self, kb, export: Export, reader: RealmReader, now: datetime | None = None):
        self.kb = kb
        self.export = export
        self.reader = reader
        self.now = now or _now()
        self.report = DriftReport()
        self.business_roles = set(kb.roles.business_roles)

    def run(self) -> DriftReport:
        self.facts = self.reader.facts()
        for account_id in self.facts.duplicate_organizations:
            self.report.notes.append(f"several organizations carry crm_account_id={account_id}; merge them in Keycloak")
        self.report.stats["organizations"] = len(self.facts.organizations)
        if self.export.has_accounts:
            self._compare_accounts()
        else:
            self.report.notes.append("the export holds no accounts: organizations were not compared")
        for user in self.reader.users(wants_roles=self._wants_roles):
            self.report.stats["users_read"] += 1
            self._compare_user(user)
        if self.reader.uses_export:
            self.report.stats["read_through_export"] = 1  # the extension's bulk export, not the admin API
        if self.export.has_contacts:
            self._contacts_without_identity()
        else:
            self.report.notes.append("the export holds no contacts: identities were not compared")
        return self.report

    # -- accounts -------------------------------------------------------------------------

    def _compare_accounts(self) -> None:
        for account_id, record in self.export.accounts.items():
            org = self.facts.organizations.get(account_id)
            if org is None:
                self.report.add(Drift("missing_organization", f"account:{account_id}", "no organization carries this crm_account_id"),
                                (ACCOUNT, account_id))
                continue
            differences = _organization_differences(record.data, org.representation)
            if differences:
                self.report.add(Drift("account_differs", f"account:{account_id}", "; ".join(differences)), (ACCOUNT, account_id))
        for account_id in self.facts.organizations:
            if account_id not in self.export.accounts:
                self.report.add(Drift("unknown_organization", f"account:{account_id}", "the export has no such account",
                                      fix="export this account too, or delete the organization in Keycloak if the CRM deleted it"))

    # -- users ----------------------------------------------------------------------------

    def _compare_user(self, user: dict) -> None:
        user_id = user["id"]
        enabled = user.get("enabled", True)
        accounts = user.get("crm_accounts", [])
        contact_id = ((user.get("attributes") or {}).get(CONTACT_ATTRIBUTE) or [None])[0]
        contact = self.export.contacts.get(contact_id) if contact_id else None
        revocations = self.facts.revocations.get(user_id, {})
        self._compare_access(user_id, contact_id, enabled, accounts, revocations, contact)
        if contact_id is None:
            return
        self.report.stats["identities_with_contact_id"] += 1
        if contact is None:
            if self.export.has_contacts:
                self.report.add(Drift("unknown_identity", f"user:{user_id}", f"crm_contact_id {contact_id} is not in the export",
                                      user_id, fix="export this contact too, or remove the identity (or its crm_contact_id) in Keycloak"))
            return
        contact.seen = True
        record = f"contact:{contact.contact_id}"
        converge = (CONTACT, contact.contact_id)
        if contact.status == "left":
            if enabled:
                self.report.add(Drift("left_can_login", record, "left the company in the CRM but is enabled", user_id), converge)
            crm_accounts = [a for a in accounts if a in self.facts.organizations]
            if crm_accounts:
                self.report.add(Drift("membership_differs", record, f"left the company but is a member of {', '.join(crm_accounts)}",
                                      user_id), converge)
            return
        self._compare_membership(user_id, contact, accounts, record, converge)
        if contact.roles is not None:
            want = self.kb.roles.business_roles_for(list(contact.roles))
            have = set(user.get("realm_roles") or ()) & self.business_roles
            if want != have:
                self.report.add(Drift("roles_differ", record, f"business roles {sorted(have)} -> {sorted(want)}", user_id), converge)
        differences = []
        if (user.get("email") or "").lower() != contact.email:
            differences.append(f"email {user.get('email')!r} -> {contact.email!r}")
        for name, value in (("firstName", contact.first_name), ("lastName", contact.last_name)):
            if value is not None and user.get(name) != value:
                differences.append(f"{name} {user.get(name)!r} -> {value!r}")
        if contact.phone is not None and (user.get("attributes") or {}).get("phone") != [contact.phone]:
            differences.append(f"phone -> {contact.phone!r}")
        if differences:
            self.report.add(Drift("profile_differs", record, "; ".join(differences), user_id), converge)

    def _wants_roles(self, user: dict) -> bool:
        """Roles are compared for active contacts whose CRM roles the export gives."""
        contact_id = ((user.get("attributes") or {}).get(CONTACT_ATTRIBUTE) or [None])[0]
        contact = self.export.contacts.get(contact_id) if contact_id else None
        return contact is not None and contact.status == "active" and contact.roles is not None

    def _compare_access(self, user_id: str, contact_id: str | None, enabled: bool, accounts: list[str],
                        revocations: dict, contact) -> None:
        who = f"contact:{contact_id}" if contact_id else f"user:{user_id}"
        # A contract's access is the organization's attributes (Keycloak's extension reads them), compared as
        # `account_differs`; members keep their `enabled` flag whatever the contract says.
        if enabled:
            return
        if LEFT_COMPANY in revocations and contact is not None and contact.status == "active":
            self.report.add(Drift("access_contradicts_contract", who, "disabled by Keybridge (left_company) while the CRM says "
                                  "the contact is active", user_id), (CONTACT, contact.contact_id))

    def _compare_membership(self, user_id: str, contact, accounts: list[str], record: str, converge) -> None:
        if not contact.account_id:
            return
        crm_accounts = [a for a in accounts if a in self.facts.organizations]
        others = [a for a in crm_accounts if a != contact.account_id]
        problems = []
        if contact.account_id not in crm_accounts:
            problems.append(f"not a member of {contact.account_id}")
        if others:
            problems.append(f"also a member of {', '.join(others)}")
        if not problems:
            return
        if contact.account_id not in self.facts.organizations and contact.account_id not in self.export.accounts:
            self.report.add(Drift("membership_differs", record, "; ".join(problems), user_id,
                                  fix=f"account {contact.account_id} has no organization and is not in the export: export it too"))
            return
        self.report.add(Drift("membership_differs", record, "; ".join(problems), user_id), converge)

    # -- contacts no identity answered for ------------------------------------------------

    def _contacts_without_identity(self) -> None:
        for contact in self.export.contacts.values():
            invitations = self.facts.pending.get(contact.email, [])
            record = f"contact:{contact.contact_id}"
            if contact.status == "left":
                if invitations:
                    self._left_pending(contact, invitations, record)
                continue
            if contact.seen:
                continue
            if invitations:
                self.report.stats["invited_not_registered"] += 1
                continue
            self.report.add(Drift("missing_identity", record, f"no identity with crm_contact_id {contact.contact_id}",
                                  fix="invite them: contact.invite_requested, or `keybridge invite --csv`"))

    def _left_pending(self, contact, invitations, record: str) -> None:
        """Pending invitations of someone who left. Those Keybridge sent, `contact.upserted` (left)
        revokes; one an administrator sent in Keycloak only a person can withdraw."""
        with self.kb.db.session() as session:
            ours = session.scalar(select(Invitation.id).where(
                Invitation.kind == "contact", Invitation.crm_id == contact.contact_id,
                Invitation.status.in_(("new", "sending", "sent"))))
        for invitation in invitations:
            detail = f"invitation {invitation.invitation_id} to {invitation.account_id} is still pending"
            if ours is not None:
                self.report.add(Drift("left_pending_invitation", record, detail), (CONTACT, contact.contact_id))
            else:
                self.report.add(Drift("left_pending_invitation", record, detail + " (not sent by Keybridge)",
                                      fix=f"delete it in Keycloak: Organizations > {invitation.account_id} > Invitations"))
