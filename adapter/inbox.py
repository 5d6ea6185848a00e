"""The inbox: every inbound event (CRM webhook, vendor dialect or operator decision) is
stored with its job in one transaction before anyone is told it was accepted."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone

from sqlalchemy.exc import IntegrityError

from . import jobs
from .handlers import TASKS
from .tasks import INBOUND_EVENT
from .models import InboundEvent

log = logging.getLogger(__name__)


def store_event(db, webhook_id: str, source: str, envelope: dict) -> str:
    """Store the event and its job; returns 'accepted' or 'duplicate' (same webhook-id seen before).

    The job is ordered by the event type's ordering key (its CRM record), so one record's
    events run one at a time in the order they arrived. `envelope["data"]` has passed the
    type's schema (the webhook checks it first).
    """
    try:
        with db.session() as session:
            if session.get(InboundEvent, webhook_id) is not None:
                return "duplicate"
            session.add(InboundEvent(id=webhook_id, source=source, type=envelope["type"], payload=envelope))
            session.flush()
            task = TASKS.event(envelope["type"])
            jobs.enqueue(session, INBOUND_EVENT, webhook_id, payload={"type": envelope["type"]},
                         ordering_key=task.key_for(envelope["data"]) if task else None)
    except IntegrityError:
        return "duplicate"  # a concurrent delivery of the same webhook-id won the race
    log.info("accepted %s event %s type=%s", source, webhook_id, envelope["type"])
    return "accepted"


def store_operator_event(db, event_type: str, data: dict, operator: str) -> str:
    """An operator's action (e.g. a registration decision), stored exactly like a CRM webhook."""
    webhook_id = f"op_{uuid.uuid4().hex}"
    envelope = {"type": event_type, "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                "data": data, "operator": operator}
    store_event(db, webhook_id, "operator", envelope)
    return webhook_id
