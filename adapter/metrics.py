"""Prometheus metrics for the web processes and the worker (prometheus_client).

Two kinds:

- **Counted in the process** (webhooks by source and outcome, jobs run by kind and outcome,
  Keycloak calls' latency and errors by operation). Under gunicorn with several workers
  set PROMETHEUS_MULTIPROC_DIR (an empty directory shared by them) and `/metrics`
  aggregates every process, as prometheus_client's multiprocess mode does.
- **Read from the database at scrape time** (jobs by kind and state, the oldest due job,
  outbound lag and dead letters, the event-log cursors, the workers' heartbeats). They
  describe the shared state, so every process that serves `/metrics` gives the same
  values and no process has to keep them up to date.

The web app serves `GET /metrics`; the worker serves its own on
KEYBRIDGE_WORKER_METRICS_PORT (0: off). Neither carries a secret or a personal datum:
labels are event sources, job kinds, outcomes and Keycloak operation names.
"""
from __future__ import annotations

import logging
import os
import time

from flask import Blueprint, Response, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, ProcessCollector,
                               generate_latest, start_http_server)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from .db import utcnow

log = logging.getLogger(__name__)

WEBHOOKS = Counter("keybridge_webhooks_total", "Inbound webhooks by source (crm, hubspot, ...) and outcome "
                   "(accepted, duplicate, ignored, or refused_<HTTP status>)", ["source", "outcome"])
JOBS_RUN = Counter("keybridge_jobs_run_total", "Jobs the worker ran, by kind and outcome (done, retry, dead)",
                   ["kind", "outcome"])
KEYCLOAK_SECONDS = Histogram("keybridge_keycloak_request_seconds", "Keycloak Admin API calls by operation",
                             ["operation"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
KEYCLOAK_ERRORS = Counter("keybridge_keycloak_errors_total", "Failed Keycloak calls by operation and kind "
                          "(retryable: down, slow, 5xx, 429, 401; permanent: refused)", ["operation", "kind"])
OUTBOUND = Counter("keybridge_outbound_deliveries_total", "Outbound event deliveries by outcome "
                   "(delivered, retry, dead)", ["outcome"])


def observe_keycloak(operation: str, seconds: float, error: Exception | None = None) -> None:
    """Record one Keycloak call (the gateway's keycloak_call decorator calls this)."""
    KEYCLOAK_SECONDS.labels(operation).observe(seconds)
    if error is not None:
        from .errors import RetryableError

        KEYCLOAK_ERRORS.labels(operation, "retryable" if isinstance(error, RetryableError) else "permanent").inc()


class StateCollector:
    """Gauges read from the shared database when scraped (see the module docstring)."""

    def __init__(self, db):
        self.db = db

    def collect(self):
        from .models import Cursor, Job, OutboxEvent

        jobs = GaugeMetricFamily("keybridge_jobs", "Jobs in the queue by kind and status (queued, running, done, dead)",
                                 labels=["kind", "status"])
        oldest = GaugeMetricFamily("keybridge_oldest_due_job_age_seconds",
                                   "How long the oldest due queued job has waited (0: none waiting)")
        outbox = GaugeMetricFamily("keybridge_outbound_events", "Outbound events by status (pending, delivered, dead)",
                                   labels=["status"])
        lag = GaugeMetricFamily("keybridge_outbound_lag_seconds",
                                "Age of the oldest outbound event not yet delivered (0: none)")
        dead = GaugeMetricFamily("keybridge_dead_letters", "Dead letters waiting for an operator, by kind (job, outbound)",
                                 labels=["kind"])
        cursor = GaugeMetricFamily("keybridge_event_cursor_lag_seconds",
                                   "Age of the newest Keycloak event taken from each log (grows while the log is quiet "
                                   "or unread; compare with keybridge_worker_heartbeat_age_seconds)", labels=["log"])
        heartbeat = GaugeMetricFamily("keybridge_worker_heartbeat_age_seconds",
                                      "Seconds since each worker's last pass", labels=["worker"])
        now = utcnow()
        try:
            with self.db.session() as session:
                for kind, status, count in session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)):
                    jobs.add_metric([kind, status], count)
                due = session.scalar(select(func.min(Job.run_at)).where(Job.status == "queued", Job.run_at <= now))
                oldest.add_metric([], (now - due).total_seconds() if due else 0.0)
                counts = dict(session.execute(select(OutboxEvent.status, func.count()).group_by(OutboxEvent.status)).all())
                for status in ("pending", "delivered", "dead"):
                    outbox.add_metric([status], counts.get(status, 0))
                first = session.scalar(select(func.min(OutboxEvent.created_at)).where(OutboxEvent.status == "pending"))
                lag.add_metric([], (now - first).total_seconds() if first else 0.0)
                dead.add_metric(["job"], session.scalar(select(func.count()).select_from(Job).where(Job.status == "dead")) or 0)
                dead.add_metric(["outbound"], counts.get("dead", 0))
                for row in session.scalars(select(Cursor)):
                    position = row.position or {}
                    if row.name.startswith(HEARTBEAT_PREFIX):
                        heartbeat.add_metric([row.name[len(HEARTBEAT_PREFIX):]], max(0.0, time.time() - position.get("at", 0)))
                    elif "time_ms" in position:
                        cursor.add_metric([row.name], max(0.0, time.time() - position["time_ms"] / 1000))
        except Exception:  # noqa: BLE001 — a scrape must answer even when the database does not
            log.warning("metrics: the database could not be read", exc_info=True)
            return
        yield from (jobs, oldest, outbox, lag, dead, cursor, heartbeat)


