"""What an operator asks: an account's contract and access, and the audit trail."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from .handlers.access import CONTRACT_INACTIVE, access_decision, contract_is_active, organization_contract_active, parallel
from .models import Account, AuditEntry
from .outbox import iso


def account_status(kb, account_id: str) -> dict | None:
    """Contract state and member counts of one account (None if Keybridge never saw it).

    The counts are what Keycloak's extension decides from the attributes (access.access_decision):
    `members_with_access` can log in (enabled, not left, and this contract or another of theirs is
    active); `members_cut_off_by_contract` are enabled people refused because no contract of theirs is
    active. While this organization's contract is active nobody's other organizations matter; while it
    is not, each enabled member's organizations are read (in parallel)."""
    with kb.db.session() as session:
        account = session.get(Account, account_id)
        if account is None:
            return None
        row = {"account_id": account.account_id, "name": account.name, "organization_id": account.organization_id,
               "contract_status": account.contract_status, "contract_ends_at": iso(account.contract_ends_at),
               "contract_active": contract_is_active(account.contract_status, account.contract_ends_at),
               "access": account.access, "access_enforced_at": iso(account.access_enforced_at)}
    members = kb.keycloak.organization_members(row["organization_id"]) if row["organization_id"] else []
    now = datetime.now(timezone.utc)
    enabled = [m for m in members if m.get("enabled", True)]
    if enabled and organization_contract_active(kb.keycloak.get_organization(row["organization_id"]), now):
        decisions = [access_decision(m, [], now) for m in enabled]  # this contract suffices: only `left` refuses
    else:
        decisions, errors = parallel(kb, lambda m: access_decision(m, kb.keycloak.organizations_of_member(m["id"]), now), enabled)
        if errors:
            raise errors[0]
    row["members"] = len(members)
    row["members_with_access"] = sum(1 for d in decisions if d is None)
    row["members_cut_off_by_contract"] = sum(1 for d in decisions if d == CONTRACT_INACTIVE)
    return row


def audit_trail(kb, subject: str | None = None, limit: int = 100) -> list[dict]:
    """Newest first; `subject` is exact ('account:A-1', 'user:<id>'), or a prefix when it ends with ':' ('account:')."""
    with kb.db.session() as session:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if subject:
            query = query.where(AuditEntry.subject.startswith(subject) if subject.endswith(":") else AuditEntry.subject == subject)
        return [{"at": iso(e.at), "action": e.action, "subject": e.subject, "cause": e.cause, "details": e.details}
                for e in session.scalars(query)]
