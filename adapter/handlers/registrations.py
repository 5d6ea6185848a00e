"""Keycloak user events turned into CRM facts: registrations, verifications, profile changes.

- REGISTER / INVITE_ORG carrying an organization invitation (details.token_id) or the
  email of a pending contact invitation: the contact registered or joined.
- UPDATE_PASSWORD / UPDATE_CREDENTIAL by a user with a pending lead invitation: the
  lead chose a password through the invitation link, i.e. registered.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy import or_, select

from .. import tasks
from ..models import Invitation
from . import invitations, self_service

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
        inv_id = _contact_invitation_for(kb, details)
        if inv_id is None:
            if kind == "REGISTER":
                return self_service.self_registered(kb, user_id, details, when, cause)
            return "no_invitation"
        invitations.complete_contact_registration(kb, inv_id, user_id, cause, when)
        return "registered"
    if kind in LEAD_REGISTRATION_TYPES:
        with kb.db.session() as session:
            inv = session.scalar(select(Invitation).where(
                Invitation.kind == "lead", Invitation.keycloak_user_id == user_id, Invitation.status.in_(OPEN)))
            inv_id = inv.id if inv else None
        if inv_id is None:
            return "ignored"
        invitations.complete_lead_registration(kb, inv_id, user_id, cause, when)
        return "registered"
    if kind == "VERIFY_EMAIL":
        return self_service.email_verified(kb, user_id, cause)
    if kind in ("UPDATE_PROFILE", "UPDATE_EMAIL"):
        return self_service.profile_updated(kb, event, cause)
    return "ignored"


def _contact_invitation_for(kb, details: dict) -> int | None:
    token_id = details.get("token_id")
    email = (details.get("email") or "").lower()
    with kb.db.session() as session:
        conditions = [Invitation.keycloak_invitation_id == token_id] if token_id else []
        if email:
            conditions.append((Invitation.email == email) & Invitation.status.in_(OPEN))
        if not conditions:
            return None
        inv = session.scalar(select(Invitation).where(Invitation.kind == "contact", or_(*conditions)).order_by(Invitation.id.desc()))
        return inv.id if inv else None
