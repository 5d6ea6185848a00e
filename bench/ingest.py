"""Ingest: signed CRM webhooks into the adapter, against a bare Flask endpoint answering 202.

    python bench/ingest.py [--database postgres|sqlite] [--seconds 10] [--connections 16] [--rounds 3]

Both servers run under the same gunicorn settings (the ones scripts/dev and the Dockerfile
use: sync workers, --workers 2), one after the other, on this machine. The load comes from
`wrk` (Debian package `wrk`), which replays pre-signed requests, each with its own
webhook-id, so every one is a new event the adapter must verify, validate and store.

- **full load**: wrk with --connections open connections for --seconds: throughput and
  latency percentiles.
- **half load**: an open-loop generator (requests sent on a fixed schedule, latency
  measured from the scheduled time, so a slow answer cannot hide the requests it delays)
  at half the adapter's full-load throughput, against both servers: p50/p99.
- **where the CPU went**: CPU seconds of the server (gunicorn and its workers), of the
  load generator, of the database server, and of everything else, per phase.
- **checks**: every request answered 202, and the adapter stored exactly one inbound event
  and one job per accepted request (counted in the database afterwards). A run where that
  does not hold stops with an error instead of printing a figure.

PostgreSQL is the test stack's server (tests/support/stack.py), which runs with fsync=off and
synchronous_commit=off: its commits cost no disk flush, a production server's do. SQLite runs
as the adapter configures it (WAL, synchronous=FULL: every commit waits for an fsync).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import procstat  # noqa: E402 (bench/, beside this file)

SECRET = "whsec_" + base64.b64encode(b"bench-ingest-secret-0123456789abcdef").decode()
GUNICORN = ["--workers", "2", "--worker-class", "sync", "--backlog", "2048", "--log-level", "warning"]
WRK_SCRIPT = r"""
local lines = {}
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  local n = tonumber(args[2])
  local i = 0
  for line in io.lines(args[1]) do
    if i % n == tid then table.insert(lines, line) end
    i = i + 1
  end
  idx = 0
  non202 = 0