# -- worker heartbeats (also read by /readyz) ---------------------------------------------

HEARTBEAT_PREFIX = "heartbeat:"


def worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def beat(db, name: str) -> None:
    """Record that worker `name` finished a pass now (a row in the cursors table)."""
    from .models import Cursor

    with db.session() as session:
        row = session.get(Cursor, HEARTBEAT_PREFIX + name)
        if row is None:
            session.add(Cursor(name=HEARTBEAT_PREFIX + name, position={"at": time.time()}))
        else:
            row.position = {"at": time.time()}


def newest_heartbeat_age(db, host: str | None = None) -> float | None:
    """Seconds since the most recent pass of any worker (or of a worker on `host`, the node name
    its heartbeat carries); None when none ever ran."""
    from .models import Cursor

    prefix = HEARTBEAT_PREFIX + (f"{host}:" if host else "")
    with db.session() as session:
        beats = [r.position.get("at", 0) for r in session.scalars(select(Cursor).where(Cursor.name.startswith(prefix, autoescape=True)))]
    return time.time() - max(beats) if beats else None


# -- serving -------------------------------------------------------------------------------

OWN = (WEBHOOKS, JOBS_RUN, KEYCLOAK_SECONDS, KEYCLOAK_ERRORS, OUTBOUND)


def registry_for(db) -> CollectorRegistry:
    """This process's counters (or every process's, in multiprocess mode) plus the database gauges."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for metric in OWN:
            registry.register(metric)
        ProcessCollector(registry=registry)
    registry.register(StateCollector(db))
    return registry


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    from flask import current_app

    registry = current_app.extensions["keybridge.metrics"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _count_webhook(response):
    path = request.path
    if request.method == "POST" and path.startswith("/webhooks/"):
        source = path.split("/")[2] or "unknown"
        if response.status_code < 300:
            try:
                outcome = g.get("webhook_outcome") or (response.get_json(silent=True) or {}).get("status", "accepted")
            except Exception:  # noqa: BLE001 — a non-JSON answer (a SOAP Ack) counts as accepted
                outcome = "accepted"
            outcome = outcome if outcome in ("accepted", "duplicate", "ignored") else "accepted"
        else:
            outcome = f"refused_{response.status_code}"
        WEBHOOKS.labels(source, outcome).inc()
    return response


def init_app(app) -> None:
    app.extensions["keybridge.metrics"] = registry_for(app.extensions["keybridge"].db)
    app.register_blueprint(bp)
    app.after_request(_count_webhook)


def serve_worker_metrics(db, port: int) -> None:
    """The worker's /metrics on its own port (a daemon thread); port 0 leaves it off."""
    if port:
        start_http_server(port, registry=registry_for(db))
        log.info("worker metrics on :%d/metrics", port)
