"""An invitation after it went out: listed, revoked, expired, reminded once, resent.

States (Invitation.status), for contacts and leads alike:

    new / sending / sent  -> pending: a link is out (or about to be)
    accepted              -> the person registered or joined through it (final)
    skipped               -> nothing was sent (webmail lead, contact who left, ...)
    revoked               -> withdrawn by the CRM (`contact.invite_revoked` / `lead.invite_revoked`),
                             an operator or an org admin; the link no longer lets anyone in
    expired               -> `expires_at` passed; Keybridge ended the link itself (Keycloak's
                             organization invitations take no lifespan of their own)

A new invitation request (or a resend) leaves revoked, expired and skipped: a new link, a new
`expires_at` and one reminder again. The scheduler (`schedule_due`, from Worker.schedule)
(invitation_expiry.py) queues expiries and the one reminder.

Plain functions for callers (CRM events, operator API and CLI, the org admin page):
- `revoke_invitation(kb, kind, crm_id, cause)` / `resend_invitation(kb, kind, crm_id, cause)`:
  do it now (idempotent; answers "already_accepted" and the like);
- `revoke_organization_invitation(kb, org_id, invitation_id, cause, email=None)` and
  `resend_organization_invitation(...)`: the same for an invitation as Keycloak lists it,
  also one Keybridge did not send;
- `request(kb, "revoke"|"resend", kind, crm_id, requested_by)`: answered now, done by the
  worker in the record's order (after that contact's or lead's earlier events) — what the
  API and CLI use.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from .. import outbox, tasks
from ..events import ContactInviteRevokedSchema, LeadInviteRevokedSchema
from ..models import BatchItem, Invitation
from . import audit, invitations, records

log = logging.getLogger(__name__)

PENDING = ("new", "sending", "sent")
STATES = ("pending", "accepted", "expired", "revoked", "skipped", "refused")  # refused: used after the contact left
REVOKED_BY_REQUEST = "revoked"  # invitation.revoked reason when someone asked (CRM, operator, org admin)


def state_of(status: str) -> str:
    """The listed state of a stored status: pending, accepted, expired, revoked or skipped."""
    return "pending" if status in PENDING else status


def _subject(kind: str, crm_id: str) -> str:
    return f"{kind}:{crm_id}"


def _crm_key(kind: str) -> str:
    return "contact_id" if kind == "contact" else "lead_id"


def _check_kind(kind: str) -> None:
    if kind not in ("contact", "lead"):
        raise ValueError(f"kind must be contact or lead, not {kind!r}")


def settled_answer(status: str) -> str:
    """What a revoke of an invitation no longer pending answers."""
    return {"accepted": "already_accepted", "revoked": "already_revoked", "expired": "already_expired",
            "refused": "refused"}.get(status, "not_sent")


# -- revoke ----------------------------------------------------------------------------

def revoke_invitation(kb, kind: str, crm_id: str, cause: str, reason: str = REVOKED_BY_REQUEST) -> str:
    """Withdraw the pending invitation of this contact or lead: its link stops working and the
    CRM hears `invitation.revoked` (once). Returns what happened:

    - "revoked": it was pending and now is not;
    - "already_revoked", "already_expired", "already_accepted", "not_sent" (skipped): nothing changed;
    - "not_invited": Keybridge holds no invitation for this record.

    Idempotent: a second call changes nothing and answers "already_revoked". Raises
    RetryableError when Keycloak cannot be reached (nothing is marked revoked before the link ended).
    """
    _check_kind(kind)
    with kb.db.session() as session:
        inv = session.scalar(select(Invitation).where(Invitation.kind == kind, Invitation.crm_id == crm_id))
        if inv is None:
            audit.record(session, "invitation.revoke_ignored", _subject(kind, crm_id), cause, {"answer": "not_invited"})
            return "not_invited"
        inv_id, status = inv.id, inv.status
        if status not in PENDING:  # said where an operator looks (`keybridge audit`), nothing changes
            answer = settled_answer(status)
            audit.record(session, "invitation.revoke_ignored", _subject(kind, crm_id), cause, {"answer": answer})
            return answer
    invitations.end_invitation_link(kb, inv_id)  # first: a failure here leaves it pending, and the retry ends it
    settled = invitations._record_revoked(kb, inv_id, reason, cause)
    if settled is not None:  # decided meanwhile (accepted through the link a moment ago, say)
        return settled_answer(settled)
    return "revoked"


@tasks.crm_event("contact.invite_revoked", schema=ContactInviteRevokedSchema, ordering_key=lambda d: f"contact:{d['contact_id']}")
def handle_contact_invite_revoked(kb, data: dict, cause: str, crm_time=None) -> str:
    """contact.invite_revoked: the contact's pending invitation is withdrawn (its link stops working)."""
    if not _take_revoke(kb, "contact", data["contact_id"], crm_time, cause):
        return "stale"
    return revoke_invitation(kb, "contact", data["contact_id"], cause)


