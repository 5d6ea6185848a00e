"""Contracts drive access through the organization's attributes; what follows a change runs in the background.

The switch is the organization's `contract_status` / `contract_ends_at` attributes, written by
accounts.ensure_organization: from that write on, Keycloak's extension refuses the members'
logins and token refreshes (or accepts them again), whatever the organization's size. No
member's `enabled` flag is touched for a contract.

What follows, off the path that makes a cut-off effective:

- `follow_contract` (after the write) records the account's access state and, when it
  changed, queues one `contract_members` job (or cancels the previous change's job if that
  one has not started: a suspension undone before its follow-up ran changed nothing for
  anyone but the few seconds in between);
- `contract_members` reads the members in chunks and, per chunk in parallel: after a cut-off
  ends the live sessions of those who lost access by it; both ways, tells the CRM
  `identity.access_changed` for each person whose access changed (`contract_inactive` /
  `contract_active`). A member of another CRM organization with an active contract keeps
  access (the extension's rule, access.access_decision) and hears nothing. The job is
  retried as a whole (ending sessions twice changes nothing; each event has a stable key),
  and a job overtaken by a newer change of the contract does nothing;
- `contract_expiry`: an end date passing is enforced by the extension itself (it compares
  `contract_ends_at` with the clock); the schedule only writes `contract_status: expired`
  so that the organization says so, and the CRM hears about the people it cut off;
- `contract_revocations_lifted`: the upgrade step from the per-user path (see
  `lift_contract_revocations`).
"""
from __future__ import annotations

import logging
from datetime import timezone

from sqlalchemy import delete, exists, func, select

from .. import jobs, outbox, tasks
from ..db import utcnow
from ..errors import PermanentError, RetryableError
from ..events import IDENTITY_ACCESS_CHANGED
from ..models import AccessRevocation, Account
from . import audit
from .access import (CONTRACT_ACTIVE, CONTRACT_INACTIVE, LEFT_COMPANY, access_decision, admin_decisions, contract_is_active,
                     is_crm_organization, organization_contract_active, parallel, raise_first)

log = logging.getLogger(__name__)

MEMBERS_JOB = "contract_members"
EXPIRY_JOB = "contract_expiry"
LIFT_JOB = "contract_revocations_lifted"
CHUNK = 200  # members read, and their sessions ended, per step of the members job


def follow_contract(kb, account_id: str, cause: str) -> str:
    """The organization's contract attributes are written: record the account's access state and, when it
    changed, queue the members' follow-up (`contract_members`). Returns 'active', 'inactive' or 'unknown'.

    Makes no Keycloak call: the attribute write before it was the cut-off (or the renewal)."""
    with kb.db.session() as session:
        account = session.get(Account, account_id)
        if account is None or not account.organization_id:
            return "unknown"
        state = "active" if contract_is_active(account.contract_status, account.contract_ends_at) else "inactive"
        if account.access == state:
            return state
        previous, now = account.access, utcnow()
        account.access, account.access_enforced_at = state, now
        if previous is None:
            return state  # an account new to Keybridge: nobody's access changed
        since = outbox.iso(now)
        audit.record(session, "contract.access_" + ("restored" if state == "active" else "ended"), f"account:{account_id}", cause,
                     {"contract_status": account.contract_status, "contract_ends_at": outbox.iso(account.contract_ends_at),
                      "organization_id": account.organization_id, "since": since})
        # The follow-up of the change before this one has not started: the two cancel out (nobody's
        # sessions end, the CRM hears nothing: for it, nobody's access changed).
        cancelled = jobs.cancel_unstarted(session, MEMBERS_JOB, _members_key({"account_id": account_id}),
                                          f"the contract is {state} again ({cause})")
        if not cancelled:
            tasks.enqueue(session, MEMBERS_JOB, f"{account_id}@{state}@{since}",
                          {"account_id": account_id, "state": state, "since": since, "cause": cause})
    log.info("account %s contract %s (%s): organization attributes written, members followed in the background",
             account_id, state, cause)
    return state


def _members_key(payload: dict) -> str:
    return f"contract-members:{payload['account_id']}"


@tasks.job(MEMBERS_JOB, ordering_key=_members_key)
def handle_contract_members(kb, job) -> str:
    """After a cut-off (or a renewal) of the account's contract: sessions of the members who lost
    access end, and the CRM hears about each person whose access changed. See the module docstring."""
    account_id, state, since = job.payload["account_id"], job.payload["state"], job.payload["since"]
    cause = job.payload.get("cause") or f"contract {state}"
    with kb.db.session() as session:
        account = session.get(Account, account_id)
        org_id, current = (account.organization_id, account.access) if account else (None, None)
    if org_id is None:
        return "unknown_account"
    if current != state:
        return "superseded"  # the contract changed again meanwhile: its own job follows
    first, changed = 0, 0
    while True:
        chunk = kb.keycloak.organization_members_page(org_id, first, CHUNK, brief=False)
        changed += _follow_chunk(kb, account_id, org_id, state, since, chunk, cause)
        if len(chunk) < CHUNK:
            break
        first += CHUNK
    return f"{changed} member(s) {'lost' if state == 'inactive' else 'regained'} access"


