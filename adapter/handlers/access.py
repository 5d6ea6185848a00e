"""Who may log in: the rule Keycloak's extension applies, and the per-person cut-offs.

**Contracts are not per person.** Keycloak's extension (keycloak-extension/, AccessRule.java)
refuses a login and a token refresh when none of the person's CRM organizations has an
active contract (`contract_status` active and `contract_ends_at` not passed), or when the
person's `crm_status` is `left`. So a contract cut-off is the organization's attribute
write (accounts.ensure_organization) and a renewal the write back; nobody's `enabled`
flag is touched for a contract, and an administrator's disable is simply never undone.
`access_decision` is the same rule in Python, for counts and for the CRM's events;
handlers/contracts.py does what follows a contract change in the background.

**Departures and rejections are per person**: `revoke_users` disables the identity and
ends its sessions (reason `left_company` or `rejected`), `restore_revoked` gives access
back when the reason ends. Keybridge records why it disabled someone (`AccessRevocation`),
so it only gives back access it took, never access an administrator took.

An administrator's explicit enable or disable (read from Keycloak's admin event log,
`AdminAccessDecision`) is part of the state: Keybridge never gives back access an
administrator took (the audit says so: `access.kept_disabled`), and it does not take
access from someone an administrator enabled after the CRM state that would cut them
off was taken (`access.kept_enabled`); a newer CRM change applies to them again.
Per-user Keycloak calls run in parallel.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from sqlalchemy import delete, select

from .. import outbox
from ..db import utcnow
from ..events import IDENTITY_ACCESS_CHANGED
from ..errors import PermanentError, RetryableError
from ..models import AccessRevocation, AdminAccessDecision
from . import audit

log = logging.getLogger(__name__)

CONTRACT_INACTIVE = "contract_inactive"
CONTRACT_ACTIVE = "contract_active"
LEFT_COMPANY = "left_company"
CRM_ACCOUNT_ATTRIBUTE = "crm_account_id"
CRM_STATUS_ATTRIBUTE = "crm_status"  # active | left, on the person


def contract_is_active(status: str | None, ends_at: datetime | None, now: datetime | None = None) -> bool:
    """Active status and an end date (naive UTC) that has not passed."""
    now = now or utcnow()
    return status == "active" and (ends_at is None or ends_at > now)


def _first(attributes: dict | None, name: str) -> str | None:
    values = (attributes or {}).get(name) or []
    value = values[0] if values else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def is_crm_organization(org: dict) -> bool:
    return _first(org.get("attributes"), CRM_ACCOUNT_ATTRIBUTE) is not None


def organization_contract_active(org: dict, now: datetime | None = None) -> bool:
    """What the extension reads on the organization: status `active` and no `contract_ends_at` in the past
    (an unreadable one counts as past). `now` aware or naive UTC."""
    attributes = org.get("attributes") or {}
    if _first(attributes, "contract_status") != "active":
        return False
    ends = _first(attributes, "contract_ends_at")
    if ends is None:
        return True
    try:
        ends_at = datetime.fromisoformat(ends.replace("Z", "+00:00"))
    except ValueError:
        return False
    if ends_at.tzinfo is None:
        return False  # the extension reads only instants with a zone
    now = now or datetime.now(timezone.utc)
    return ends_at > (now if now.tzinfo else now.replace(tzinfo=timezone.utc))


def access_decision(user: dict, organizations: list[dict], now: datetime | None = None) -> str | None:
    """The extension's rule (AccessRule.decide): None when the person may log in as far as the CRM is
    concerned, else the reason: `left_company` (their crm_status is left) or `contract_inactive` (they
    belong to CRM organizations and none has an active contract). A person in no CRM organization is
    not refused by it. The `enabled` flag is not part of the rule (Keycloak checks it itself)."""
    status = _first(user.get("attributes"), CRM_STATUS_ATTRIBUTE)
    if status is not None and status.lower() == "left":
        return LEFT_COMPANY
    customers = [o for o in organizations if is_crm_organization(o)]
    if not customers or any(organization_contract_active(o, now) for o in customers):
        return None
    return CONTRACT_INACTIVE


def can_log_in(user: dict, organizations: list[dict], now: datetime | None = None) -> bool:
    """Enabled in Keycloak and not refused by the extension's rule."""
    return bool(user.get("enabled", True)) and access_decision(user, organizations, now) is None