@tasks.crm_event("lead.invite_revoked", schema=LeadInviteRevokedSchema, ordering_key=lambda d: f"lead:{d['lead_id']}")
def handle_lead_invite_revoked(kb, data: dict, cause: str, crm_time=None) -> str:
    """lead.invite_revoked: the lead's pending invitation is withdrawn (its link stops working)."""
    if not _take_revoke(kb, "lead", data["lead_id"], crm_time, cause):
        return "stale"
    return revoke_invitation(kb, "lead", data["lead_id"], cause)


def _take_revoke(kb, kind: str, crm_id: str, crm_time, cause: str) -> bool:
    """The revoke is part of the record's state as of its CRM time: False (audited state.stale)
    when the CRM sent a newer event for the record already; an invite request older than the
    revoke, arriving after it, then sends nothing (invitations.revoked_after)."""
    if crm_time is None or records.desired(kb, kind, crm_id) is None:
        return True  # no state to order against (never invited): a revoke alone makes no record state
    return records.take(kb, kind, crm_id, {invitations.REVOKED_AT: outbox.iso(crm_time)}, crm_time, cause)


# -- resend ----------------------------------------------------------------------------

def resend_invitation(kb, kind: str, crm_id: str, cause: str) -> str:
    """Send the invitation again, as `*.invite_requested` with `resend: true` does, from what
    Keybridge stored of the last request. Returns the invite's outcome ("sent", "accepted",
    "already_member", ...), or "not_invited". A resend is a new link: a new `expires_at` and,
    before it, one reminder again. Raises PermanentError for an invitation that was skipped
    for a reason that still holds (the invite path decides again and says so)."""
    _check_kind(kind)
    data = resend_request(kb, kind, crm_id)
    if data is None:
        return "not_invited"
    if kind == "contact":
        return invitations.invite_contact(kb, data, cause)
    return invitations.invite_lead(kb, data, cause)


def resend_request(kb, kind: str, crm_id: str) -> dict | None:
    """The `*.invite_requested` data (with resend) that repeats the stored invitation; None if there is none."""
    with kb.db.session() as session:
        inv = session.scalar(select(Invitation).where(Invitation.kind == kind, Invitation.crm_id == crm_id))
        if inv is None:
            return None
        details = dict(inv.details or {})
        data = {_crm_key(kind): crm_id, "email": inv.email, "resend": True}
        if kind == "contact":
            data.update(account_id=inv.account_id, roles=details.get("roles") or [], org_admin=bool(details.get("org_admin")))
            keys = ("first_name", "last_name", "redirect_uri", "expires_in_days")
        else:
            keys = ("first_name", "last_name", "company", "redirect_uri", "expires_in_days")
        data.update({k: details[k] for k in keys if details.get(k) is not None})
        return data


# -- by Keycloak's invitation (the org admin page lists the organization's pending invitations) ----

def _row_of_keycloak_invitation(kb, org_id: str, invitation_id: str, email: str | None) -> tuple[str, str] | None:
    with kb.db.session() as session:
        inv = session.scalar(select(Invitation).where(Invitation.kind == "contact", Invitation.organization_id == org_id,
                                                      Invitation.keycloak_invitation_id == invitation_id))
        if inv is None and email:
            inv = session.scalar(select(Invitation).where(Invitation.kind == "contact", Invitation.organization_id == org_id,
                                                          Invitation.email == email.lower(), Invitation.status.in_(PENDING)))
        return (inv.kind, inv.crm_id) if inv is not None else None


