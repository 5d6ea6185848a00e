"""Identity events owed to the CRM: recorded in the caller's transaction, delivered at least once.

`record` dedupes on a key (so re-processing the same fact records nothing new);
`deliver_due` sends what is due through the configured connector, retrying with
backoff until the retry window closes, after which the event is a dead letter.

Order is kept per CRM record (the event's `subject`): an event waiting for its retry,
or being sent by another worker, holds back the later events of the same record only.
Several workers share the outbox through short leases: a bounded set of due events is
claimed in one short transaction, sent outside any transaction, and each result is
recorded in its own short transaction. A worker that dies mid-send leaves its events
to the others once the lease (`LEASE`) runs out; the CRM may then see an event twice,
with the same webhook-id.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, exists, false, or_, select, text, update
from sqlalchemy.orm import Session, aliased

from .db import utcnow
from .errors import RetryableError
from .jobs import backoff_seconds
from .models import OutboxEvent

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
# Claims are serialized (they take milliseconds; the sending happens outside): PostgreSQL
# advisory lock key, any constant unique to Keybridge ("kbox").
_CLAIM_LOCK_KEY = 0x6B62_6F78

# The CRM record an event is about, most specific first.
_SUBJECT_KEYS = (("contact_id", "contact"), ("lead_id", "lead"), ("user_id", "user"), ("account_id", "account"),
                 ("batch_id", "batch"))


def subject_of(data: dict) -> str:
    """The record whose events must reach the CRM in order: contact, lead, identity, account or batch."""
    for key, kind in _SUBJECT_KEYS:
        if data.get(key):
            return f"{kind}:{data[key]}"[:250]
    return "-"


def record(session: Session, event_type: str, data: dict, dedupe_key: str) -> bool:
    """Owe the CRM one `event_type` event for this fact; returns False if already owed or sent."""
    if session.scalar(select(OutboxEvent.seq).where(OutboxEvent.dedupe_key == dedupe_key)):
        return False
    session.add(OutboxEvent(id=f"evt_{uuid.uuid4().hex}", type=event_type, data=data, dedupe_key=dedupe_key,
                            subject=subject_of(data)))
    session.flush()
    return True


def record_many(session: Session, events: list[tuple[str, dict, str]]) -> int:
    """`record` for many (event_type, data, dedupe_key) at once: one look-up of the keys owed
    already, one flush; returns how many were recorded."""
    keys = [key for _, _, key in events]
    owed = set(session.scalars(select(OutboxEvent.dedupe_key).where(OutboxEvent.dedupe_key.in_(keys)))) if keys else set()
    added = 0
    for event_type, data, key in events:
        if key in owed:
            continue
        owed.add(key)
        session.add(OutboxEvent(id=f"evt_{uuid.uuid4().hex}", type=event_type, data=data, dedupe_key=key, subject=subject_of(data)))
        added += 1
    session.flush()
    return added


def record_new(session: Session, event_type: str, data: dict) -> None:
    """Owe the CRM an event for a fact that is new by construction (no dedupe look-up):
    the caller's own state change in the same transaction is what keeps it from repeating."""
    event_id = f"evt_{uuid.uuid4().hex}"
    session.add(OutboxEvent(id=event_id, type=event_type, data=data, dedupe_key=f"{event_type}:{event_id}",
                            subject=subject_of(data)))


def envelope(event: OutboxEvent) -> dict:
    """The wire body: the same {type, timestamp, data} shape as inbound webhooks."""
    ts = event.created_at.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")
    return {"type": event.type, "timestamp": ts, "data": event.data}


