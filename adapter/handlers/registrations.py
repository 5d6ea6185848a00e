"""Keycloak user events turned into CRM facts: registrations, verifications, profile changes.

- REGISTER / INVITE_ORG carrying an organization invitation (details.token_id, the id of
  Keycloak's invitation, present when the person came through the invitation link): the
  contact registered or joined.
- REGISTER / INVITE_ORG of someone an org admin invited from the page (delegation.invite_member):
  that invitation settles (a member with the default business roles; membership.changed).
- REGISTER at the address of a pending contact invitation but without its link: only a
  VERIFIED address (emailVerified, asked of Keycloak now) completes the invitation. The
  realm does not verify addresses at registration, so anyone could otherwise register
  with the invited admin's address and take their place (and org_admin): an unverified
  registration goes the self-registration path (self_service.py), like anyone else's.
- UPDATE_PASSWORD / UPDATE_CREDENTIAL by a user with a pending lead invitation, whose
  address is verified (the invitation link does that): the lead chose a password through
  the link, i.e. registered. A password changed otherwise (an account someone else made
  with the lead's address) completes nothing.

A registration (or verified email) is a fact about the person: their access converges to
the desired state (convergence.converge_person). A registration through the invitation
of a contact whose newest CRM state is `left` is refused: it ends with no access. It is
settled by a `contact_registration` job under `contact:<id>` (a lead's by `lead_registration`
under `lead:<id>`), in the order of that record's CRM events: a `left` or a revocation being
handled while the registration is read cannot race it.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy import select

from .. import tasks
from ..db import utcnow
from ..models import Invitation, SelfRegistration
from . import audit, contacts, convergence, invitation_lifecycle, invitations, records, self_service

log = logging.getLogger(__name__)

CONTACT_REGISTRATION_TYPES = {"REGISTER", "INVITE_ORG"}
LEAD_REGISTRATION_TYPES = {"UPDATE_PASSWORD", "UPDATE_CREDENTIAL"}
OPEN = ("sent", "sending", "new")


@tasks.job("keycloak_event", ordering_key=lambda e: f"user:{e['userId']}" if e.get("userId") else None)
def run_keycloak_event(kb, job) -> str:
    """One event of Keycloak's user event log (its payload); one user's events run in log order."""
    return handle_keycloak_event(kb, job.payload)


def handle_keycloak_event(kb, event: dict) -> str:
    kind = event.get("type")
    user_id = event.get("userId")
    details = event.get("details") or {}
    when = datetime.fromtimestamp(event["time"] / 1000, tz=timezone.utc) if event.get("time") else None
    cause = f"keycloak event {event.get('id')} ({kind})"
    if not user_id:
        return "ignored"
    if kind in CONTACT_REGISTRATION_TYPES:
        inv_id = _contact_invitation_for(kb, user_id, details)
        if inv_id is None:
            return _registered_without_invitation(kb, user_id, kind, details, when, cause)
        # In the contact's order: the CRM's events about this contact (it left, its invitation was
        # revoked) may be running right now under `contact:<id>`; the registration is settled after them.
        contact_id = invitations.contact_of_invitation(kb, inv_id)
        with kb.db.session() as session:
            tasks.enqueue(session, "contact_registration", f"{inv_id}:{user_id}:{event.get('id')}"[:200], payload={
                "contact_id": contact_id, "invitation_id": inv_id, "user_id": user_id, "type": kind,
                "details": details, "time": event.get("time"), "cause": cause})
        return "registration_queued"
    if kind in LEAD_REGISTRATION_TYPES:
        with kb.db.session() as session:
            inv = session.scalar(select(Invitation).where(
                Invitation.kind == "lead", Invitation.keycloak_user_id == user_id, Invitation.status.in_(OPEN)))
            if inv is None:
                return "ignored"
            # In the lead's order, like a contact's registration: behind a revocation being handled right now.
            tasks.enqueue(session, "lead_registration", f"{inv.id}:{user_id}:{event.get('id')}"[:200], payload={
                "lead_id": inv.crm_id, "invitation_id": inv.id, "user_id": user_id, "time": event.get("time"), "cause": cause})
        return "registration_queued"
    if kind == "VERIFY_EMAIL":
        outcome = self_service.email_verified(kb, user_id, cause)
        if outcome != "user_gone":
            convergence.converge_person(kb, user_id, cause)
        return outcome
    if kind in ("UPDATE_PROFILE", "UPDATE_EMAIL"):
        return self_service.profile_updated(kb, event, cause)
    return "ignored"


@tasks.job("contact_registration", ordering_key=lambda p: f"contact:{p['contact_id']}")
def run_contact_registration(kb, job) -> str:
    """A registration through a contact's invitation, settled in the contact's order (after its pending CRM events)."""
    p = job.payload
    when = datetime.fromtimestamp(p["time"] / 1000, tz=timezone.utc) if p.get("time") else None
    return settle_contact_registration(kb, p["invitation_id"], p["user_id"], p["type"], p.get("details") or {},
                                       when, p["cause"])


def settle_contact_registration(kb, inv_id: int, user_id: str, kind: str, details: dict, when, cause: str) -> str:
    """The contact registered or joined through their invitation: the invitation completes, unless the
    CRM's newest word is that they left (no access) or the invitation ended before it was used."""
    contact_id = invitations.contact_of_invitation(kb, inv_id)
    if records.contact_left(kb, contact_id):  # the CRM said they left before the registration was settled
        return contacts.refuse_registration(kb, inv_id, user_id, contact_id, cause)
    ended = invitation_lifecycle.ended_before(kb, inv_id, when)
    if ended and details.get("token_id"):  # its link worked a moment after it was revoked or expired
        return invitation_lifecycle.refuse_ended_registration(kb, inv_id, user_id, ended, cause)
    if ended:  # a verified address completes no ended invitation
        return _registered_without_invitation(kb, user_id, kind, details, when, cause)
    _end_sessions_of_an_earlier_self_registration(kb, user_id, cause)
    invitations.complete_contact_registration(kb, inv_id, user_id, cause, when)
    convergence.converge_person(kb, user_id, cause)
    return "registered"