end
function request()
  idx = idx + 1
  local line = lines[((idx - 1) % #lines) + 1]
  local id, ts, sig, body = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)")
  return wrk.format("POST", "/webhooks/crm", {["content-type"] = "application/json", ["webhook-id"] = id,
    ["webhook-timestamp"] = ts, ["webhook-signature"] = sig}, body)
end
function response(status, headers, body)
  if status ~= 202 then non202 = non202 + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("non202") end
  io.write(string.format('WRKJSON {"requests": %d, "seconds": %f, "p50_ms": %f, "p90_ms": %f, "p99_ms": %f, ' ..
    '"errors": %d, "non202": %d}\n', summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, bad))
end
"""
BARE_APP = textwrap.dedent('''
    """The baseline: a Flask endpoint that reads the body and answers 202, nothing else."""
    from flask import Flask, jsonify, request

    app = Flask(__name__)


    @app.post("/webhooks/crm")
    def receive():
        request.get_data()
        return jsonify({"status": "accepted"}), 202
''')


def say(text: str) -> None:
    print(text, flush=True)


def sign(webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def make_requests(path: Path, count: int) -> None:
    """`count` signed contact.upserted webhooks, one per line: id, timestamp, signature, body."""
    now = int(time.time())
    run = uuid.uuid4().hex[:8]
    with path.open("w") as out:
        for i in range(count):
            body = json.dumps({"type": "contact.upserted", "timestamp": "2026-11-30T10:00:00Z", "data": {
                "contact_id": f"BENCH-{run}-{i}", "email": f"person{i}@bench-{run}.example", "account_id": "BENCH-ACME",
                "first_name": "Bench", "last_name": f"Person {i}", "roles": ["Buyer"], "status": "active"}},
                separators=(",", ":")).encode()
            webhook_id = f"msg_{run}_{i}"
            out.write(f"{webhook_id}\t{now}\t{sign(webhook_id, now, body)}\t{body.decode()}\n")


def read_requests(path: Path) -> list[tuple[dict, bytes]]:
    out = []
    for line in path.read_text().splitlines():
        webhook_id, ts, sig, body = line.split("\t", 3)
        out.append(({"content-type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": ts,
                     "webhook-signature": sig}, body.encode()))
    return out


# -- servers ------------------------------------------------------------------------------

class Server:
    """gunicorn serving `app_spec` on a free port, with the CPU of the master and its workers."""

    def __init__(self, app_spec: str, env: dict, cwd: Path):
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", *GUNICORN, app_spec],
            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.time() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"gunicorn {app_spec} did not start:\n{self.process.stderr.read().decode()[-3000:]}")
                time.sleep(0.2)
        self.warm_up()

    def warm_up(self) -> None:
        """Until both workers have booted the app (create_app on a busy machine takes seconds),
        requests wait for them; the timed phases must not measure that."""
        def one() -> float:
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return time.perf_counter() - started

        deadline, fast = time.time() + 120, 0
        while fast < 20 and time.time() < deadline:
            with ThreadPoolExecutor(max_workers=4) as pool:
                slowest = max(pool.map(lambda _: one(), range(4)))
            fast = fast + 1 if slowest < 0.25 else 0

    def pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        kids = [int(p) for p in children.read_text().split()] if children.exists() else []
        return [self.process.pid, *kids]

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- load -----------------------------------------------------------------------------------

def full_load(port: int, requests_file: Path, seconds: int, connections: int, lua: Path) -> dict:
    threads = 2
    result = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
                             "-s", str(lua), f"http://127.0.0.1:{port}", "--", str(requests_file), str(threads)],
                            capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in result.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result:\n{result.stdout}\n{result.stderr}")
    out = json.loads(line.removeprefix("WRKJSON "))
    out["rate"] = out["requests"] / out["seconds"]
    return out


def open_loop(port: int, reqs: list[tuple[dict, bytes]], rate: float, seconds: float, workers: int = 32) -> dict:
    """Send at `rate` per second on a fixed schedule; latency counts from the scheduled time."""
    total = int(rate * seconds)
    if total > len(reqs):
        raise SystemExit(f"half load needs {total} requests, only {len(reqs)} were made; raise --requests")
    todo: queue.Queue = queue.Queue()
    start = time.perf_counter() + 0.5
    for i in range(total):
        todo.put((start + i / rate, reqs[i]))
    latencies, statuses, lock = [], [], threading.Lock()

    def work():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            try:
                due, (headers, body) = todo.get_nowait()
            except queue.Empty:
                conn.close()
                return
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request("POST", "/webhooks/crm", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            with lock:
                latencies.append((time.perf_counter() - due) * 1000)
                statuses.append(status)

    pool = [threading.Thread(target=work) for _ in range(workers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    latencies.sort()
    return {"requests": total, "rate": rate, "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "non202": sum(1 for s in statuses if s != 202)}


def stored_counts(database_url: str) -> tuple[int, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        events = conn.execute(text("select count(*) from inbound_events")).scalar()
        jobs = conn.execute(text("select count(*) from jobs where kind = 'inbound_event'")).scalar()
    engine.dispose()
    return events, jobs


# -- one round --------------------------------------------------------------------------------

def one_round(args, workdir: Path, lua: Path) -> dict:
    if args.database == "postgres":
        from tests.support import stack

        stack.ensure_postgres()
        database_url = stack.create_database()
    else:
        database_url = f"sqlite:///{workdir / f'ingest-{uuid.uuid4().hex[:6]}.db'}"
    env = {**os.environ, "KEYBRIDGE_DATABASE_URL": database_url, "KEYBRIDGE_WEBHOOK_SECRETS": SECRET,
           "KEYBRIDGE_KEYCLOAK_URL": "http://127.0.0.1:9", "KEYBRIDGE_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(REPO), "KEYBRIDGE_SESSION_SECRET": "s" * 40}
    requests_file = workdir / "requests.tsv"
    make_requests(requests_file, args.requests)
    results = {}
    for name, spec, cwd in (("bare", "ingest_bare:app", workdir), ("keybridge", "adapter:create_app()", REPO)):
        server = Server(spec, env, cwd)
        try:
            pg = procstat.postgres_pids() if args.database == "postgres" else []
            cpu0, gen0, pg0, busy0, t0 = procstat.cpu_total(server.pids()), _cpu_children(), procstat.cpu_by_pid(pg), procstat.busy_seconds(), time.perf_counter()
            full = full_load(server.port, requests_file, args.seconds, args.connections, lua)
            pg = procstat.postgres_pids() if args.database == "postgres" else []
            cpu1, gen1, pg_cpu, busy1, t1 = procstat.cpu_total(server.pids()), _cpu_children(), procstat.cpu_since(pg0, pg), procstat.busy_seconds(), time.perf_counter()
            full["cpu"] = {"server": cpu1 - cpu0, "wrk": gen1 - gen0, "postgres": pg_cpu,
                           "others": max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - (gen1 - gen0) - pg_cpu),
                           "wall": t1 - t0}
            results[name] = {"full": full, "server": server}
        except BaseException:
            server.stop()
            raise
        if name == "bare":
            server.stop()
    # Half load: half the adapter's full-load throughput, fresh requests, against both.
    keybridge = results["keybridge"]["server"]
    rate = results["keybridge"]["full"]["rate"] / 2
    make_requests(requests_file, int(rate * args.seconds) + 10)
    fresh = read_requests(requests_file)
    results["keybridge"]["half"] = open_loop(keybridge.port, fresh, rate, args.seconds)
    keybridge.stop()
    bare = Server("ingest_bare:app", env, workdir)
    try:
        results["bare"]["half"] = open_loop(bare.port, fresh, rate, args.seconds)
    finally:
        bare.stop()

    accepted = results["keybridge"]["full"]["requests"] - results["keybridge"]["full"]["non202"] \
        - results["keybridge"]["full"]["errors"] + results["keybridge"]["half"]["requests"] - results["keybridge"]["half"]["non202"]
    for name in ("bare", "keybridge"):
        for phase in ("full", "half"):
            bad = results[name][phase]["non202"] + results[name][phase].get("errors", 0)
            if bad:
                raise SystemExit(f"{name} {phase}: {bad} requests were not answered 202; the figure would be meaningless")
    events, jobs = stored_counts(database_url)
    # wrk may cut the last in-flight requests at the deadline: it counts only completed ones,
    # and the server may have stored a handful more.
    if not (accepted <= events <= accepted + args.connections) or jobs != events:
        raise SystemExit(f"keybridge answered 202 to {accepted} new webhooks but stored {events} events and {jobs} jobs")
    results["stored"] = events
    for name in ("bare", "keybridge"):
        results[name].pop("server", None)
    return results


def _cpu_children() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=40000, help="pre-signed requests for the full-load phase")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "ingest_bare.py").write_text(BARE_APP)
        lua = workdir / "replay.lua"
        lua.write_text(WRK_SCRIPT)
        for i in range(args.rounds):
            say(f"round {i + 1}/{args.rounds} ({args.database}, {args.seconds} s, {args.connections} connections)")
            result = one_round(args, workdir, lua)
            rounds.append(result)
            report(result)
    if len(rounds) > 1:
        say("\nmedian of %d rounds" % len(rounds))
        med = lambda f: statistics.median(f(r) for r in rounds)  # noqa: E731
        say(f"  full load: keybridge {med(lambda r: r['keybridge']['full']['rate']):.0f}/s, bare "
            f"{med(lambda r: r['bare']['full']['rate']):.0f}/s, ratio "
            f"{med(lambda r: r['keybridge']['full']['rate'] / r['bare']['full']['rate']):.2f}x; keybridge p99 "
            f"{med(lambda r: r['keybridge']['full']['p99_ms']):.1f} ms")
        say(f"  half load: keybridge p50 {med(lambda r: r['keybridge']['half']['p50_ms']):.1f} ms, p99 "
            f"{med(lambda r: r['keybridge']['half']['p99_ms']):.1f} ms; bare p99 "
            f"{med(lambda r: r['bare']['half']['p99_ms']):.1f} ms")
    return 0


def report(r: dict) -> None:
    k, b = r["keybridge"], r["bare"]
    say(f"{'':24}{'keybridge':>12}{'bare 202':>12}{'ratio':>10}")
    say(f"{'full load, requests/s':24}{k['full']['rate']:>12.0f}{b['full']['rate']:>12.0f}{k['full']['rate'] / b['full']['rate']:>9.2f}x")
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        say(f"{'full load, ' + key.replace('_ms', '') + ' ms':24}{k['full'][key]:>12.1f}{b['full'][key]:>12.1f}")
    say(f"{'half load, requests/s':24}{k['half']['rate']:>12.0f}{b['half']['rate']:>12.0f}")
    for key in ("p50_ms", "p99_ms"):
        say(f"{'half load, ' + key.replace('_ms', '') + ' ms':24}{k['half'][key]:>12.1f}{b['half'][key]:>12.1f}")
    say(f"CPU seconds during full load (wall {k['full']['cpu']['wall']:.1f} s):")
    for name, res in (("keybridge", k), ("bare", b)):
        cpu = res["full"]["cpu"]
        per = 1000 * cpu["server"] / max(1, res["full"]["requests"])
        say(f"  {name:10} server {cpu['server']:.1f}  wrk {cpu['wrk']:.1f}  postgres {cpu['postgres']:.1f}  "
            f"others {cpu['others']:.1f}  ({per:.2f} ms of server CPU per request)")
    say(f"checked: every request answered 202; {r['stored']} events and jobs stored, one per accepted webhook")


if __name__ == "__main__":
    sys.exit(main())