def parallel(kb, fn, items: list) -> tuple[list, list[Exception]]:
    """Run `fn(item)` for every item on the Keycloak pool; returns (results, errors)."""
    if not items:
        return [], []
    results, errors = [], []
    kb.keycloak.warm_up()
    with ThreadPoolExecutor(max_workers=max(1, kb.settings.keycloak_concurrency)) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            try:
                results.append(future.result())
            except Exception as exc:  # noqa: BLE001 — reported after the others finished
                errors.append(exc)
    return results, errors


def raise_first(errors: list[Exception], what: str) -> None:
    if errors:
        retryable = [e for e in errors if isinstance(e, RetryableError)]
        first = (retryable or errors)[0]
        raise RetryableError(f"{len(errors)} {what} failed; done ones are kept, the rest is retried: {first}") from first


def _access_changed(session, user_id: str, contact_id: str | None, enabled: bool, reason: str) -> None:
    # New by construction: written in the same transaction as the revocation row it reports.
    outbox.record_new(session, IDENTITY_ACCESS_CHANGED,
                      {"user_id": user_id, "contact_id": contact_id, "enabled": enabled, "reason": reason})


def _note_revocations(session, users: list[dict], reason: str, account_id: str | None) -> None:
    """Insert or refresh (user, reason) rows with one look-up for the whole list."""
    ids = [u["id"] for u in users]
    existing = {r.user_id: r for r in session.scalars(select(AccessRevocation).where(
        AccessRevocation.reason == reason, AccessRevocation.user_id.in_(ids)))} if ids else {}
    for user in users:
        row = existing.get(user["id"])
        if row is None:
            session.add(AccessRevocation(user_id=user["id"], reason=reason, account_id=account_id,
                                         contact_id=_contact_id(user), revoked_at=utcnow()))
        else:
            row.account_id, row.contact_id, row.revoked_at = account_id, _contact_id(user), utcnow()


def _contact_id(user: dict) -> str | None:
    values = (user.get("attributes") or {}).get("crm_contact_id") or []
    return values[0] if values else None


def admin_decisions(session, user_ids: list[str]) -> dict[str, AdminAccessDecision]:
    """The administrators' latest enable/disable of these users, by user id."""
    if not user_ids:
        return {}
    return {d.user_id: d for d in session.scalars(select(AdminAccessDecision).where(AdminAccessDecision.user_id.in_(user_ids)))}


def revoke_users(kb, users: list[dict], reason: str, account_id: str | None, cause: str, since=None) -> int:
    """Disable these users and end their sessions; returns how many lost access now.

    Users already disabled are left alone (if an administrator did it, they stay theirs).
    `since` (naive UTC): when the state that cuts them off was taken; a user an administrator
    enabled after it keeps access (audited as access.kept_enabled).
    """
    targets = [u for u in users if u.get("enabled", True)]
    if since is not None and targets:
        with kb.db.session() as session:
            decisions = admin_decisions(session, [u["id"] for u in targets])
            kept = [u["id"] for u in targets if (d := decisions.get(u["id"])) is not None and d.enabled and d.decided_at > since]
            if kept:
                audit.record(session, "access.kept_enabled", f"account:{account_id}" if account_id else f"user:{kept[0]}", cause,
                             {"reason": reason, "users": kept,
                              "why": "enabled by an administrator after this state was taken",
                              "by": {u: decisions[u].actor for u in kept}})
        targets = [u for u in targets if u["id"] not in kept]
    disabled_ids = [u["id"] for u in users if not u.get("enabled", True)]
    with kb.db.session() as session:
        # Disabled by Keybridge for another reason: note this one too, so that ending
        # only the other reason (a renewal, say) does not give access back.
        ours = set(session.scalars(select(AccessRevocation.user_id).where(AccessRevocation.user_id.in_(disabled_ids)))) if disabled_ids else set()
        _note_revocations(session, [u for u in users if u["id"] in ours], reason, account_id)

    def cut(user):
        # Sessions first: if disabling then fails, the retry finds the user still enabled
        # and does both again; the other order would leave a disabled user Keybridge
        # does not know it disabled, with live sessions.
        kb.keycloak.logout(user["id"])
        kb.keycloak.set_enabled(user["id"], False)
        return user

    done, errors = parallel(kb, cut, targets)
    with kb.db.session() as session:
        _note_revocations(session, done, reason, account_id)
        for user in done:
            _access_changed(session, user["id"], _contact_id(user), False, reason)
        if done:
            audit.record(session, "access.revoked", f"account:{account_id}" if account_id else f"user:{done[0]['id']}", cause,
                         {"reason": reason, "users": [u["id"] for u in done]})
    raise_first(errors, "access cuts")
    return len(done)


