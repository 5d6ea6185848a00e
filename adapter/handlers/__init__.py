"""What each kind of work does. Every handler module declares its tasks (adapter/tasks.py)
beside its code; importing this package registers them all, and `TASKS` is the registry."""
from __future__ import annotations

import logging

from marshmallow import fields

from .. import tasks
from ..errors import PermanentError
from ..models import InboundEvent
from . import (access, accounts, activity, batches, contacts, contracts, convergence, invitation_expiry,  # noqa: F401  (register)
               invitation_lifecycle, invitations, records, registrations, self_service)

log = logging.getLogger(__name__)

TASKS = tasks.REGISTRY


@tasks.job(tasks.INBOUND_EVENT)
def run_inbound_event(kb, job) -> str:
    """A stored CRM event (job.ref is its webhook-id): its data, loaded with its type's schema, to its
    type's handler, with the envelope timestamp as `crm_time` (the newest state wins, see records.py)."""
    webhook_id = job.ref
    with kb.db.session() as session:
        event = session.get(InboundEvent, webhook_id)
        if event is None:
            raise PermanentError(f"Inbound event {webhook_id} is missing from storage")
        envelope = dict(event.payload)
    event_type = envelope["type"]
    task = TASKS.event(event_type)
    if task is None:
        raise PermanentError(f"{event_type} is accepted by the contract but not handled by this version; replay it after upgrading.")
    data = task.schema().load(envelope["data"])
    crm_time = fields.AwareDateTime().deserialize(envelope["timestamp"])  # when the record changed in the CRM
    return task.handler(kb, data, cause=f"webhook {webhook_id} ({event_type})", crm_time=crm_time)
