"""The audit trail: what Keybridge changed, why (which webhook, event or schedule) and when."""
from __future__ import annotations

from ..models import AuditEntry


def record(session, action: str, subject: str, cause: str, details: dict | None = None) -> None:
    session.add(AuditEntry(action=action, subject=subject, cause=cause, details=details or {}))