def restore_revoked(kb, reason: str, restored_reason: str, cause: str, account_id: str | None = None,
                    user_ids: list[str] | None = None) -> int:
    """Enable again the users Keybridge disabled for `reason` (of this account, or these users).

    A user who is also disabled for another reason (e.g. left the company) stays disabled.
    """
    with kb.db.session() as session:
        query = select(AccessRevocation).where(AccessRevocation.reason == reason)
        if account_id is not None:
            query = query.where(AccessRevocation.account_id == account_id)
        if user_ids is not None:
            query = query.where(AccessRevocation.user_id.in_(user_ids))
        rows = [(r.user_id, r.contact_id) for r in session.scalars(query)]
        others = set(session.scalars(select(AccessRevocation.user_id).where(
            AccessRevocation.user_id.in_([u for u, _ in rows]), AccessRevocation.reason != reason)))
        decisions = admin_decisions(session, [u for u, _ in rows])
        admin_disabled = {u: d for u, d in decisions.items() if not d.enabled}
        if admin_disabled:
            # Not Keybridge's to give back: the reason ends, the administrator's disable stands.
            session.execute(delete(AccessRevocation).where(AccessRevocation.reason == reason,
                                                           AccessRevocation.user_id.in_(list(admin_disabled))))
            audit.record(session, "access.kept_disabled", f"account:{account_id}" if account_id else f"user:{next(iter(admin_disabled))}",
                         cause, {"reason": restored_reason, "users": sorted(admin_disabled),
                                 "why": "disabled by an administrator",
                                 "by": {u: {"actor": d.actor, "at": outbox.iso(d.decided_at)} for u, d in admin_disabled.items()}})
            rows = [r for r in rows if r[0] not in admin_disabled]

    def give_back(row):
        user_id, _ = row
        if user_id not in others:
            try:
                kb.keycloak.set_enabled(user_id, True)
            except PermanentError as exc:
                if "(404)" not in str(exc):
                    raise
                # The identity is gone (Keycloak 26.7.3 deletes an invited, "managed"
                # member when it is removed from its organization): nothing to restore.
                return (user_id, None, "gone")
        return row

    done, errors = parallel(kb, give_back, rows)
    with kb.db.session() as session:
        gone = {r[0] for r in done if len(r) == 3}
        done = [r[:2] for r in done]
        done_ids = [user_id for user_id, _ in done]
        if done_ids:
            session.execute(delete(AccessRevocation).where(AccessRevocation.reason == reason,
                                                           AccessRevocation.user_id.in_(done_ids)))
        for user_id, contact_id in done:
            if user_id not in others and user_id not in gone:
                _access_changed(session, user_id, contact_id, True, restored_reason)
        if done:
            audit.record(session, "access.restored", f"account:{account_id}" if account_id else f"user:{done[0][0]}", cause,
                         {"reason": restored_reason, "users": [u for u, _ in done if u not in others and u not in gone]})
    raise_first(errors, "access restores")
    return len([1 for u, _ in done if u not in others and u not in gone])
