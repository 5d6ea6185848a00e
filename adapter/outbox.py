"""Identity events owed to the CRM: recorded in the caller's transaction, delivered at least once.

`record` dedupes on a key (so re-processing the same fact records nothing new);
`deliver_due` sends what is due through the configured connector, retrying with
backoff until the retry window closes, after which the event is a dead letter.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import utcnow
from .jobs import RetryableError, backoff_seconds
from .models import OutboxEvent

log = logging.getLogger(__name__)


def record(session: Session, event_type: str, data: dict, dedupe_key: str) -> bool:
    """Owe the CRM one `event_type` event for this fact; returns False if already owed or sent."""
    if session.scalar(select(OutboxEvent.seq).where(OutboxEvent.dedupe_key == dedupe_key)):
        return False
    session.add(OutboxEvent(id=f"evt_{uuid.uuid4().hex}", type=event_type, data=data, dedupe_key=dedupe_key))
    session.flush()
    return True


def record_new(session: Session, event_type: str, data: dict) -> None:
    """Owe the CRM an event for a fact that is new by construction (no dedupe look-up):
    the caller's own state change in the same transaction is what keeps it from repeating."""
    event_id = f"evt_{uuid.uuid4().hex}"
    session.add(OutboxEvent(id=event_id, type=event_type, data=data, dedupe_key=f"{event_type}:{event_id}"))


def envelope(event: OutboxEvent) -> dict:
    """The wire body: the same {type, timestamp, data} shape as inbound webhooks."""
    ts = event.created_at.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")
    return {"type": event.type, "timestamp": ts, "data": event.data}


def deliver_due(db, connector, settings, limit: int = 100) -> dict[str, int]:
    """Send due events in order; returns counts per outcome. Safe to call from several workers."""
    counts = {"delivered": 0, "retry": 0, "dead": 0}
    if connector is None:
        return counts
    with db.session() as session:
        # The oldest pending events, due or not: one waiting for its retry holds back
        # the ones after it, so the CRM sees events in the order they happened.
        due = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.status == "pending")
            .order_by(OutboxEvent.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        now = utcnow()
        for event in due:
            if event.next_attempt_at > now:
                break
            event.attempts += 1
            try:
                connector.deliver(event.id, envelope(event))
            except RetryableError as exc:
                event.last_error = str(exc)[:4000]
                age = (utcnow() - event.window_started_at).total_seconds()
                if age >= settings.outbox_retry_window_seconds:
                    event.status = "dead"
                    counts["dead"] += 1
                    log.warning("outbound %s %s is a dead letter after %d attempts: %s", event.type, event.id, event.attempts, exc)
                else:
                    delay = exc.retry_after if exc.retry_after is not None else backoff_seconds(event.attempts, settings.retry_max_delay_seconds)
                    event.next_attempt_at = utcnow() + timedelta(seconds=delay)
                    counts["retry"] += 1
                    log.info("outbound %s %s failed (attempt %d), retry in %.0fs: %s", event.type, event.id, event.attempts, delay, exc)
                # Keep order: later events wait behind a failing one.
                break
            except Exception as exc:  # a permanent refusal: retrying will not help
                event.status = "dead"
                event.last_error = f"{type(exc).__name__}: {exc}"[:4000]
                counts["dead"] += 1
                log.warning("outbound %s %s refused, now a dead letter: %s", event.type, event.id, exc)
            else:
                event.status = "delivered"
                event.delivered_at = utcnow()
                event.last_error = None
                counts["delivered"] += 1
    return counts


def replay(session: Session, event_id: str) -> OutboxEvent:
    """Send a dead event again (same event id, so the CRM can still dedupe it)."""
    event = session.scalar(select(OutboxEvent).where(OutboxEvent.id == event_id))
    if event is None:
        raise LookupError(f"No outbound event {event_id}; list them with `keybridge dead-letters list`.")
    if event.status != "dead":
        raise ValueError(f"Outbound event {event_id} is {event.status}, not dead; only dead letters can be replayed.")
    event.status, event.attempts, event.next_attempt_at, event.window_started_at = "pending", 0, utcnow(), utcnow()
    return event


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
