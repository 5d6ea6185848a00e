"""Liveness (/healthz) and readiness (/readyz).

/healthz says the process answers. /readyz says whether Keybridge can do its work: the
database answers, Keycloak gives the adapter a token with its own credential, and a worker
has finished a pass within the last minute (its heartbeat). A failing check
answers 503 (the shared error body, `errors` naming each failing check), so a load balancer or an operator sees *which* dependency is missing.
"""
from __future__ import annotations

import logging
import os

from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text

from . import metrics
from .errors import ApiError, PermanentError, RetryableError

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


def check_database(kb) -> str | None:
    """None when the database answers; otherwise what is wrong."""
    try:
        with kb.db.session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 — any failure means not ready; the reason is reported
        return f"database not reachable ({type(exc).__name__}); check KEYBRIDGE_DATABASE_URL"
    return None


def check_keycloak(kb) -> str | None:
    """None when Keycloak issues the adapter a token; otherwise what is wrong (never the secret)."""
    try:
        kb.keycloak.check_credentials()
    except (RetryableError, PermanentError) as exc:
        return str(exc)
    return None


WORKER_SILENCE_SECONDS = 60  # a worker beats every few seconds (worker.HEARTBEAT_SECONDS)


def check_worker(kb) -> str | None:
    """None when some worker finished a pass within the last minute; otherwise what is wrong."""
    try:
        age = metrics.newest_heartbeat_age(kb.db)
    except Exception as exc:  # noqa: BLE001 — the database check says why
        return f"worker heartbeats not readable ({type(exc).__name__})"
    if age is None:
        return "no worker has run yet: start `keybridge worker` (stored webhooks wait for it)"
    if age > WORKER_SILENCE_SECONDS:
        return f"no worker heartbeat for {int(age)} s: the worker is stopped or stuck (stored webhooks wait for it)"
    return None


def check_this_hosts_worker(db, max_age: float = WORKER_SILENCE_SECONDS) -> str | None:
    """None when a worker on this host (container) finished a pass within `max_age` seconds;
    otherwise what is wrong. `keybridge health worker` runs it as the worker's container health check."""
    host = os.uname().nodename
    try:
        age = metrics.newest_heartbeat_age(db, host)
    except Exception as exc:  # noqa: BLE001 — reported as the reason
        return f"worker heartbeats not readable ({type(exc).__name__}); check KEYBRIDGE_DATABASE_URL"
    if age is None:
        return f"no worker on {host} has finished a pass yet (is `keybridge worker` running here?)"
    if age > max_age:
        return f"the worker on {host} has not finished a pass for {int(age)} s (more than {int(max_age)}): stopped or stuck"
    return None


CHECKS = {"database": check_database, "keycloak": check_keycloak, "worker": check_worker}
STARTUP_CHECKS = ("database", "keycloak")  # a process starting cannot expect a worker to be running yet


def readiness(kb, names=tuple(CHECKS)) -> dict[str, str]:
    """Each check's outcome: 'ok' or the reason it failed."""
    return {name: (CHECKS[name](kb) or "ok") for name in names}


def log_startup_problems(kb, process: str) -> bool:
    """Log an ERROR for each readiness check that fails at start; returns whether all passed."""
    ok = True
    for name, outcome in readiness(kb, STARTUP_CHECKS).items():
        if outcome != "ok":
            ok = False
            log.error("%s start-up check %s failed: %s", process, name, outcome)
    return ok


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers (dependencies are /readyz's business)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: 200 with each check's "ok", or 503 in the shared error body naming each failing check."""
    checks = readiness(current_app.extensions["keybridge"])
    failed = {name: [outcome] for name, outcome in checks.items() if outcome != "ok"}
    if failed:
        raise ApiError(503, f"Not ready: {', '.join(sorted(failed))} check failed; see errors.", failed)
    return jsonify({"status": "ready", "checks": checks})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