@tasks.job("lead_registration", ordering_key=lambda p: f"lead:{p['lead_id']}")
def run_lead_registration(kb, job) -> str:
    """A lead chose a password through their link, settled in the lead's order (after its pending CRM events)."""
    p = job.payload
    when = datetime.fromtimestamp(p["time"] / 1000, tz=timezone.utc) if p.get("time") else None
    return settle_lead_registration(kb, p["invitation_id"], p["user_id"], when, p["cause"])


def settle_lead_registration(kb, inv_id: int, user_id: str, when, cause: str) -> str:
    """The lead registered: the invitation completes if it is still open (a revocation handled first ends it)
    and Keycloak says the address is verified (the link does that; a password set otherwise completes nothing)."""
    with kb.db.session() as session:
        inv = session.get(Invitation, inv_id)
        if inv is None or inv.status not in OPEN or inv.keycloak_user_id != user_id:
            return "invitation_ended"
    if not _verified(kb, user_id):
        log.warning("user %s changed their password but their address is not verified: lead invitation %s "
                    "stays open (only its link completes it)", user_id, inv_id)
        return "unverified"
    invitations.complete_lead_registration(kb, inv_id, user_id, cause, when)
    return "registered"


def _registered_without_invitation(kb, user_id: str, kind: str, details: dict, when, cause: str) -> str:
    """A registration no contact invitation accounts for: an org admin's invitation from the page, or self-registration."""
    from .. import delegation  # it imports this package

    if delegation.settle_page_invitation(kb, user_id, cause):  # an org admin invited them from the page
        return "joined_on_org_admin_invitation"
    if kind == "REGISTER":
        return self_service.self_registered(kb, user_id, details, when, cause)
    return "no_invitation"


def _contact_invitation_for(kb, user_id: str, details: dict) -> int | None:
    """The contact invitation this registration completes: the one whose link was used (token_id), or
    else an open one for the user's address when Keycloak says that address is verified; or None."""
    token_id = details.get("token_id")
    with kb.db.session() as session:
        if token_id:
            inv = session.scalar(select(Invitation).where(Invitation.kind == "contact",
                                                          Invitation.keycloak_invitation_id == token_id))
            if inv is not None:
                return inv.id
    user = kb.keycloak.get_user(user_id)
    email = ((user or {}).get("email") or "").lower()
    if not email or not (user or {}).get("emailVerified"):
        return None
    with kb.db.session() as session:
        inv = session.scalar(select(Invitation).where(Invitation.kind == "contact", Invitation.email == email,
                                                      Invitation.status.in_(OPEN)).order_by(Invitation.id.desc()))
        return inv.id if inv else None


def _end_sessions_of_an_earlier_self_registration(kb, user_id: str, cause: str) -> None:
    """An identity made on the login page, never approved, now completes an invitation (its link, or the
    address verified later): whoever made it may not be the address's owner and may still be signed in
    (Keycloak 26.7.3 keeps other sessions through a password reset unless asked). End every session
    before the identity gains anything; its self-registration is settled by the invitation."""
    with kb.db.session() as session:
        reg = session.get(SelfRegistration, user_id)
        if reg is None or reg.status in ("approved", "invitation"):
            return
    kb.keycloak.logout(user_id)  # first: a retry after a failure here still ends them
    with kb.db.session() as session:
        reg = session.get(SelfRegistration, user_id)
        audit.record(session, "registration.superseded", f"user:{user_id}", cause,
                     {"previous_status": reg.status, "sessions_ended": True})
        reg.status, reg.decided_at, reg.decided_by = "invitation", utcnow(), cause


def _verified(kb, user_id: str) -> bool:
    """Whether Keycloak says the user's address is verified (now, not as the event said)."""
    return bool((kb.keycloak.get_user(user_id) or {}).get("emailVerified"))
