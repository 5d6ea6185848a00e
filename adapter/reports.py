"""What an operator asks: an account's contract and access, and the audit trail."""
from __future__ import annotations

from sqlalchemy import select

from .handlers.access import contract_is_active
from .models import AccessRevocation, Account, AuditEntry
from .outbox import iso


def account_status(kb, account_id: str) -> dict | None:
    """Contract state and member counts of one account (None if Keybridge never saw it)."""
    with kb.db.session() as session:
        account = session.get(Account, account_id)
        if account is None:
            return None
        revoked = {r.user_id: r.reason for r in session.scalars(select(AccessRevocation).where(AccessRevocation.account_id == account_id))}
        row = {"account_id": account.account_id, "name": account.name, "organization_id": account.organization_id,
               "contract_status": account.contract_status, "contract_ends_at": iso(account.contract_ends_at),
               "contract_active": contract_is_active(account.contract_status, account.contract_ends_at),
               "access": account.access, "access_enforced_at": iso(account.access_enforced_at)}
    members = kb.keycloak.organization_members(row["organization_id"]) if row["organization_id"] else []
    row["members"] = len(members)
    row["members_with_access"] = sum(1 for m in members if m.get("enabled", True))
    row["members_cut_off_by_contract"] = sum(1 for m in members if revoked.get(m["id"]) == "contract_inactive")
    return row


def audit_trail(kb, subject: str | None = None, limit: int = 100) -> list[dict]:
    """Newest first; `subject` is exact ('account:A-1', 'user:<id>'), or a prefix when it ends with ':' ('account:')."""
    with kb.db.session() as session:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if subject:
            query = query.where(AuditEntry.subject.startswith(subject) if subject.endswith(":") else AuditEntry.subject == subject)
        return [{"at": iso(e.at), "action": e.action, "subject": e.subject, "cause": e.cause, "details": e.details}
                for e in session.scalars(query)]
