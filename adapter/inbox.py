"""The inbox: every inbound event (CRM webhook, vendor dialect or operator decision) is
stored with its job in one transaction before anyone is told it was accepted.

Storing one event costs one statement on PostgreSQL (the event and its job in one
`INSERT ... ON CONFLICT DO NOTHING` pair joined by a data-modifying CTE, committed as it
runs) and two in one transaction on SQLite; a webhook-id seen before is skipped inside the
statement, so a duplicate, even one arriving at the same moment, stores nothing twice.
"""
from __future__ import annotations

import functools
import json
import logging
import uuid
from datetime import datetime, timezone
from typing import NamedTuple

from sqlalchemy import Insert, Select, bindparam, func, select

from . import jobs
from .db import insert_new, utcnow
from .handlers import TASKS
from .models import InboundEvent, Job
from .tasks import INBOUND_EVENT

log = logging.getLogger(__name__)


def store_event(db, webhook_id: str, source: str, envelope: dict) -> str:
    """Store the event and its job; returns 'accepted' or 'duplicate' (same webhook-id seen before).

    The job is ordered by the event type's ordering key (its CRM record), so one record's
    events run one at a time in the order they arrived. `envelope["data"]` has passed the
    type's schema (the webhook checks it first). When this returns, both rows are committed.
    """
    job = _inbound_job(webhook_id, envelope)
    event = _event_row(webhook_id, source, envelope, job["created_at"])
    statements = _statements(db.engine.dialect.name)
    if statements.event_and_job is not None:
        added = _store_in_one_statement(db, statements.event_and_job, event, job)
    else:
        with db.engine.begin() as connection:
            added = _add(connection, statements, event, job)
    if not added:
        return "duplicate"
    log.info("accepted %s event %s type=%s", source, webhook_id, envelope["type"])
    return "accepted"


def store_events(db, source: str, rows: list[tuple[str, dict, str]]) -> list[str]:
    """Store several events (id, envelope, job kind) of one delivery in one transaction.

    A CRM event gets its `inbound_event` job exactly as `store_event` gives it; another job
    kind (a vendor's thin event waiting to be read, e.g. `vendor_read`) is queued as that
    kind declares, with the envelope's data as payload. Returns 'accepted' or 'duplicate'
    per row; a failure stores none of them.
    """
    statements = _statements(db.engine.dialect.name)
    statuses = []
    with db.session() as session:
        connection = session.connection()
        for event_id, envelope, job_kind in rows:
            if job_kind == INBOUND_EVENT:
                added = _add(connection, statements, _event_row(event_id, source, envelope), _inbound_job(event_id, envelope))
            else:
                added = _add(connection, statements, _event_row(event_id, source, envelope), None)
                if added:
                    TASKS.enqueue(session, job_kind, event_id, payload=envelope["data"])
            statuses.append("accepted" if added else "duplicate")
    for (event_id, envelope, _), status in zip(rows, statuses):
        if status == "accepted":
            log.info("accepted %s event %s type=%s", source, event_id, envelope["type"])
    return statuses


def _store_in_one_statement(db, statement, event: dict, job: dict) -> bool:
    """PostgreSQL: event and job in one statement, committed as it runs (autocommit): one round trip.

    Run on the driver's cursor with the SQL compiled once (SQLAlchemy's execution layer would
    cost as much CPU as the driver itself here). The connection is not pinged first (that would
    be a second round trip): when it turns out dead (the database restarted), the statement runs
    once more on a new one. Running it twice is safe: a first run that did commit makes the
    second find the event and store nothing.
    """
    engine = db.autocommit_engine
    sql = _driver_sql(engine.dialect, statement)
    params = {**{f"e_{k}": v for k, v in event.items()}, **{f"j_{k}": v for k, v in job.items()}}
    params["e_payload"], params["j_payload"] = json.dumps(event["payload"]), json.dumps(job["payload"])
    for attempt in (1, 2):
        connection = engine.raw_connection()
        cursor = None
        try:
            cursor = connection.driver_connection.cursor()
            cursor.execute(sql, params)
            return bool(cursor.fetchone()[0])
        except Exception as exc:
            if attempt == 2 or not engine.dialect.is_disconnect(exc, connection.driver_connection, cursor):
                raise
            connection.invalidate()
            log.warning("the database connection was closed (database restarted?); storing webhook %s again on a new one", event["id"])
        finally:
            if cursor is not None and not cursor.closed:
                cursor.close()
            connection.close()
    raise AssertionError("unreachable")