def revoke_organization_invitation(kb, org_id: str, invitation_id: str, cause: str, email: str | None = None) -> str:
    """Revoke one of an organization's pending invitations as Keycloak lists them: a CRM contact's
    goes through `revoke_invitation` (the CRM hears invitation.revoked); one Keybridge did not send
    (the org admin page's, the admin console's) is deleted in Keycloak and audited. Returns
    revoke_invitation's answer, or "revoked" / "already_gone"."""
    found = _row_of_keycloak_invitation(kb, org_id, invitation_id, email)
    if found is not None:
        return revoke_invitation(kb, found[0], found[1], cause)
    deleted = kb.keycloak.delete_organization_invitation(org_id, invitation_id)
    with kb.db.session() as session:
        audit.record(session, "invitation.revoked", f"organization:{org_id}", cause, {"invitation_id": invitation_id, "email": email})
    return "revoked" if deleted else "already_gone"


def resend_organization_invitation(kb, org_id: str, invitation_id: str, cause: str, email: str | None = None) -> str:
    """Send one of an organization's pending invitations again: a CRM contact's through
    `resend_invitation` (a new expiry, the CRM hears invitation.sent), another with Keycloak's resend."""
    found = _row_of_keycloak_invitation(kb, org_id, invitation_id, email)
    if found is not None:
        return resend_invitation(kb, found[0], found[1], cause)
    kb.keycloak.resend_organization_invitation(org_id, invitation_id)
    with kb.db.session() as session:
        audit.record(session, "invitation.resent", f"organization:{org_id}", cause, {"invitation_id": invitation_id, "email": email})
    return "sent"


# -- asked by an operator or an org admin (queued in the record's order) -------------------

ANSWERS = {
    "already_accepted": "The invitation was already accepted: the person is in. To end their access, send contact.upserted with status left.",
    "already_revoked": "The invitation was already revoked; nothing changed.",
    "already_expired": "The invitation already expired; its link does not work. Invite again to send a new one.",
    "not_sent": "No invitation went out (it was skipped); nothing to revoke.",
    "refused": "The invitation was used after the contact left; nothing to revoke.",
}


def request(kb, action: str, kind: str, crm_id: str, requested_by: str) -> dict:
    """Ask for a revoke or a resend of one invitation: answered now from what is stored, done by
    the worker in the record's order (after that contact's or lead's earlier events).

    Returns {"status": "queued" | "already_accepted" | "already_revoked" | ..., "message"} and,
    when queued, "job"; raises LookupError when Keybridge holds no invitation for the record.
    A second request while one is queued queues nothing more (the handlers are idempotent anyway).
    """
    if action not in ("revoke", "resend"):
        raise ValueError("action must be revoke or resend")
    _check_kind(kind)
    with kb.db.session() as session:
        inv = session.scalar(select(Invitation).where(Invitation.kind == kind, Invitation.crm_id == crm_id))
        if inv is None:
            raise LookupError(f"No invitation for {kind} {crm_id}: the CRM never asked to invite them (see `keybridge invitations list`).")
        status = inv.status
        if action == "revoke" and status not in PENDING:
            answer = settled_answer(status)
            return {"status": answer, "state": state_of(status), "message": ANSWERS[answer]}
        if action == "resend" and status in ("accepted", "refused"):
            return {"status": "already_accepted" if status == "accepted" else "refused", "state": state_of(status),
                    "message": ANSWERS["already_accepted" if status == "accepted" else "refused"]}
        ref = f"{action}:{kind}:{crm_id}:{inv.sent_count}:{status}"
        queued = tasks.enqueue(session, "invitation_request", ref, {"action": action, "kind": kind, "crm_id": crm_id,
                                                                    "requested_by": requested_by})
        audit.record(session, f"invitation.{action}_requested", _subject(kind, crm_id), requested_by, {"queued": queued})
    return {"status": "queued", "state": state_of(status), "job": ref,
            "message": f"The worker will {action} the invitation of {kind} {crm_id}."}


@tasks.job("invitation_request", ordering_key=lambda p: f"{p['kind']}:{p['crm_id']}")
def run_invitation_request(kb, job) -> str:
    """An operator's or org admin's revoke or resend (see `request`)."""
    payload = job.payload
    cause = f"{payload['action']} asked by {payload['requested_by']}"
    if payload["action"] == "revoke":
        return revoke_invitation(kb, payload["kind"], payload["crm_id"], cause)
    return resend_invitation(kb, payload["kind"], payload["crm_id"], cause)


