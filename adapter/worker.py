"""The worker process: runs due jobs, reads Keycloak's event logs, delivers outbound events.

It sits above the handlers: what a job does, how it is retried and what happens when it
is dead comes from the task registry (adapter/tasks.py); the queue (adapter/jobs) only
stores, leases and reschedules.

Each pass does a bounded amount of each; `run_forever` sleeps only when a pass found
nothing to do. Failures of Keycloak or the CRM never stop the loop: they reschedule.
"""
from __future__ import annotations

import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from . import admin_events, delegation, health, jobs, keycloak_events, logs, metrics, nudges, org_admins, outbox, reconcile, tasks  # noqa: F401  (reconcile: registers its job)
from .errors import PermanentError, RetryableError
from .handlers import TASKS, activity, contracts, invitation_expiry, records
from .keycloak import CredentialError
from . import webhooks  # noqa: F401  (the vendor dialects and their vendor_read job)

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0


class Worker:
    def __init__(self, kb, batch: int = 50):
        self.kb = kb
        self.batch = batch
        self._stop = False
        self._next_poll = 0.0
        self.name = metrics.worker_name()
        # "now" means when the worker started, not its first poll
        keycloak_events.ensure_cursor(kb, keycloak_events.CURSOR)
        keycloak_events.ensure_cursor(kb, admin_events.CURSOR)
        self._nudge_seen = nudges.latest(kb.db)

    def run_jobs(self) -> int:
        """Make dead letters of jobs that kept crashing the worker, then run up to `batch` due jobs,
        `threads` at a time; returns how many were handled."""
        ran = self.bury_crashed()
        first = self._claim()
        if first is None:
            return ran
        threads = min(self.threads, self.batch)
        if threads <= 1:
            return ran + self._run_many(first, self.batch)
        share = -(-self.batch // threads)
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="job") as pool:
            running = [pool.submit(self._run_many, first, share)]
            running += [pool.submit(self._run_many, None, share) for _ in range(threads - 1)]
            return ran + sum(done.result() for done in running)

    @property
    def threads(self) -> int:
        """Jobs run at once: KEYBRIDGE_WORKER_THREADS, or 4 on PostgreSQL and 1 on SQLite (one writer)."""
        configured = self.kb.settings.worker_threads
        return configured if configured > 0 else (4 if self.kb.db.is_postgres else 1)

    def _claim(self):
        settings = self.kb.settings
        with self.kb.db.session() as session:
            return jobs.claim(session, timedelta(seconds=settings.job_lease_seconds), settings.job_max_crashes)

    def _run_many(self, job, limit: int) -> int:
        """Run `job` (if given) and then further due jobs, up to `limit`; the lease of each is
        renewed while it runs. Returns how many ran."""
        lease = timedelta(seconds=self.kb.settings.job_lease_seconds)
        ran = 0
        while ran < limit and not self._stop:
            job = job or self._claim()
            if job is None:
                break
            ran += 1
            with jobs.keep_leased(self.kb.db, job, lease):
                self._run_one(job)
            job = None
        return ran

    def _run_one(self, job) -> None:
        """Run one claimed job with its request id and job id on every log line it causes."""
        request_token = logs.REQUEST_ID.set(job.request_id)
        job_token = logs.JOB_ID.set(job.id)
        try:
            self._run_claimed(job)
        finally:
            logs.JOB_ID.reset(job_token)
            logs.REQUEST_ID.reset(request_token)

    def _run_claimed(self, job) -> None:
        settings = self.kb.settings
        try:
            outcome = TASKS.run(self.kb, job)
        except Exception as exc:  # noqa: BLE001 — every failure is recorded on the job
            try:
                task = TASKS.for_job(job)
            except PermanentError:
                task = None
            retry = task.retry if task else None
            with self.kb.db.session() as session:
                current = session.get(type(job), job.id)
                status = jobs.fail(session, current, exc,
                                   retry.window(settings) if retry else settings.job_retry_window_seconds,
                                   retry.max_delay(settings) if retry else settings.retry_max_delay_seconds)
            if status == "dead":
                self._on_dead(job, exc)
            metrics.JOBS_RUN.labels(job.kind, "dead" if status == "dead" else "retry").inc()
            # a refused credential is retried (nothing is lost once it is fixed) but never quietly
            level = logging.ERROR if isinstance(exc, CredentialError) else logging.WARNING if status == "dead" else logging.INFO
            log.log(level, "job %s %s/%s failed (attempt %d) -> %s: %s", job.id, job.kind, job.ref, job.attempts, status, exc)
            return
        with self.kb.db.session() as session:
            jobs.finish(session, session.get(type(job), job.id))
        metrics.JOBS_RUN.labels(job.kind, "done").inc()
        log.info("job %s %s/%s -> %s", job.id, job.kind, job.ref, outcome)

    def bury_crashed(self) -> int:
        """Jobs whose worker died while running them too often are dead letters; their task's
        `on_dead` runs (e.g. a batch item is settled as failed)."""
        with self.kb.db.session() as session:
            buried = jobs.bury_crashed(session, self.kb.settings.job_max_crashes)
        for job in buried:
            self._on_dead(job, jobs.CrashedWorker(job.last_error))
        return len(buried)

    def _on_dead(self, job, error: Exception) -> None:
        try:
            task = TASKS.for_job(job)
        except PermanentError:
            return
        if task.on_dead is not None:
            task.on_dead(self.kb, job, error)

    def poll_keycloak(self, force: bool = False) -> int:
        now = time.monotonic()
        if not force and now < self._next_poll:
            return 0
        self._next_poll = now + self.kb.settings.events_poll_seconds
        try:
            return keycloak_events.poll(self.kb)
        except RetryableError as exc:
            log.log(logging.ERROR if isinstance(exc, CredentialError) else logging.INFO, "Keycloak event log not readable yet: %s", exc)
            return 0

    def poll_admin_events(self, force: bool = False) -> int:
        """Read Keycloak's admin event log and look at org admins' join links (admin_events.py, delegation.py)."""
        now = time.monotonic()
        if not force and now < getattr(self, "_next_admin_poll", 0.0):
            return 0
        self._next_admin_poll = now + self.kb.settings.events_poll_seconds
        try:
            return admin_events.poll(self.kb) + delegation.settle_invitations(self.kb)
        except (RetryableError, PermanentError) as exc:
            log.log(logging.ERROR if isinstance(exc, CredentialError) else logging.INFO, "Keycloak admin event log not readable yet: %s", exc)
            return 0

    def deliver(self) -> int:
        counts = outbox.deliver_due(self.kb.db, self.kb.connector, self.kb.settings)
        for outcome in ("delivered", "dead"):
            if counts.get(outcome):
                metrics.OUTBOUND.labels(outcome).inc(counts[outcome])
        return counts["delivered"] + counts["dead"]

    def schedule(self) -> int:
        """Queue what is due by the clock alone (contracts whose end date passed, the activity report,
        the sweep that converges every CRM record again, invitations that expire or get their reminder)."""
        return (contracts.schedule_due_expiries(self.kb) + activity.schedule_report(self.kb)
                + records.schedule_sweep(self.kb) + invitation_expiry.schedule_due(self.kb))

    def nudged(self) -> bool:
        """True once per nudge from Keycloak's extension since the last pass (adapter/nudges.py)."""
        latest = nudges.latest(self.kb.db)
        if latest != self._nudge_seen:
            self._nudge_seen = latest
            return True
        return False

    def run_once(self, force_poll: bool = True) -> int:
        """One pass of everything; returns how much work was done (0 = idle)."""
        force_poll = self.nudged() or force_poll
        done = (self.schedule() + self.poll_keycloak(force_poll) + self.poll_admin_events(force_poll) + self.run_jobs()
                + self.deliver())
        self.heartbeat()
        return done

    def heartbeat(self) -> None:
        """Tell readiness checks and metrics this worker is alive (at most every few seconds)."""
        now = time.monotonic()
        if now >= getattr(self, "_next_beat", 0.0):
            self._next_beat = now + HEARTBEAT_SECONDS
            metrics.beat(self.kb.db, self.name)

    def run_forever(self, idle_sleep: float = 0.5) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        metrics.serve_worker_metrics(self.kb.db, self.kb.settings.worker_metrics_port)
        self.queue_upgrade_steps()
        log.info("worker started (database %s)", self.kb.db.engine.url.render_as_string(hide_password=True))
        health.log_startup_problems(self.kb, "worker")
        while not self._stop:
            try:
                busy = self.run_once(force_poll=False)
            except Exception:  # noqa: BLE001 — storage hiccup: log it, keep going
                log.exception("worker pass failed; retrying")
                busy = 0
            if not busy:
                time.sleep(idle_sleep)

    def queue_upgrade_steps(self) -> None:
        """At start: the steps that bring what earlier versions left in Keycloak in line (each idempotent)."""
        # Once per database: org admins from before admin rights belonged to one organization get theirs.
        with self.kb.db.session() as session:
            tasks.enqueue(session, org_admins.MIGRATION_JOB, "per-organization-admins-v1")
        # Users disabled one by one for a contract (before the organization's attributes decided) get their flag back.
        contracts.queue_lift_of_contract_revocations(self.kb)

    def stop(self) -> None:
        self._stop = True
