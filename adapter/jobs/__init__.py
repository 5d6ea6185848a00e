"""The durable job queue: enqueue inside the caller's transaction, claim, finish, retry, dead-letter.

Works on SQLite (one worker) and PostgreSQL (several workers: FOR UPDATE SKIP LOCKED).
A job's (kind, ref) is unique, so enqueuing the same work twice does nothing.

A claimed job is leased for a short time (`LEASE`) that the running worker renews
(`keep_leased`, every third of the lease), so a long job is never taken by a second
worker, and a job whose worker died is taken again soon. A claim of a job whose lease
ran out while it was running counts a crash (`Job.crashes`): a job that crashed the
worker `max_crashes` times is not run again but made a dead letter (`bury_crashed`).
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import case, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from ..db import insert_new, utcnow
from ..logs import current_request_id
from ..errors import PermanentError, RetryableError  # noqa: F401  (re-exported: the queue's callers import them here)
from ..models import Job

log = logging.getLogger(__name__)


class CrashedWorker(PermanentError):
    """The job's worker died while running it, `max_crashes` times: it is not run again."""


LEASE = timedelta(seconds=30)
MAX_CRASHES = 3


def backoff_seconds(attempts: int, max_delay: int) -> float:
    """2, 4, 8, ... seconds, capped at `max_delay`."""
    return float(min(max_delay, 2 ** max(1, attempts)))


def enqueue(session: Session, kind: str, ref: str, payload: dict | None = None, run_at=None,
            ordering_key: str | None = None) -> bool:
    """Add a job unless (kind, ref) exists already; returns whether it was added.

    Jobs sharing an `ordering_key` run strictly one after another, in the order enqueued,
    even when an earlier one is waiting for a retry.

    Runs inside the caller's transaction: one `INSERT ... ON CONFLICT DO NOTHING`, so a
    duplicate (even one a concurrent transaction is inserting) neither raises nor undoes it.
    """
    table = Job.__table__
    added = session.execute(
        insert_new(session, table).returning(table.c.id), job_values(kind, ref, payload, run_at, ordering_key)
    ).first()
    return added is not None


def job_values(kind: str, ref: str, payload: dict | None = None, run_at=None, ordering_key: str | None = None) -> dict:
    """The columns of a new queued job (for `enqueue`, or a caller that inserts it in its own statement)."""
    now = utcnow()
    # request_id: the web request (or the job) that queued it, so one id runs through the logs
    return {"kind": kind, "ref": ref, "payload": payload or {}, "run_at": run_at or now, "created_at": now,
            "status": "queued", "attempts": 0, "ordering_key": ordering_key, "request_id": current_request_id()}


def claim(session: Session, lease: timedelta = LEASE, max_crashes: int = MAX_CRASHES) -> Job | None:
    """Take the oldest due job (or one whose worker died) and lease it; None when idle.

    A job whose worker died for the `max_crashes`-th time is left to `bury_crashed`.
    """
    for _ in range(3):  # another claimer may take the same candidate first (SQLite has no SKIP LOCKED): try the next
        job = _claim_one(session, lease, max_crashes)
        if job is not False:
            return job
    return None


def _claim_one(session: Session, lease: timedelta, max_crashes: int) -> Job | None | bool:
    """One try of `claim`: the job, None when nothing is due, False when another claimer won the race."""
    now = utcnow()
    crashed = (Job.status == "running") & (Job.locked_until < now)
    due = or_(
        (Job.status == "queued") & (Job.run_at <= now),
        crashed & (func.coalesce(Job.crashes, 0) + 1 < max_crashes),
    )
    earlier = aliased(Job)
    blocked = exists().where(earlier.ordering_key == Job.ordering_key, earlier.id < Job.id,
                             earlier.status.in_(("queued", "running")))
    candidate = session.scalars(
        select(Job).where(due, ~blocked).order_by(Job.run_at, Job.id).limit(1).with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).first()
    if candidate is None:
        return None
    worker_died = candidate.status == "running"  # read before the update below refreshes it
    taken = session.execute(
        update(Job)
        .where(Job.id == candidate.id, Job.status == candidate.status, Job.attempts == candidate.attempts)
        .values(status="running", locked_until=now + lease, attempts=Job.attempts + 1,
                crashes=case((Job.status == "running", func.coalesce(Job.crashes, 0) + 1), else_=Job.crashes))
    ).rowcount
    if not taken:
        return False
    session.refresh(candidate)
    if worker_died:
        log.warning("job %s %s/%s is run again after its worker died (crash %d; a dead letter at %d)",
                    candidate.id, candidate.kind, candidate.ref, candidate.crashes, max_crashes)
    return candidate