# -- a link used after it ended ----------------------------------------------------------

def ended_before(kb, inv_id: int, when) -> str | None:
    """Why the invitation could not be used at `when` (aware or naive UTC; None: now): "revoked",
    "expired" (also a pending one whose expires_at passed before the expiry job ran), or None."""
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        if inv.status in ("revoked", "expired"):
            return inv.status
        at = (when.replace(tzinfo=None) - when.utcoffset()) if when is not None and when.utcoffset() is not None else (when or kb.now())
        if inv.status in PENDING and inv.expires_at is not None and at > inv.expires_at:
            return "expired"
        return None


def refuse_ended_registration(kb, inv_id: int, user_id: str, reason: str, cause: str) -> str:
    """Someone got through the link of an invitation that had ended (a click in the moment
    before Keycloak's invitation was deleted): Keycloak made them a member; they are removed
    again (Keycloak deletes an identity it made from the invitation, a joined one keeps only
    what it had). Nothing goes to the CRM as accepted."""
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        org_id, kind, crm_id = inv.organization_id, inv.kind, inv.crm_id
    if org_id and kb.keycloak.is_member(org_id, user_id):
        kb.keycloak.remove_member(org_id, user_id)
    with kb.db.session() as session:
        audit.record(session, "registration.refused", _subject(kind, crm_id), cause,
                     {"user_id": user_id, "reason": f"invitation_{reason}"})
    log.warning("user %s came through the %s invitation of %s %s: removed from the organization", user_id, reason, kind, crm_id)
    return f"refused_{reason}"


# -- listing ---------------------------------------------------------------------------

def _row(inv: Invitation, batch_idx: int | None = None) -> dict:
    row = {"kind": inv.kind, "id": inv.crm_id, "email": inv.email, "account_id": inv.account_id,
           "state": state_of(inv.status), "sent_count": inv.sent_count, "sent_at": outbox.iso(inv.sent_at),
           "expires_at": outbox.iso(inv.expires_at) if inv.status in PENDING else None,
           "reminded_at": outbox.iso(inv.reminded_at), "accepted_at": outbox.iso(inv.accepted_at),
           "ended_at": outbox.iso(inv.ended_at)}
    if batch_idx is not None:
        row["batch_index"] = batch_idx
    return row


def list_invitations(kb, account_id: str | None = None, batch_id: str | None = None, state: str | None = None,
                     offset: int = 0, limit: int = 1000) -> dict:
    """Invitations of one account (contacts) or one batch (contacts and leads), with their state.

    Returns {"invitations": [...], "counts": {state: n}, "total": n}; `state` filters the list
    (not the counts). Give exactly one of account_id and batch_id (ValueError otherwise).
    """
    if (account_id is None) == (batch_id is None):
        raise ValueError("Give account_id or batch_id (one of them).")
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}")
    with kb.db.session() as session:
        if account_id is not None:
            rows = [(inv, None) for inv in session.scalars(
                select(Invitation).where(Invitation.account_id == account_id).order_by(Invitation.id))]
        else:
            rows = list(session.execute(
                select(Invitation, BatchItem.idx).join(BatchItem, (BatchItem.kind == Invitation.kind) & (BatchItem.crm_id == Invitation.crm_id))
                .where(BatchItem.batch_id == batch_id).order_by(BatchItem.idx)))
        counts: dict[str, int] = {}
        for inv, _ in rows:
            counts[state_of(inv.status)] = counts.get(state_of(inv.status), 0) + 1
        listed = [(inv, idx) for inv, idx in rows if state is None or state_of(inv.status) == state]
        return {"invitations": [_row(inv, idx) for inv, idx in listed[offset:offset + limit]], "counts": counts,
                "total": len(listed), "offset": offset}


def invitation_status(kb, kind: str, crm_id: str) -> dict | None:
    """One invitation's listed row; None if Keybridge holds none."""
    with kb.db.session() as session:
        inv = session.scalar(select(Invitation).where(Invitation.kind == kind, Invitation.crm_id == crm_id))
        return _row(inv) if inv is not None else None
