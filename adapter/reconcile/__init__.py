"""Reconciliation: a CRM export of accounts and contacts against Keycloak.

    export = read_files(["crm.csv"])                 # export.py: shapes, columns, errors by row and field
    result = reconcile(kb, export, dry_run=True)     # drift.py (+ realm.py: Keycloak read in pages)
    result = reconcile(kb, export, dry_run=False)    # converge.py: one synthetic upsert per drifted record

A run that is not a dry run stores the drifted records' events through the inbox (the
worker applies them like webhooks) and owes the CRM one `reconcile.completed` with the
counts. Each run is kept as a `ReconcileRun` row; the operator API queues a run as a
`reconcile` job (`queue_run`) that the worker executes (`run_queued`).
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import func, select

from .. import jobs, outbox, tasks
from ..db import utcnow
from ..models import Job, ReconcileRun
from . import converge
from .drift import KINDS, DriftFinder
from .export import Export, ExportError, iso, read_export, read_files
from .realm import RealmReader

log = logging.getLogger(__name__)

RECONCILE_COMPLETED = "reconcile.completed"
JOB_KIND = "reconcile"

__all__ = ["KINDS", "Export", "ExportError", "RECONCILE_COMPLETED", "queue_run", "read_export", "read_files",
           "reconcile", "run_queued", "run_status"]


def _naive(dt: datetime | None) -> datetime | None:
    return dt.astimezone(timezone.utc).replace(tzinfo=None) if dt else None


def reconcile(kb, export: Export, dry_run: bool, source: str = "cli", run_id: str | None = None,
              progress: Callable[[str, int, int | None], None] | None = None, label: str | None = None) -> dict:
    """Compare the export with Keycloak and, unless `dry_run`, store an event per drifted record.

    Returns the run's result (drift counts and items, events stored). Keycloak failures
    raise RetryableError/PermanentError; nothing is stored before the whole drift is known.
    """
    run_id = run_id or _new_run(kb, source, dry_run, export, label)
    with kb.db.session() as session:
        run = session.get(ReconcileRun, run_id)
        run.status, run.started_at = "running", utcnow()
    try:
        return _reconcile(kb, export, dry_run, source, run_id, progress)
    except BaseException as exc:
        _failed(kb, run_id, f"{type(exc).__name__}: {exc}")
        raise


def _reconcile(kb, export: Export, dry_run: bool, source: str, run_id: str, progress) -> dict:
    report = DriftFinder(kb, export, RealmReader(kb, progress)).run()
    result = {"run_id": run_id, "dry_run": dry_run, "source": source,
              "exported_at": iso(export.exported_at) if export.exported_at else None,
              "records": {"accounts": len(export.accounts), "contacts": len(export.contacts)},
              "drift": report.as_dict()}
    event_ids: list[str] = []
    if not dry_run:
        stored = converge.store(kb, export, report.accounts_to_converge, report.contacts_to_converge,
                                (lambda done, total: progress("events", done, total)) if progress else None)
        event_ids = stored.pop("webhook_ids")
        result["events"] = stored
    with kb.db.session() as session:
        run = session.get(ReconcileRun, run_id)
        run.status, run.finished_at, run.result, run.error = "completed", utcnow(), result, None
        run.event_ids = event_ids or None
        run.export_text = None  # done with it; the result stays
        if not dry_run:
            outbox.record(session, RECONCILE_COMPLETED, summary(result), f"{RECONCILE_COMPLETED}:{run_id}")
    log.info("reconcile run %s (%s%s): %d drift, %s", run_id, source, ", dry run" if dry_run else "",
             report.total, result.get("events", "nothing stored"))
    return result


def summary(result: dict) -> dict:
    """The `reconcile.completed` body: what was compared, the drift per kind, what was stored."""
    return {"run_id": result["run_id"], "source": result["source"], "exported_at": result["exported_at"],
            "records": result["records"], "drift": result["drift"]["counts"], "total_drift": result["drift"]["total"],
            "events_stored": result["events"]["stored"], "events_already_stored": result["events"]["duplicate"]}


def _new_run(kb, source: str, dry_run: bool, export: Export, label: str | None) -> str:
    run_id = f"run_{uuid.uuid4().hex}"
    with kb.db.session() as session:
        session.add(ReconcileRun(id=run_id, source=source, dry_run=dry_run, status="queued", export_label=label,
                                 exported_at=_naive(export.exported_at)))
    return run_id


# -- runs the worker executes (operator API) ------------------------------------------------


def queue_run(kb, text: str, label: str, dry_run: bool, exported_at: datetime | None = None) -> str:
    """Check the export now (raises ExportError), then keep it and queue a `reconcile` job; returns the run id."""
    export = read_export([(label, text)], exported_at=exported_at)
    run_id = f"run_{uuid.uuid4().hex}"
    with kb.db.session() as session:
        session.add(ReconcileRun(id=run_id, source="api", dry_run=dry_run, status="queued", export_label=label,
                                 export_text=text, exported_at=_naive(export.exported_at)))
        session.flush()
        tasks.enqueue(session, JOB_KIND, run_id, {"exported_at": iso(exported_at) if exported_at else None})
    return run_id


@tasks.job(JOB_KIND, ordering_key=lambda payload: "reconcile")
def run_queued(kb, job) -> str:
    """A reconciliation asked through the operator API (job.ref is its run id): run it; one at a time."""
    from .export import parse_time

    with kb.db.session() as session:
        run = session.get(ReconcileRun, job.ref)
        if run is None:
            raise jobs.PermanentError(f"Reconcile run {job.ref} is missing from storage")
        if run.status == "completed":
            return "already completed"
        text, label, dry_run = run.export_text, run.export_label, run.dry_run
    exported_at = (job.payload or {}).get("exported_at")
    try:
        export = read_export([(label or "export", text or "")], exported_at=parse_time(exported_at) if exported_at else None)
        result = reconcile(kb, export, dry_run, "api", run_id=job.ref)
    except ExportError as exc:
        _failed(kb, job.ref, str(exc))
        raise jobs.PermanentError(str(exc)) from None
    except jobs.PermanentError as exc:
        _failed(kb, job.ref, str(exc))
        raise
    except jobs.RetryableError as exc:
        with kb.db.session() as session:
            run = session.get(ReconcileRun, job.ref)
            run.status, run.error = "queued", f"retrying: {exc}"
        raise
    return f"{result['drift']['total']} drift"


def _failed(kb, run_id: str, error: str) -> None:
    with kb.db.session() as session:
        run = session.get(ReconcileRun, run_id)
        run.status, run.error, run.finished_at = "failed", error[:4000], utcnow()


def run_status(kb, run_id: str, limit: int = 100) -> dict | None:
    """A run as the operator sees it: status, result (at most `limit` items per drift kind) and how
    many of the events it stored the worker has applied so far."""
    with kb.db.session() as session:
        run = session.get(ReconcileRun, run_id)
        if run is None:
            return None
        body = {"run_id": run.id, "status": run.status, "dry_run": run.dry_run, "source": run.source,
                "created_at": outbox.iso(run.created_at), "finished_at": outbox.iso(run.finished_at), "error": run.error}
        result = dict(run.result or {})
        if result.get("drift"):
            drift = dict(result["drift"])
            drift["items"] = {kind: items[:limit] for kind, items in drift.get("items", {}).items()}
            result["drift"] = drift
        body.update({k: v for k, v in result.items() if k not in body})
        if run.event_ids:
            body["applied"] = applied(session, run.event_ids)
    return body


def applied(session, event_ids: list[str]) -> dict[str, int]:
    """How many of these stored events the worker has done, has still to do, or gave up on."""
    counts = {"total": len(event_ids), "done": 0, "waiting": 0, "dead": 0}
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start:start + 500]
        for status, n in session.execute(select(Job.status, func.count()).where(
                Job.kind == "inbound_event", Job.ref.in_(chunk)).group_by(Job.status)):
            key = status if status in ("done", "dead") else "waiting"
            counts[key] += n
    return counts
