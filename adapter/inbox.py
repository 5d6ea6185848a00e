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


def store_events(db, source: str, rows: list[tuple[str, dict, str]]) -> list[str]:
    """Store several events (id, envelope, job kind) of one delivery in one transaction.

    A CRM event gets its `inbound_event` job exactly as `store_event` gives it; another job
    kind (a vendor's thin event waiting to be read, e.g. `vendor_read`) is queued as that
    kind declares, with the envelope's data as payload. Returns 'accepted' or 'duplicate'
    per row; a failure stores none of them.
    """
    try:
        with db.session() as session:
            statuses = [_add(session, source, *row) for row in rows]
    except IntegrityError:
        # A concurrent delivery of some of the same events won the race: store the rest one by one.
        statuses = []
        for row in rows:
            try:
                with db.session() as session:
                    statuses.append(_add(session, source, *row))
            except IntegrityError:
                statuses.append("duplicate")
    for (event_id, envelope, _), status in zip(rows, statuses):
        if status == "accepted":
            log.info("accepted %s event %s type=%s", source, event_id, envelope["type"])
    return statuses


def _add(session, source: str, event_id: str, envelope: dict, job_kind: str) -> str:
    if session.get(InboundEvent, event_id) is not None:
        return "duplicate"
    session.add(InboundEvent(id=event_id, source=source, type=envelope["type"], payload=envelope))
    session.flush()
    if job_kind == INBOUND_EVENT:
        task = TASKS.event(envelope["type"])
        jobs.enqueue(session, INBOUND_EVENT, event_id, payload={"type": envelope["type"]},
                     ordering_key=task.key_for(envelope["data"]) if task else None)
    else:
        TASKS.enqueue(session, job_kind, event_id, payload=envelope["data"])
    return "accepted"


def store_operator_event(db, event_type: str, data: dict, operator: str) -> str:
    """An operator's action (e.g. a registration decision), stored exactly like a CRM webhook."""
    webhook_id = f"op_{uuid.uuid4().hex}"
    envelope = {"type": event_type, "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                "data": data, "operator": operator}
    store_event(db, webhook_id, "operator", envelope)
    return webhook_id
