"""invitations.batch_requested: up to 10,000 invitations, each handled as its single form.

The batch becomes one job per item (so items are retried, and dead-lettered, one by one);
progress and per-item results are read from `batch_items`; when the last item is settled
the CRM receives `invitation.batch_completed` with the counts per outcome.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from .. import outbox, tasks
from ..db import utcnow
from ..errors import PermanentError
from ..events import INVITATION_BATCH_COMPLETED, BatchRequestedSchema, ContactInviteSchema, LeadInviteSchema
from ..models import Batch, BatchItem, Invitation
from . import audit, invitations


@tasks.crm_event("invitations.batch_requested", schema=BatchRequestedSchema, ordering_key=lambda d: f"batch:{d['batch_id']}")
def handle_batch_requested(kb, data: dict, cause: str, crm_time=None) -> str:
    """Record the batch and queue its items; a batch_id seen before queues nothing."""
    batch_id = data["batch_id"]
    with kb.db.session() as session:
        if session.get(Batch, batch_id) is not None:
            return "duplicate_batch"
        session.add(Batch(batch_id=batch_id, total=len(data["items"]), webhook_id=cause))
        for idx, item in enumerate(data["items"]):
            crm_id = item.get("contact_id") or item.get("lead_id")
            session.add(BatchItem(batch_id=batch_id, idx=idx, kind=item["kind"], crm_id=crm_id, email=item["email"]))
            raw = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in item.items()}
            if crm_time is not None:  # each item is its record's state as of the batch's time
                raw["crm_time"] = crm_time.isoformat()
            tasks.enqueue(session, "batch_item", f"{batch_id}:{idx}", payload=raw)
        audit.record(session, "batch.queued", f"batch:{batch_id}", cause, {"items": len(data["items"])})
    return f"queued {len(data['items'])}"


def _item_record(item: dict) -> str:
    """An item runs in its CRM record's order (with that contact's or lead's other events)."""
    return f"contact:{item['contact_id']}" if item.get("kind") == "contact" else f"lead:{item.get('lead_id')}"


def _item_dead(kb, job, error: Exception) -> None:
    """An item that kept failing is settled as failed, so the batch still completes."""
    batch_id, idx = job.ref.rsplit(":", 1)
    settle_item(kb, batch_id, int(idx), "failed", f"{type(error).__name__}: {error}")


@tasks.job("batch_item", ordering_key=_item_record, on_dead=_item_dead)
def run_batch_item(kb, job) -> str:
    """Invite one item; a refusal is the item's outcome (the batch goes on), a passing failure retries."""
    batch_id, idx = job.ref.rsplit(":", 1)
    item = dict(job.payload)
    kind = item.pop("kind")
    crm_time = item.pop("crm_time", None)
    crm_time = datetime.fromisoformat(crm_time) if crm_time else None
    schema = ContactInviteSchema() if kind == "contact" else LeadInviteSchema()
    data = schema.load(item)
    cause = f"batch {batch_id} item {idx}"
    try:
        outcome = (invitations.invite_contact if kind == "contact" else invitations.invite_lead)(kb, data, cause, crm_time=crm_time)
    except PermanentError as exc:
        settle_item(kb, batch_id, int(idx), "failed", str(exc))
        return "failed"
    if outcome == "pending" and job.attempts > 1 and _sent_since(kb, kind, data.get(f"{kind}_id"), job.created_at):
        # An earlier run of this very job sent it and died before settling the item (jobs of one
        # record run one at a time, so no other request sent it since this item was queued).
        outcome = "sent"
    settle_item(kb, batch_id, int(idx), outcome)
    return outcome


def _sent_since(kb, kind: str, crm_id: str, since) -> bool:
    with kb.db.session() as session:
        sent_at = session.scalar(select(Invitation.sent_at).where(Invitation.kind == kind, Invitation.crm_id == crm_id))
    return sent_at is not None and sent_at >= since


def settle_item(kb, batch_id: str, idx: int, outcome: str, error: str | None = None) -> None:
    """Record an item's outcome; the last one completes the batch (once)."""
    with kb.db.session() as session:
        # Items settle concurrently (several workers or worker threads): the batch row's lock makes
        # each count see the others' outcomes, so exactly one of them completes the batch.
        batch = session.get(Batch, batch_id, with_for_update=True)
        item = session.get(BatchItem, (batch_id, idx))
        item.outcome, item.error, item.finished_at = outcome, error, utcnow()
        session.flush()
        waiting = session.scalar(select(func.count()).select_from(BatchItem).where(
            BatchItem.batch_id == batch_id, BatchItem.outcome.is_(None)))
        if waiting == 0 and batch.completed_at is None:
            batch.completed_at = utcnow()
            outbox.record(session, INVITATION_BATCH_COMPLETED, {"batch_id": batch_id, "counts": counts(session, batch_id)},
                          f"{INVITATION_BATCH_COMPLETED}:{batch_id}")


def counts(session, batch_id: str) -> dict[str, int]:
    rows = session.execute(select(BatchItem.outcome, func.count()).where(BatchItem.batch_id == batch_id).group_by(BatchItem.outcome))
    return {(outcome or "waiting"): n for outcome, n in rows}


def batch_status(kb, batch_id: str, offset: int = 0, limit: int = 1000) -> dict | None:
    """Progress, counts per outcome and a page of per-item results."""
    with kb.db.session() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            return None
        per_outcome = counts(session, batch_id)
        items = session.scalars(select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.idx)
                                .offset(offset).limit(limit)).all()
        done = batch.total - per_outcome.get("waiting", 0)
        return {"batch_id": batch_id, "total": batch.total, "done": done,
                "progress": round(done / batch.total, 4) if batch.total else 1.0,
                "status": "completed" if batch.completed_at else "running", "counts": per_outcome,
                "created_at": outbox.iso(batch.created_at), "completed_at": outbox.iso(batch.completed_at),
                "items": [{"index": i.idx, "kind": i.kind, "id": i.crm_id, "email": i.email,
                           "outcome": i.outcome, "error": i.error} for i in items],
                "items_offset": offset}
