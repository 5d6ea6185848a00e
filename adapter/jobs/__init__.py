"""The durable job queue: enqueue inside the caller's transaction, claim, finish, retry, dead-letter.

Works on SQLite (one worker) and PostgreSQL (several workers: FOR UPDATE SKIP LOCKED).
A job's (kind, ref) is unique, so enqueuing the same work twice does nothing.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from ..db import utcnow
from ..logs import current_request_id
from ..errors import PermanentError, RetryableError  # noqa: F401  (re-exported: the queue's callers import them here)
from ..models import Job

LEASE = timedelta(minutes=5)


def backoff_seconds(attempts: int, max_delay: int) -> float:
    """2, 4, 8, ... seconds, capped at `max_delay`."""
    return float(min(max_delay, 2 ** max(1, attempts)))


def enqueue(session: Session, kind: str, ref: str, payload: dict | None = None, run_at=None,
            ordering_key: str | None = None) -> bool:
    """Add a job unless (kind, ref) exists already; returns whether it was added.

    Jobs sharing an `ordering_key` run strictly one after another, in the order enqueued,
    even when an earlier one is waiting for a retry.

    Runs inside the caller's transaction (a savepoint keeps a duplicate from undoing it).
    """
    exists = session.scalar(select(Job.id).where(Job.kind == kind, Job.ref == ref))
    if exists:
        return False
    try:
        with session.begin_nested():
            # request_id: the web request (or the job) that queued it, so one id runs through the logs
            session.add(Job(kind=kind, ref=ref, payload=payload or {}, run_at=run_at or utcnow(), ordering_key=ordering_key,
                            request_id=current_request_id()))
    except IntegrityError:
        return False
    return True


def claim(session: Session) -> Job | None:
    """Take the oldest due job (or one whose worker died) and lease it; None when idle."""
    now = utcnow()
    due = or_(
        (Job.status == "queued") & (Job.run_at <= now),
        (Job.status == "running") & (Job.locked_until < now),
    )
    earlier = aliased(Job)
    blocked = exists().where(earlier.ordering_key == Job.ordering_key, earlier.id < Job.id,
                             earlier.status.in_(("queued", "running")))
    candidate = session.scalars(
        select(Job).where(due, ~blocked).order_by(Job.run_at, Job.id).limit(1).with_for_update(skip_locked=True)
    ).first()
    if candidate is None:
        return None
    taken = session.execute(
        update(Job)
        .where(Job.id == candidate.id, Job.status == candidate.status, Job.attempts == candidate.attempts)
        .values(status="running", locked_until=now + LEASE, attempts=Job.attempts + 1)
    ).rowcount
    if not taken:
        return None
    session.refresh(candidate)
    return candidate


def finish(session: Session, job: Job) -> None:
    job.status = "done"
    job.finished_at = utcnow()
    job.locked_until = None
    job.last_error = None


def fail(session: Session, job: Job, error: Exception, retry_window_seconds: int, max_delay: int) -> str:
    """Reschedule a job after a retryable error, or move it to the dead letters; returns the new status."""
    job.last_error = f"{type(error).__name__}: {error}"[:4000]
    job.locked_until = None
    age = (utcnow() - job.created_at).total_seconds()
    if isinstance(error, RetryableError) and age < retry_window_seconds:
        delay = error.retry_after if error.retry_after is not None else backoff_seconds(job.attempts, max_delay)
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
    return job
