"""What each job does. Inbound CRM events dispatch on their type; Keycloak events on theirs."""
from __future__ import annotations

import logging

from ..events import INBOUND_SCHEMAS
from ..jobs import PermanentError
from ..models import InboundEvent
from . import access, accounts, activity, batches, contacts, invitations, registrations, self_service

log = logging.getLogger(__name__)

CRM_EVENT_HANDLERS = {
    "account.upserted": accounts.handle_account_upserted,
    "contact.invite_requested": invitations.invite_contact,
    "lead.invite_requested": invitations.invite_lead,
    "contact.upserted": contacts.handle_contact_upserted,
    "invitations.batch_requested": batches.handle_batch_requested,
    "registration.decided": self_service.handle_registration_decided,
}


def run_job(kb, job) -> str:
    """Run one job to completion; raises RetryableError or PermanentError on failure."""
    if job.kind == "inbound_event":
        return run_inbound_event(kb, job.ref)
    if job.kind == "keycloak_event":
        return registrations.handle_keycloak_event(kb, job.payload)
    if job.kind == "batch_item":
        return batches.run_batch_item(kb, job)
    if job.kind == "activity_report":
        return activity.run_report(kb, job)
    if job.kind == "contract_expiry":
        return access.handle_contract_expiry(kb, job.payload)
    if job.kind == "hubspot_fetch":
        from ..webhooks import hubspot  # a vendor dialect's worker step (reads the record a thin event names)

        return hubspot.fetch_and_translate(kb, job.ref)
    if job.kind == "keycloak_admin_event":
        from .. import admin_events  # imports delegation, which imports this package

        return admin_events.handle_admin_event(kb, job.payload)
    raise PermanentError(f"Unknown job kind {job.kind!r}")


def run_inbound_event(kb, webhook_id: str) -> str:
    with kb.db.session() as session:
        event = session.get(InboundEvent, webhook_id)
        if event is None:
            raise PermanentError(f"Inbound event {webhook_id} is missing from storage")
        envelope = dict(event.payload)
    event_type = envelope["type"]
    handler = CRM_EVENT_HANDLERS.get(event_type)
    if handler is None:
        raise PermanentError(f"{event_type} is accepted by the contract but not handled by this version; replay it after upgrading.")
    data = INBOUND_SCHEMAS[event_type]().load(envelope["data"])
    return handler(kb, data, cause=f"webhook {webhook_id} ({event_type})")
