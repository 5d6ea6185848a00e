"""Who may log in: contracts and departures turned into enabled/disabled identities.

Access is cut by disabling the user and ending every session (password logins and
refresh-token grants fail at once); it is restored by enabling them again. Keybridge
records why it disabled someone (`AccessRevocation`), so a renewal only gives access
back to the people it took it from, never to someone an administrator disabled.

An administrator's explicit enable or disable (read from Keycloak's admin event log,
`AdminAccessDecision`) is part of the state: Keybridge never gives back access an
administrator took (the audit says so: `access.kept_disabled`), and it does not take
access from someone an administrator enabled after the CRM state that would cut them
off was taken (`access.kept_enabled`); a newer CRM change applies to them again.
Per-user Keycloak calls for a whole organization run in parallel.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from sqlalchemy import delete, select

from .. import outbox, tasks
from ..db import utcnow
from ..events import IDENTITY_ACCESS_CHANGED
from ..errors import PermanentError, RetryableError
from ..models import AccessRevocation, Account, AdminAccessDecision, CrmRecord
from . import audit

log = logging.getLogger(__name__)

CONTRACT_INACTIVE = "contract_inactive"
CONTRACT_ACTIVE = "contract_active"
LEFT_COMPANY = "left_company"


def contract_is_active(status: str | None, ends_at: datetime | None, now: datetime | None = None) -> bool:
    """Active status and an end date (naive UTC) that has not passed."""
    now = now or utcnow()
    return status == "active" and (ends_at is None or ends_at > now)


def _parallel(kb, fn, items: list) -> tuple[list, list[Exception]]:
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


def _raise_first(errors: list[Exception], what: str) -> None:
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

    done, errors = _parallel(kb, cut, targets)
    with kb.db.session() as session:
        _note_revocations(session, done, reason, account_id)
        for user in done:
            _access_changed(session, user["id"], _contact_id(user), False, reason)
        if done:
            audit.record(session, "access.revoked", f"account:{account_id}" if account_id else f"user:{done[0]['id']}", cause,
                         {"reason": reason, "users": [u["id"] for u in done]})
    _raise_first(errors, "access cuts")
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

    done, errors = _parallel(kb, give_back, rows)
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
    _raise_first(errors, "access restores")
    return len([1 for u, _ in done if u not in others and u not in gone])


def enforce_contract(kb, account_id: str, cause: str) -> str:
    """Make the organization's members' access match the contract; returns 'active' or 'inactive'."""
    with kb.db.session() as session:
        account = session.get(Account, account_id)
        if account is None or not account.organization_id:
            return "unknown"
        active = contract_is_active(account.contract_status, account.contract_ends_at)
        org_id = account.organization_id
    if active:
        count = restore_revoked(kb, CONTRACT_INACTIVE, CONTRACT_ACTIVE, cause, account_id=account_id)
    else:
        count = revoke_users(kb, kb.keycloak.organization_members(org_id), CONTRACT_INACTIVE, account_id, cause,
                             since=_state_taken_at(kb, account_id))
    state = "active" if active else "inactive"
    with kb.db.session() as session:
        account = session.get(Account, account_id)
        account.access, account.access_enforced_at = state, utcnow()
    log.info("account %s contract %s: %d member(s) changed (%s)", account_id, state, count, cause)
    return state


def enforce_for_member(kb, account_id: str | None, user_id: str, cause: str) -> None:
    """A person just joined (or moved to) this account: their access follows its contract."""
    if not account_id:
        return
    with kb.db.session() as session:
        account = session.get(Account, account_id)
        state = account.access if account else None
    if state == "inactive":
        user = kb.keycloak.get_user(user_id)
        if user is not None:
            revoke_users(kb, [user], CONTRACT_INACTIVE, account_id, cause, since=_state_taken_at(kb, account_id))
    elif state == "active":
        restore_revoked(kb, CONTRACT_INACTIVE, CONTRACT_ACTIVE, cause, user_ids=[user_id])


def _state_taken_at(kb, account_id: str):
    """When Keybridge took the account's current desired state (None: it keeps none)."""
    with kb.db.session() as session:
        row = session.get(CrmRecord, ("account", account_id))
        return row.updated_at if row is not None else None


def schedule_due_expiries(kb) -> int:
    """Queue an enforcement for every contract whose end date passed (even while the adapter was down)."""
    now = utcnow()
    queued = 0
    with kb.db.session() as session:
        due = session.scalars(select(Account).where(
            Account.contract_status == "active", Account.contract_ends_at <= now,
            (Account.access != "inactive") | Account.access.is_(None))).all()
        for account in due:
            ends = account.contract_ends_at.replace(tzinfo=timezone.utc).isoformat()
            queued += tasks.enqueue(session, "contract_expiry", f"{account.account_id}@{ends}", {"account_id": account.account_id})
    return queued


@tasks.job("contract_expiry", ordering_key=lambda p: f"account:{p['account_id']}")
def handle_contract_expiry(kb, job) -> str:
    """The contract's end date passed: the organization says expired and its members lose access."""
    account_id = job.payload["account_id"]
    with kb.db.session() as session:
        account = session.get(Account, account_id)
        ends = account.contract_ends_at if account else None
    if ends is None or ends > utcnow():
        return "not_due"  # renewed since the job was queued
    kb.keycloak.update_organization_attributes(account.organization_id, {"contract_status": ["expired"]})
    with kb.db.session() as session:
        session.get(Account, account_id).contract_status = "expired"
    return enforce_contract(kb, account_id, cause=f"schedule: contract ended at {outbox.iso(ends)}")