def _follow_chunk(kb, account_id: str, org_id: str, state: str, since: str, members: list[dict], cause: str) -> int:
    """One chunk of members, in parallel; returns how many changed (their events are recorded)."""
    candidates = [m for m in members if m.get("enabled", True)]  # a disabled identity's access changed with nothing
    now = utcnow().replace(tzinfo=timezone.utc)

    def follow(member: dict) -> dict | None:
        organizations = kb.keycloak.organizations_of_member(member["id"])
        decision = access_decision(member, organizations, now)
        if state == "inactive":
            if decision != CONTRACT_INACTIVE:
                return None  # left already, another active contract, or renewed meanwhile
            kb.keycloak.logout(member["id"])
            return member
        others_active = any(o["id"] != org_id and is_crm_organization(o) and organization_contract_active(o, now)
                            for o in organizations)
        return member if decision is None and not others_active else None

    done, errors = parallel(kb, follow, candidates)
    done = [m for m in done if m is not None]
    reason, enabled = (CONTRACT_INACTIVE, False) if state == "inactive" else (CONTRACT_ACTIVE, True)
    with kb.db.session() as session:
        told = [m["id"] for m in done if outbox.record(
            session, IDENTITY_ACCESS_CHANGED,
            {"user_id": m["id"], "contact_id": _contact_id(m), "enabled": enabled, "reason": reason},
            f"{IDENTITY_ACCESS_CHANGED}:{reason}:{account_id}:{m['id']}:{since}")]
        if told:
            audit.record(session, "access.contract_ended" if state == "inactive" else "access.contract_restored",
                         f"account:{account_id}", cause, {"users": told, "sessions_ended": state == "inactive", "since": since})
    raise_first(errors, "members' follow-ups")
    return len(done)


def tell_if_access_changed(kb, user: dict, organizations_before: list[dict], cause: str) -> None:
    """The person's organizations changed (a contact moved to another account): if that changed whether
    the contracts let them in, the CRM hears `identity.access_changed`. Only reads Keycloak."""
    now = utcnow().replace(tzinfo=timezone.utc)
    before = access_decision(user, organizations_before, now)
    after = access_decision(user, kb.keycloak.organizations_of_member(user["id"]), now)
    if not user.get("enabled", True) or (before is None) == (after is None) or LEFT_COMPANY in (before, after):
        return
    reason, enabled = (CONTRACT_ACTIVE, True) if after is None else (CONTRACT_INACTIVE, False)
    if not enabled:
        kb.keycloak.logout(user["id"])
    with kb.db.session() as session:
        outbox.record(session, IDENTITY_ACCESS_CHANGED,
                      {"user_id": user["id"], "contact_id": _contact_id(user), "enabled": enabled, "reason": reason},
                      f"{IDENTITY_ACCESS_CHANGED}:{reason}:membership:{user['id']}:{cause}")


def _contact_id(user: dict) -> str | None:
    values = (user.get("attributes") or {}).get("crm_contact_id") or []
    return values[0] if values else None


# -- the end date passes ------------------------------------------------------------------


def schedule_due_expiries(kb) -> int:
    """Queue a `contract_expiry` for every contract whose end date passed (even while the adapter was down)."""
    now = utcnow()
    queued = 0
    with kb.db.session() as session:
        due = session.scalars(select(Account).where(
            Account.contract_status == "active", Account.contract_ends_at <= now,
            (Account.access != "inactive") | Account.access.is_(None))).all()
        for account in due:
            ends = account.contract_ends_at.replace(tzinfo=timezone.utc).isoformat()
            queued += tasks.enqueue(session, EXPIRY_JOB, f"{account.account_id}@{ends}", {"account_id": account.account_id})
    return queued


@tasks.job(EXPIRY_JOB, ordering_key=lambda p: f"account:{p['account_id']}")
def handle_contract_expiry(kb, job) -> str:
    """The contract's end date passed. Keycloak's extension refuses the members from that instant on
    (it reads `contract_ends_at`); this writes `contract_status: expired` so the organization says so,
    and the members' follow-up tells the CRM."""
    account_id = job.payload["account_id"]
    with kb.db.session() as session:
        account = session.get(Account, account_id)
        ends, org_id = (account.contract_ends_at, account.organization_id) if account else (None, None)
    if ends is None or ends > utcnow():
        return "not_due"  # renewed since the job was queued
    kb.keycloak.update_organization_attributes(org_id, {"contract_status": ["expired"]})
    with kb.db.session() as session:
        session.get(Account, account_id).contract_status = "expired"
    return follow_contract(kb, account_id, cause=f"schedule: contract ended at {outbox.iso(ends)}")


# -- the upgrade from per-user cut-offs ------------------------------------------------------