def bury_crashed(session: Session, max_crashes: int = MAX_CRASHES) -> list[Job]:
    """Make dead letters of the jobs whose worker died while running them for the `max_crashes`-th time;
    returns them (the caller runs what their task does with a dead job)."""
    now = utcnow()
    lost = session.scalars(
        select(Job).where(Job.status == "running", Job.locked_until < now,
                          func.coalesce(Job.crashes, 0) + 1 >= max_crashes)
        .order_by(Job.id).with_for_update(skip_locked=True)
    ).all()
    for job in lost:
        job.crashes = (job.crashes or 0) + 1
        job.status, job.finished_at, job.locked_until = "dead", now, None
        job.last_error = (
            f"Crashed the worker {job.crashes} times: the worker process died while running this job (killed, out of "
            "memory?), so it is not run again. Look at the worker's log and memory around its last attempt, fix the "
            f"cause, then replay it: keybridge dead-letters replay job {job.id}"
        )
        log.error("job %s %s/%s crashed the worker %d times; it is a dead letter now", job.id, job.kind, job.ref, job.crashes)
    return list(lost)


def renew(session: Session, job: Job, lease: timedelta = LEASE) -> bool:
    """Extend the lease of a job this worker is running; False when it is no longer this run's
    (it finished, or its lease ran out and another worker took it)."""
    return bool(session.execute(
        update(Job).where(Job.id == job.id, Job.status == "running", Job.attempts == job.attempts)
        .values(locked_until=utcnow() + lease).execution_options(synchronize_session=False)
    ).rowcount)


@contextmanager
def keep_leased(db, job: Job, lease: timedelta = LEASE):
    """Renew `job`'s lease every third of `lease` while the block runs (a heartbeat thread)."""
    stop = threading.Event()

    def beat():
        while not stop.wait(lease.total_seconds() / 3):
            try:
                with db.session() as session:
                    if not renew(session, job, lease):
                        log.warning("job %s %s/%s: lease lost while running", job.id, job.kind, job.ref)
                        return
            except Exception:  # noqa: BLE001 — a storage hiccup: the next beat tries again
                log.exception("job %s: could not renew its lease", job.id)

    heartbeat = threading.Thread(target=beat, name=f"lease-job-{job.id}", daemon=True)
    heartbeat.start()
    try:
        yield
    finally:
        stop.set()
        heartbeat.join()


def finish(session: Session, job: Job) -> None:
    job.status = "done"
    job.finished_at = utcnow()
    job.locked_until = None
    job.last_error = None


def cancel_unstarted(session: Session, kind: str, ordering_key: str, reason: str) -> int:
    """Settle the jobs of `kind` under `ordering_key` that never started (queued, never claimed) as done,
    with `reason` as their note; returns how many. A job that ran once (and waits for a retry) is kept."""
    return session.execute(
        update(Job).where(Job.kind == kind, Job.ordering_key == ordering_key, Job.status == "queued", Job.attempts == 0)
        .values(status="done", finished_at=utcnow(), last_error=f"cancelled: {reason}"[:4000])
    ).rowcount


def fail(session: Session, job: Job, error: Exception, retry_window_seconds: int, max_delay: int) -> str:
    """Reschedule a job after a retryable error, or move it to the dead letters; returns the new status."""
    job.last_error = f"{type(error).__name__}: {error}"[:4000]
    job.locked_until = None
    age = (utcnow() - job.created_at).total_seconds()
    if isinstance(error, RetryableError) and age < retry_window_seconds:
        delay = (min(float(error.retry_after), float(max_delay)) if error.retry_after is not None
                 else backoff_seconds(job.attempts, max_delay))
        job.status = "queued"
        job.run_at = utcnow() + timedelta(seconds=delay)
    else:
        job.status = "dead"
        job.finished_at = utcnow()
    return job.status


def replay(session: Session, job_id: int) -> Job:
    """Put a dead job back in the queue as if new (attempts and window restart)."""
    job = session.get(Job, job_id)
    if job is None:
        raise LookupError(f"No job {job_id}; list them with `keybridge dead-letters list`.")
    if job.status != "dead":
        raise ValueError(f"Job {job_id} is {job.status}, not dead; only dead letters can be replayed.")
    job.status, job.attempts, job.run_at, job.created_at, job.finished_at = "queued", 0, utcnow(), utcnow(), None
    job.crashes = None
    return job