@functools.cache
def _driver_sql(dialect, statement) -> str:
    """`statement` as the driver's SQL text with named parameters (%(name)s), compiled once."""
    return str(statement.compile(dialect=dialect))


def _event_row(event_id: str, source: str, envelope: dict, received_at=None) -> dict:
    return {"id": event_id, "source": source, "type": envelope["type"], "payload": envelope, "received_at": received_at or utcnow()}


def _inbound_job(webhook_id: str, envelope: dict) -> dict:
    task = TASKS.event(envelope["type"])
    return jobs.job_values(INBOUND_EVENT, webhook_id, {"type": envelope["type"]},
                           ordering_key=task.key_for(envelope["data"]) if task else None)


def _add(connection, statements: "_Statements", event: dict, job: dict | None) -> bool:
    """The event, and its job (if given) only if the event is new, in the caller's transaction; whether it was new."""
    if connection.execute(statements.event, event).first() is None:
        return False
    if job is not None:
        connection.execute(statements.job, job)
    return True


class _Statements(NamedTuple):
    event: Insert  # INSERT INTO inbound_events ... ON CONFLICT DO NOTHING RETURNING id
    job: Insert  # INSERT INTO jobs ... ON CONFLICT DO NOTHING
    event_and_job: Select | None  # PostgreSQL: both in one statement


@functools.cache
def _statements(dialect: str) -> _Statements:
    """Built once per dialect and reused, so each request skips building and compiling SQL.

    On PostgreSQL `event_and_job` stores both rows in one statement:

        WITH new_event AS (INSERT INTO inbound_events ... ON CONFLICT DO NOTHING RETURNING id),
             new_job AS (INSERT INTO jobs SELECT ... FROM new_event ON CONFLICT DO NOTHING RETURNING id)
        SELECT count(*) FROM new_event

    The job's row exists only if the event's does (it selects from new_event); a concurrent
    transaction inserting the same webhook-id makes this one wait for it and then skip both.
    """
    events, job_table = InboundEvent.__table__, Job.__table__
    event_columns = ("id", "source", "type", "payload", "received_at")
    job_columns = tuple(jobs.job_values("k", "r"))
    event = insert_new(dialect, events).returning(events.c.id)
    job = insert_new(dialect, job_table)
    if dialect != "postgresql":
        return _Statements(event, job, None)
    # each value typed as its column (rendered as a cast): JSON goes in as JSON, NULLs have a type
    new_event = insert_new(dialect, events).values({c: bindparam(f"e_{c}", type_=events.c[c].type) for c in event_columns}) \
        .returning(events.c.id).cte("new_event")
    chosen = select(*(bindparam(f"j_{c}", type_=job_table.c[c].type).label(c) for c in job_columns)).select_from(new_event)
    new_job = insert_new(dialect, job_table).from_select(job_columns, chosen).returning(job_table.c.id).cte("new_job")
    return _Statements(event, job, select(func.count()).select_from(new_event).add_cte(new_job))


def store_operator_event(db, event_type: str, data: dict, operator: str) -> str:
    """An operator's action (e.g. a registration decision), stored exactly like a CRM webhook."""
    webhook_id = f"op_{uuid.uuid4().hex}"
    envelope = {"type": event_type, "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                "data": data, "operator": operator}
    store_event(db, webhook_id, "operator", envelope)
    return webhook_id
