"""Keycloak event to CRM event: how long it takes, with and without the extension's nudge.

    python bench/event_latency.py [--samples 20] [--poll-seconds 2]

Runs against the real test Keycloak (tests/support/stack.py starts it or reuses it, with
its nudge listener pointed at 127.0.0.1:18700). The adapter's web app is served on that
port and its worker runs as `keybridge worker` does (a pass, then 0.5 s of sleep when
idle), polling Keycloak's event logs every --poll-seconds (the default setting).

Each sample: the master admin adds a new user to a CRM organization (an admin event,
ORGANIZATION_MEMBERSHIP CREATE); the adapter reads it from Keycloak's admin event log and
sends membership.changed to a stand-in CRM. The latency is from the moment Keycloak
answered the membership call (the event is committed) to the moment the CRM received
the event. Samples are spaced by a random 0.2-1.2 s so they do not line up with the
poll. Two runs in one process: with the nudge (the adapter holds KEYBRIDGE_NUDGE_SECRET)
and without (no secret: the adapter refuses the nudges, only the poll remains). Prints
p50 and p95 of each and their ratio; every sample must arrive, or the run fails.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR))

import requests  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from adapter import admin_events, create_app, nudges  # noqa: E402
from adapter.config import Settings  # noqa: E402
from adapter.worker import Worker  # noqa: E402
from tests.support import stack  # noqa: E402

CRM_SECRET = "whsec_" + "YmVuY2gtY3JtLXNlY3JldC1mb3ItbGF0ZW5jeQ=="


def say(message: str) -> None:
    print(message, flush=True)


class Crm:
    """Records when each membership.changed arrived, by user id."""

    def __init__(self):
        self.arrived: dict[str, float] = {}
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                if body.get("type") == "membership.changed":
                    crm.arrived.setdefault(body["data"]["user_id"], time.perf_counter())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Admin:
    def __init__(self, kc: stack.KeycloakInstance):
        self.kc, self.http, self._at = kc, requests.Session(), 0.0

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        if time.monotonic() - self._at > 30:
            self.http.headers["Authorization"] = f"Bearer {self.kc.admin_token()}"
            self._at = time.monotonic()
        r = self.http.request(method, self.kc.admin_url + path, timeout=30, **kwargs)
        r.raise_for_status()
        return r


def latency_run(kc, admin: Admin, org_id: str, samples: int, poll_seconds: float, nudge: bool,
                tmp: Path) -> tuple[list[float], list[float]]:
    """(event -> CRM, event -> read by the worker) in seconds, one pair per sample."""
    crm = Crm()
    arrivals: list[float] = []  # when nudges reached the adapter (its own record step, wrapped)
    record = nudges.record

    def recording(db):
        arrivals.append(time.perf_counter())
        return record(db)

    nudges.record = recording
    taken: list[float] = []  # when the worker's read of the admin event log took something
    poll = admin_events.poll

    def timed_poll(kb):
        count = poll(kb)
        if count:
            taken.append(time.perf_counter())
        return count

    admin_events.poll = timed_poll
    settings = Settings.from_env(
        {}, database_url=f"sqlite:///{tmp / f'nudge-{nudge}.db'}", keycloak_url=kc.url, keycloak_realm=kc.realm,
        keycloak_client_id=kc.client_id, keycloak_client_secret=kc.client_secret, crm_events_url=crm.url,
        crm_events_secret=CRM_SECRET, events_start="now", events_poll_seconds=poll_seconds,
        nudge_secret=stack.NUDGE_SECRET if nudge else "", portal_enabled=False, dashboard_enabled=False)
    app = create_app({"KEYBRIDGE_SETTINGS": settings})
    server = make_server("127.0.0.1", stack.NUDGE_PORT, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    worker = Worker(app.extensions["keybridge"])
    stop = threading.Event()

    def work():  # Worker.run_forever without its signal handler (this is not the main thread)
        while not stop.is_set():
            try:
                busy = worker.run_once(force_poll=False)
            except Exception as exc:  # noqa: BLE001 — like run_forever: keep going
                say(f"    worker pass failed: {exc}")
                busy = 0
            if not busy:
                time.sleep(0.5)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    latencies: list[float] = []
    reads: list[float] = []  # event committed -> the worker has read it (what the nudge shortens)
    nudge_delays: list[float] = []
    try:
        for i in range(samples):
            email = f"latency-{uuid.uuid4().hex[:10]}@bench-latency.bench.example"
            created = admin.call("POST", "/users", json={"username": email, "email": email, "enabled": True,
                                                        "firstName": "Lat", "lastName": "Ency"})
            user_id = created.headers["Location"].rsplit("/", 1)[1]
            time.sleep(random.uniform(0.2, 1.2))
            admin.call("POST", f"/organizations/{org_id}/members", data=user_id, headers={"Content-Type": "application/json"})
            committed = time.perf_counter()
            while user_id not in crm.arrived:
                if time.perf_counter() - committed > 60:
                    raise SystemExit(f"sample {i + 1}: no membership.changed within 60 s; the figure would be meaningless")
                time.sleep(0.005)
            latencies.append(crm.arrived[user_id] - committed)
            reads.append(min([t for t in taken if t >= committed] or [crm.arrived[user_id]]) - committed)
            nudged = [a - committed for a in arrivals if a >= committed - 0.05]
            if nudged:
                nudge_delays.append(max(0.0, min(nudged)))
    finally:
        nudges.record = record
        admin_events.poll = poll
        stop.set()
        thread.join(timeout=30)
        server.shutdown()
        crm.server.shutdown()
        app.extensions["keybridge"].db.dispose()
    if nudge_delays:
        say(f"    the nudge reached the adapter {statistics.median(nudge_delays) * 1000:.0f} ms (median) after Keycloak answered")
    return latencies, reads


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20, help="events per run (default 20)")
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="KEYBRIDGE_EVENTS_POLL_SECONDS (default 2)")
    args = parser.parse_args(argv)

    say("starting or reusing the test Keycloak and mail sink (tests/support/stack.py)")
    stack.ensure_mail_sink()
    kc = stack.ensure_keycloak()
    admin = Admin(kc)
    found = admin.call("GET", "/organizations", params={"q": "crm_account_id:BENCH-LATENCY", "exact": "true"}).json()
    if not found:
        admin.call("POST", "/organizations", json={
            "name": "Benchmark: event latency", "alias": "crm-bench-latency", "enabled": True,
            "attributes": {"crm_account_id": ["BENCH-LATENCY"], "contract_status": ["active"]},
            "domains": [{"name": "bench-latency.bench.example", "verified": False}]})
        found = admin.call("GET", "/organizations", params={"q": "crm_account_id:BENCH-LATENCY", "exact": "true"}).json()
    org_id = found[0]["id"]

    results, reads = {}, {}
    with tempfile.TemporaryDirectory(prefix="keybridge-latency-") as tmp:
        for nudge in (True, False):
            label = "with nudge" if nudge else "without nudge"
            say(f"{label}: {args.samples} membership changes, poll every {args.poll_seconds:g} s")
            results[label], reads[label] = latency_run(kc, admin, org_id, args.samples, args.poll_seconds, nudge, Path(tmp))
            say(f"  {label}: to the CRM " + " ".join(f"{v:.2f}" for v in results[label]))
            say(f"  {label}: read     " + " ".join(f"{v:.2f}" for v in reads[label]))

    say("")
    say(f"Keycloak admin event (ORGANIZATION_MEMBERSHIP CREATE), {args.samples} samples each, "
        f"KEYBRIDGE_EVENTS_POLL_SECONDS={args.poll_seconds:g}")
    say(f"{'':16}{'read by the worker':>24}{'received by the CRM':>26}")
    say(f"{'':16}{'p50':>12}{'p95':>12}{'p50':>13}{'p95':>13}")
    for label in results:
        r, c = reads[label], results[label]
        say(f"{label:16}{percentile(r, 50):>10.2f} s{percentile(r, 95):>10.2f} s{percentile(c, 50):>11.2f} s{percentile(c, 95):>11.2f} s")

    def ratio(values, p):
        return percentile(values["without nudge"], p) / max(percentile(values["with nudge"], p), 1e-6)

    say(f"without/with: read p50 {ratio(reads, 50):.1f}x, p95 {ratio(reads, 95):.1f}x; "
        f"CRM p50 {ratio(results, 50):.1f}x, p95 {ratio(results, 95):.1f}x")
    say("(the rest of the way to the CRM is the adapter's job: reading the user, the organization, "
        "its delegated-admin permissions, then the outbox)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