def queue_lift_of_contract_revocations(kb) -> bool:
    """At worker start: if Keybridge still holds users it disabled for a contract (the per-user path of
    earlier versions), queue the step that gives them their flag back. Returns whether one was queued."""
    with kb.db.session() as session:
        if not session.scalar(select(exists().where(AccessRevocation.reason == CONTRACT_INACTIVE))):
            return False
        count = session.scalar(select(func.count()).select_from(AccessRevocation).where(AccessRevocation.reason == CONTRACT_INACTIVE))
        return tasks.enqueue(session, LIFT_JOB, f"v1@{outbox.iso(utcnow())}", {"rows": count})


@tasks.job(LIFT_JOB, ordering_key=lambda p: "upgrade:contract-revocations")
def handle_lift_contract_revocations(kb, job) -> str:
    """The upgrade step to access decided by attributes (queued by the worker at start)."""
    return "lifted: {enabled} enabled again, {kept} kept disabled, {gone} gone".format(
        **lift_contract_revocations(kb, cause="upgrade: contract access decided by organization attributes"))


def lift_contract_revocations(kb, cause: str) -> dict:
    """Give back the `enabled` flag Keybridge took for a contract before the attributes decided, and forget
    why it took it (the `contract_inactive` AccessRevocation rows). Idempotent; returns counts.

    Only those users: a user also disabled for another reason of Keybridge's (left the company, a
    rejected registration) stays disabled, and so does one whose latest administrator decision is a
    disable (`access.kept_disabled`). Whoever is enabled again is still refused by the extension while
    their organizations' contracts are not active. Refuses to run (retried) while the realm does not
    apply the extension's client policy: without it, the flag would be the only thing keeping them out.
    """
    if not kb.keycloak.contract_access_enforced():
        raise RetryableError("Keycloak does not enforce contract access yet (no enabled client policy with the "
                             "keybridge-contract-access executor): install keycloak-extension and bring the realm in line "
                             "(`keybridge realm apply`); users Keybridge disabled for a contract stay disabled until then.",
                             retry_after=300)
    with kb.db.session() as session:
        rows = [(r.user_id, r.account_id, r.contact_id) for r in session.scalars(
            select(AccessRevocation).where(AccessRevocation.reason == CONTRACT_INACTIVE))]
        user_ids = [u for u, _, _ in rows]
        others = set(session.scalars(select(AccessRevocation.user_id).where(
            AccessRevocation.user_id.in_(user_ids), AccessRevocation.reason != CONTRACT_INACTIVE))) if user_ids else set()
        admin_disabled = {u: d for u, d in admin_decisions(session, user_ids).items() if not d.enabled}
    now = utcnow().replace(tzinfo=timezone.utc)

    def lift(row):
        user_id, account_id, contact_id = row
        if user_id in others or user_id in admin_disabled:
            return user_id, "kept"
        try:
            kb.keycloak.set_enabled(user_id, True)
        except PermanentError as exc:
            if "(404)" not in str(exc):
                raise
            return user_id, "gone"
        user = kb.keycloak.get_user(user_id)
        if user is None:
            return user_id, "gone"
        allowed = access_decision(user, kb.keycloak.organizations_of_member(user_id), now) is None
        return user_id, "allowed" if allowed else "enabled"

    done, errors = parallel(kb, lift, rows)
    outcome = dict(done)
    by_row = {u: (a, c) for u, a, c in rows}
    with kb.db.session() as session:
        if outcome:
            session.execute(delete(AccessRevocation).where(AccessRevocation.reason == CONTRACT_INACTIVE,
                                                           AccessRevocation.user_id.in_(list(outcome))))
        for user_id, result in outcome.items():
            if result == "allowed":  # their contract is active again: the CRM hears they have access
                outbox.record(session, IDENTITY_ACCESS_CHANGED,
                              {"user_id": user_id, "contact_id": by_row[user_id][1], "enabled": True, "reason": CONTRACT_ACTIVE},
                              f"{IDENTITY_ACCESS_CHANGED}:{CONTRACT_ACTIVE}:lift:{user_id}")
        kept = sorted(u for u, r in outcome.items() if r == "kept")
        enabled = sorted(u for u, r in outcome.items() if r in ("allowed", "enabled"))
        if kept and any(u in admin_disabled for u in kept):
            audit.record(session, "access.kept_disabled", "realm:contract-revocations", cause,
                         {"users": sorted(u for u in kept if u in admin_disabled), "why": "disabled by an administrator",
                          "by": {u: {"actor": admin_disabled[u].actor, "at": outbox.iso(admin_disabled[u].decided_at)}
                                 for u in kept if u in admin_disabled}})
        if outcome:
            audit.record(session, "access.contract_revocations_lifted", "realm:contract-revocations", cause,
                         {"enabled": enabled, "kept_disabled": kept, "gone": sorted(u for u, r in outcome.items() if r == "gone")})
    raise_first(errors, "lifts of contract cut-offs")
    return {"enabled": len(enabled), "kept": len(kept), "gone": sum(1 for r in outcome.values() if r == "gone")}
