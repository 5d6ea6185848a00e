"""The inbox: every inbound event (CRM webhook, vendor dialect or operator decision) is
stored with its job in one transaction before anyone is told it was accepted."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone

from sqlalchemy.exc import IntegrityError

from . import jobs
from .models import InboundEvent

log = logging.getLogger(__name__)


def store_event(db, webhook_id: str, source: str, envelope: dict) -> str:
    """Store the event and its job; returns 'accepted' or 'duplicate' (same webhook-id seen before)."""
    try:
        with db.session() as session:
            if session.get(InboundEvent, webhook_id) is not None:
                return "duplicate"
            session.add(InboundEvent(id=webhook_id, source=source, type=envelope["type"], payload=envelope))
            session.flush()
            jobs.enqueue(session, "inbound_event", webhook_id)
    except IntegrityError:
        return "duplicate"  # a concurrent delivery of the same webhook-id won the race
    log.info("accepted %s event %s type=%s", source, webhook_id, envelope["type"])
    return "accepted"


def store_events(db, source: str, rows: list[tuple[str, dict, str]]) -> list[str]:
    """Store several events (id, envelope, job kind) of one delivery in one transaction.

    Returns 'accepted' or 'duplicate' per row. All or nothing: a failure stores none of them.
    """
    try:
        with db.session() as session:
            statuses = []
            for event_id, envelope, job_kind in rows:
                if session.get(InboundEvent, event_id) is not None:
                    statuses.append("duplicate")
                    continue
                session.add(InboundEvent(id=event_id, source=source, type=envelope["type"], payload=envelope))
                session.flush()
                jobs.enqueue(session, job_kind, event_id)
                statuses.append("accepted")
    except IntegrityError:
        # A concurrent delivery of some of the same events won the race: store the rest one by one.
        return [_store_one(db, source, *row) for row in rows]
    for (event_id, envelope, _), status in zip(rows, statuses):
        if status == "accepted":
            log.info("accepted %s event %s type=%s", source, event_id, envelope["type"])
    return statuses


def _store_one(db, source: str, event_id: str, envelope: dict, job_kind: str) -> str:
    try:
        with db.session() as session:
            if session.get(InboundEvent, event_id) is not None:
                return "duplicate"
            session.add(InboundEvent(id=event_id, source=source, type=envelope["type"], payload=envelope))
            session.flush()
            jobs.enqueue(session, job_kind, event_id)
    except IntegrityError:
        return "duplicate"
    return "accepted"


def store_operator_event(db, event_type: str, data: dict, operator: str) -> str:
    """An operator's action (e.g. a registration decision), stored exactly like a CRM webhook."""
    webhook_id = f"op_{uuid.uuid4().hex}"
    envelope = {"type": event_type, "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                "data": data, "operator": operator}
    store_event(db, webhook_id, "operator", envelope)
    return webhook_id
