"""The desired state of CRM records: the newest state the CRM sent wins.

Per CRM record (an account, a contact, a lead) Keybridge keeps the latest state the CRM
sent and the CRM time it is from: the envelope `timestamp`, i.e. when the record changed
in the CRM, not when the webhook arrived.

- An event older than the stored state changes nothing; it is audited as `state.stale`
  (and acknowledged like any other, so the CRM does not retry it).
- An event with the *same* timestamp as the stored state is applied: CRMs stamp changes to
  the second and send one record's changes in order, so of two changes within one second
  the one received later is the newer. The same event applied twice changes nothing.
- Fields an event leaves out (None: "not given") keep their stored value.

Handlers store the state first, then converge Keycloak to it (`converge_*` in
accounts.py and contacts.py); the sweep converges every record again from here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import outbox, tasks
from ..db import utcnow
from ..errors import RetryableError
from ..models import CrmRecord, Cursor
from . import audit

KINDS = ("account", "contact", "lead")


@dataclass(frozen=True)
class Desired:
    """A record's desired state as stored: what, from when (CRM time), taken in when (local)."""

    kind: str
    crm_id: str
    state: dict
    crm_time: datetime
    updated_at: datetime


def naive_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def take(kb, kind: str, crm_id: str, state: dict, crm_time: datetime | None, cause: str) -> bool:
    """Store `state` (JSON-ready) as the record's desired state unless the record holds a newer
    one; returns whether it was taken (False: stale, audited). `crm_time` None (work that
    carries no CRM time) takes nothing and answers True."""
    if crm_time is None:
        return True
    when = naive_utc(crm_time)
    given = {k: v for k, v in state.items() if v is not None}
    try:
        with kb.db.session() as session:
            row = session.get(CrmRecord, (kind, crm_id), with_for_update=True)
            if row is not None and row.crm_time > when:
                audit.record(session, "state.stale", f"{kind}:{crm_id}", cause,
                             {"event_time": outbox.iso(when), "newest_time": outbox.iso(row.crm_time),
                              "newest_from": row.source})
                return False
            if row is None:
                session.add(CrmRecord(kind=kind, crm_id=crm_id, state=given, crm_time=when, source=cause[:300],
                                      updated_at=utcnow()))
            else:
                merged = {**(row.state or {}), **given}
                if merged != row.state or row.crm_time != when:
                    row.state, row.crm_time, row.source, row.updated_at = merged, when, cause[:300], utcnow()
    except IntegrityError as exc:  # another worker stored the record's first state at the same moment
        raise RetryableError(f"{kind} {crm_id} was stored concurrently; retrying to compare with it") from exc
    return True


def take_many(session, kind: str, states: dict[str, dict], crm_time: datetime | None, cause: str) -> set[str]:
    """`take` for many records of one kind at once, in the caller's transaction (one read of the
    stored rows, locked in id order); returns the ids whose state was taken (the others are stale,
    audited). A concurrent first store of one of them raises IntegrityError at the caller's flush."""
    if crm_time is None:
        return set(states)
    when = naive_utc(crm_time)
    rows = {r.crm_id: r for r in session.scalars(
        select(CrmRecord).where(CrmRecord.kind == kind, CrmRecord.crm_id.in_(sorted(states)))
        .order_by(CrmRecord.crm_id).with_for_update())}
    taken = set()
    for crm_id, state in states.items():
        row, given = rows.get(crm_id), {k: v for k, v in state.items() if v is not None}
        if row is not None and row.crm_time > when:
            audit.record(session, "state.stale", f"{kind}:{crm_id}", cause,
                         {"event_time": outbox.iso(when), "newest_time": outbox.iso(row.crm_time), "newest_from": row.source})
            continue
        if row is None:
            session.add(CrmRecord(kind=kind, crm_id=crm_id, state=given, crm_time=when, source=cause[:300], updated_at=utcnow()))
        else:
            merged = {**(row.state or {}), **given}
            if merged != row.state or row.crm_time != when:
                row.state, row.crm_time, row.source, row.updated_at = merged, when, cause[:300], utcnow()
        taken.add(crm_id)
    return taken


def stored(session, kind: str, crm_ids) -> dict[str, Desired]:
    """The stored desired state of these records (those the CRM ever sent), read in one query."""
    return {r.crm_id: Desired(r.kind, r.crm_id, dict(r.state or {}), r.crm_time, r.updated_at) for r in session.scalars(
        select(CrmRecord).where(CrmRecord.kind == kind, CrmRecord.crm_id.in_(sorted(set(crm_ids)))))}


def desired(kb, kind: str, crm_id: str) -> Desired | None:
    """The record's stored desired state, or None when the CRM never sent one."""
    with kb.db.session() as session:
        row = session.get(CrmRecord, (kind, crm_id))
        if row is None:
            return None
        return Desired(row.kind, row.crm_id, dict(row.state or {}), row.crm_time, row.updated_at)


def contact_left(kb, contact_id: str | None) -> bool:
    """Whether the CRM's newest word on this contact is that they left."""
    if not contact_id:
        return False
    record = desired(kb, "contact", contact_id)
    return record is not None and record.state.get("status") == "left"


# -- the periodic sweep ---------------------------------------------------------------------

SWEEP_CURSOR = "converge_sweep"


def schedule_sweep(kb) -> int:
    """Queue a sweep when KEYBRIDGE_CONVERGE_SWEEP_SECONDS passed since the last one (the first
    one interval after the first start); once per interval, however many workers ask."""
    interval = max(1, kb.settings.converge_sweep_seconds)
    now = int(time.time())
    try:
        with kb.db.session() as session:
            cursor = session.get(Cursor, SWEEP_CURSOR, with_for_update=True)
            if cursor is None:
                session.add(Cursor(name=SWEEP_CURSOR, position={"last": now}))
                return 0
            last = int(cursor.position.get("last", 0))
            if now < last + interval:
                return 0
            cursor.position = {"last": now}
            return int(tasks.enqueue(session, "converge_sweep", f"sweep@{now}"))
    except IntegrityError:  # workers starting together: another one made the cursor a moment ago
        return 0


@tasks.job("converge_sweep")
def run_sweep(kb, job) -> str:
    """Queue one convergence per account and contact, each in its record's order (after its
    pending events); a record converged by this sweep already is not queued twice."""
    queued = 0
    last = ("", "")
    while True:
        with kb.db.session() as session:
            page = session.execute(
                select(CrmRecord.kind, CrmRecord.crm_id).where(CrmRecord.kind.in_(("account", "contact")))
                .where((CrmRecord.kind > last[0]) | ((CrmRecord.kind == last[0]) & (CrmRecord.crm_id > last[1])))
                .order_by(CrmRecord.kind, CrmRecord.crm_id).limit(500)).all()
            for kind, crm_id in page:
                queued += tasks.enqueue(session, "converge_record", f"{kind}:{crm_id}@{job.ref}",
                                        payload={"kind": kind, "crm_id": crm_id})
        if len(page) < 500:
            return f"queued {queued}"
        last = tuple(page[-1])