def claim_due(session: Session, token: str, limit: int, lease: timedelta = LEASE) -> list[OutboxEvent]:
    """Lease up to `limit` due events to `token`, oldest first, skipping every event whose record
    has an earlier event still pending and not due (waiting for a retry) or leased (being sent)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK_KEY})
    else:
        # SQLite: take the write lock before reading, so two processes cannot read the same free events.
        session.execute(update(OutboxEvent).where(false()).values(lease_token=OutboxEvent.lease_token))
    now = utcnow()
    earlier = aliased(OutboxEvent)
    same_record = or_(earlier.subject == OutboxEvent.subject,
                      and_(earlier.subject.is_(None), OutboxEvent.subject.is_(None)))  # rows from before `subject`
    held_back = exists().where(same_record, earlier.seq < OutboxEvent.seq, earlier.status == "pending",
                               or_(earlier.next_attempt_at > now, earlier.leased_until >= now))
    events = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.status == "pending", OutboxEvent.next_attempt_at <= now,
               or_(OutboxEvent.leased_until.is_(None), OutboxEvent.leased_until < now), ~held_back)
        .order_by(OutboxEvent.seq)
        .limit(limit)
    ).all()
    if events:
        session.execute(update(OutboxEvent).where(OutboxEvent.seq.in_([e.seq for e in events]))
                        .values(leased_until=now + lease, lease_token=token).execution_options(synchronize_session=False))
        for event in events:
            event.leased_until, event.lease_token = now + lease, token
    return events


def deliver_due(db, connector, settings, limit: int = 100) -> dict[str, int]:
    """Send due events, in order per record; returns counts per outcome. Safe to call from several workers:
    no transaction or row lock is held while the CRM is called."""
    counts = {"delivered": 0, "retry": 0, "dead": 0}
    if connector is None:
        return counts
    token = uuid.uuid4().hex
    with db.session() as session:
        events = claim_due(session, token, limit)
    if not events:
        return counts
    # Stop early enough that one more call cannot outlast the lease (another worker would take over).
    stop_at = events[0].leased_until - timedelta(seconds=2 * float(getattr(connector, "timeout", 10.0)) + 5)
    waiting: set[str | None] = set()  # records whose earlier event failed in this pass
    try:
        for event in events:
            if event.subject in waiting:
                continue
            if utcnow() > stop_at:
                break
            outcome = _send(connector, event)
            with db.session() as session:
                status = _record_result(session, event, token, outcome, settings)
            if status:
                counts[status] += 1
            if status == "retry":
                waiting.add(event.subject)
    except Exception:
        _release(db, token)
        raise
    _release(db, token)
    return counts


def _send(connector, event: OutboxEvent) -> Exception | None:
    """One call on the CRM; returns the error (None when delivered)."""
    try:
        connector.deliver(event.id, envelope(event))
    except Exception as exc:  # noqa: BLE001 — every outcome is recorded on the event
        return exc
    return None


def _record_result(session: Session, sent: OutboxEvent, token: str, error: Exception | None, settings) -> str | None:
    """Record one call's outcome on the event, unless its lease was lost meanwhile; returns the outcome."""
    event = session.scalar(select(OutboxEvent).where(OutboxEvent.seq == sent.seq, OutboxEvent.lease_token == token))
    if event is None:
        log.warning("outbound %s %s: lease lost while sending; another worker owns it now", sent.type, sent.id)
        return None
    event.attempts += 1
    event.leased_until = event.lease_token = None
    now = utcnow()
    if error is None:
        event.status, event.delivered_at, event.last_error = "delivered", now, None
        return "delivered"
    if not isinstance(error, RetryableError):  # a permanent refusal: retrying will not help
        event.status = "dead"
        event.last_error = f"{type(error).__name__}: {error}"[:4000]
        log.warning("outbound %s %s refused, now a dead letter: %s", event.type, event.id, error)
        return "dead"
    event.last_error = str(error)[:4000]
    if (now - event.window_started_at).total_seconds() >= settings.outbox_retry_window_seconds:
        event.status = "dead"
        log.warning("outbound %s %s is a dead letter after %d attempts: %s", event.type, event.id, event.attempts, error)
        return "dead"
    delay = retry_delay(error, event.attempts, settings.retry_max_delay_seconds)
    event.next_attempt_at = now + timedelta(seconds=delay)
    log.info("outbound %s %s failed (attempt %d), retry in %.0fs: %s", event.type, event.id, event.attempts, delay, error)
    return "retry"


def retry_delay(error: RetryableError, attempts: int, max_delay: int) -> float:
    """The remote side's Retry-After when it gave one (at least 1 s, never more than `max_delay`); else the backoff."""
    if error.retry_after is not None:
        return max(1.0, min(float(error.retry_after), float(max_delay)))
    return backoff_seconds(attempts, max_delay)


def _release(db, token: str) -> None:
    """Give back the leases of the events this pass did not get to (they are sent by the next pass)."""
    with db.session() as session:
        session.execute(update(OutboxEvent).where(OutboxEvent.lease_token == token)
                        .values(leased_until=None, lease_token=None).execution_options(synchronize_session=False))


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
