"""Batch invitations: Keybridge's invitations.batch_requested against a plain invite-user loop.

    python bench/batch_invites.py [--items 1000 10000] [--workers 3] [--threads 4] [--concurrency 8]
                                  [--chunk 25] [--rounds 1] [--paths plain,keybridge]

Runs against the real test Keycloak, mail sink and PostgreSQL (tests/support/stack.py starts
them or reuses them). For each size and round, each path invites that many fresh addresses
(their own domain) into a fresh organization (an `account.upserted` handled by the workers,
not timed), after an untimed warm-up of 20 invitations on the same path:

- plain: what a sales-ops person would write: one `requests.Session` (keep-alive), the
  adapter's service-account token, and `POST organizations/{id}/members/invite-user` (form:
  email, firstName, lastName) for each address, one after the other.
- keybridge: `--workers` worker processes (`keybridge worker`, `--threads` each, one
  PostgreSQL), started before and stopped after the path; timed from posting the signed
  `invitations.batch_requested` webhook (through the adapter's app in this process) until
  the batch says completed and Keycloak's id of every invitation is read (registrations
  are matched by it; Keybridge reads them in pages, the last read right after completion).

Checks, before any figure is printed: every plain call answered 204; the batch completed with
every item `sent`; and the mail sink holds exactly one email to every address of the run
(none missing, none twice, none to anyone else at its domain). A run where that does not hold
stops with an error.

Where the CPU went, per path (from /proc/<pid>/stat and /proc/stat): the Keycloak process,
Keybridge (the workers and this process), the plain script (this process), PostgreSQL, and
everything else on the machine. Keycloak's CPU per invitation sets a ceiling: with N CPUs no
client can invite more than N / (Keycloak CPU seconds per invitation) people a second.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python bench/batch_invites.py` from anywhere

import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

from adapter import create_app  # noqa: E402
from adapter.config import Settings  # noqa: E402
from adapter.handlers import batches  # noqa: E402
from tests.conftest import SECRET, envelope, signed_post  # noqa: E402
from tests.support import stack  # noqa: E402

import procstat  # noqa: E402 (bench/, beside this file)

WARM_UP = 20


def say(text: str) -> None:
    print(text, flush=True)


# -- CPU accounting ---------------------------------------------------------------------------------

def loopback_mtu() -> int:
    """The MTU of this network namespace's loopback (`ip`: /sys shows the namespace it was mounted in); 0 if unknown."""
    try:
        out = subprocess.run(["ip", "-o", "link", "show", "lo"], capture_output=True, text=True, timeout=10).stdout
        return int(out.split(" mtu ", 1)[1].split()[0])
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        return 0


def _cpu(pid: int) -> float:
    return procstat.cpu_of(pid) or 0.0


class Meter:
    """CPU seconds of Keycloak, of Keybridge's worker processes, of this process, of PostgreSQL, and the rest."""

    def __init__(self, keycloak_pid: int | None):
        self.keycloak_pid = keycloak_pid

    def read(self, workers: list[int]) -> dict:
        pg = procstat.postgres_pids()  # its backends come and go (see between)
        return {"wall": time.perf_counter(), "keycloak": _cpu(self.keycloak_pid) if self.keycloak_pid else 0.0,
                "workers": {p: _cpu(p) for p in workers}, "bench": time.process_time(),
                "postgres": {p: _cpu(p) for p in pg}, "busy": procstat.busy_seconds(), "load": os.getloadavg()[0]}

    @staticmethod
    def between(a: dict, b: dict) -> dict:
        workers = sum(b["workers"].get(p, a["workers"][p]) - a["workers"][p] for p in a["workers"])
        # a backend that started during the phase (a new connection) counts whole, one that ended is lost
        postgres = sum(seconds - a["postgres"].get(p, 0.0) for p, seconds in b["postgres"].items())
        used = {"keycloak": b["keycloak"] - a["keycloak"], "workers": workers, "bench": b["bench"] - a["bench"], "postgres": postgres}
        used["others"] = max(0.0, (b["busy"] - a["busy"]) - sum(used.values()))
        used["wall"] = b["wall"] - a["wall"]
        used["load"] = (a["load"] + b["load"]) / 2
        return used


# -- the stack ------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        say("starting or reusing the test Keycloak, mail sink and PostgreSQL (tests/support/stack.py)")
        self.mail_dir = stack.ensure_mail_sink()
        self.kc = stack.ensure_keycloak()
        self.database_url = stack.create_database(stack.ensure_postgres())
        self.settings = Settings.from_env(
            {}, database_url=self.database_url, webhook_secrets=[SECRET], keycloak_url=self.kc.url,
            keycloak_realm=self.kc.realm, keycloak_client_id=self.kc.client_id, keycloak_client_secret=self.kc.client_secret,
            events_start="now", portal_enabled=False, dashboard_enabled=False, log_level="WARNING")
        self.app = create_app({"KEYBRIDGE_SETTINGS": self.settings, "TESTING": True})
        self.client, self.kb = self.app.test_client(), self.app.extensions["keybridge"]
        self.meter = Meter(stack._listener_pid(int(self.kc.url.rsplit(":", 1)[1].split("/")[0])))
        if self.meter.keycloak_pid is None:
            say("  (Keycloak's process is not visible here: its CPU is counted under 'others')")
        self.run = uuid.uuid4().hex[:6]
        self.logs = Path(tempfile.mkdtemp(prefix="bench-batch-"))

    # workers -------------------------------------------------------------------------------------
    def worker_env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYBRIDGE_")}
        env.update({
            "PYTHONPATH": str(REPO), "KEYBRIDGE_DATABASE_URL": s.database_url, "KEYBRIDGE_WEBHOOK_SECRETS": " ".join(s.webhook_secrets),
            "KEYBRIDGE_KEYCLOAK_URL": s.keycloak_url, "KEYBRIDGE_KEYCLOAK_REALM": s.keycloak_realm,
            "KEYBRIDGE_KEYCLOAK_CLIENT_ID": s.keycloak_client_id, "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET": s.keycloak_client_secret,
            "KEYBRIDGE_EVENTS_START": "now", "KEYBRIDGE_LOG_LEVEL": "WARNING",
            "KEYBRIDGE_WORKER_THREADS": str(self.args.threads), "KEYBRIDGE_KEYCLOAK_CONCURRENCY": str(self.args.concurrency),
            "KEYBRIDGE_BATCH_CHUNK_SIZE": str(self.args.chunk)})
        return env

    @contextmanager
    def workers(self):
        env = self.worker_env()
        procs = []
        for i in range(self.args.workers):
            log = open(self.logs / f"worker-{i}.log", "ab")
            procs.append(subprocess.Popen([sys.executable, "-c", "from adapter.cli import main; main()", "worker"],
                                          cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        try:
            yield [p.pid for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            dead = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM)]
            if dead:
                raise SystemExit(f"a worker exited with {dead}; its log is in {self.logs}")

    # accounts, addresses, checks ------------------------------------------------------------------
    def organization(self, account_id: str) -> str:
        """The organization of a new CRM account, made by the workers from account.upserted (not timed)."""
        assert signed_post(self.client, envelope("account.upserted", {"account_id": account_id, "name": f"Bench {account_id}",
                                                                      "contract": {"status": "active"}})).status_code == 202
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            org = self.kb.keycloak.find_organization(account_id)
            if org is not None:
                return org["id"]
            time.sleep(0.3)
        raise SystemExit(f"no organization for {account_id} after 120 s: are the workers running? logs in {self.logs}")

    def addresses(self, label: str, n: int) -> tuple[str, list[str]]:
        domain = f"{label}-{self.run}-{uuid.uuid4().hex[:4]}.bench.example"
        return domain, [f"p{i}@{domain}" for i in range(n)]

    def check_mails(self, domain: str, emails: list[str], what: str, since: float) -> None:
        """Every address got exactly one email, nobody else at the domain one (messages stored since `since`)."""
        def received() -> Counter:
            got: Counter = Counter()
            for path in Path(self.mail_dir).glob("*.eml"):
                try:
                    if path.stat().st_mtime < since - 5:
                        continue  # from earlier runs: the sink keeps every message
                    mail = stack._mailsink.parse_mail(path.read_bytes(), path)
                except OSError:
                    continue
                got.update(a.lower() for a in mail.to if a.lower().endswith("@" + domain))
            return got

        deadline = time.monotonic() + 120
        while sum((got := received()).values()) < len(emails) and time.monotonic() < deadline:
            time.sleep(2)
        time.sleep(1)  # a second email, if any, would be in flight now
        got = received()
        missing = set(emails) - set(got)
        twice = [a for a, n in got.items() if n > 1]
        strangers = set(got) - set(emails)
        if missing or twice or strangers:
            raise SystemExit(f"{what}: {len(missing)} addresses got no email, {len(twice)} got more than one, {len(strangers)} "
                             f"unknown addresses were mailed (e.g. {sorted(missing)[:3]} {twice[:3]}); no figure printed")

    # the paths -----------------------------------------------------------------------------------
    def plain(self, n: int) -> dict:
        """The loop a person would write, with the adapter's own service-account token."""
        # A fresh organization per phase, as Keybridge's path gets: Keycloak's invite-user costs more the more
        # invitations the organization has pending (measured: 16 ms per call into a new one, 57 ms with 3,300 pending).
        with self.workers():  # made like any other, then the workers stop
            org_id = self.organization(f"BENCH-PLAIN-{self.run}-{uuid.uuid4().hex[:4]}")
        session = requests.Session()
        session.mount("http://", HTTPAdapter(pool_maxsize=1))
        token_url = f"{self.kc.url}/realms/{self.kc.realm}/protocol/openid-connect/token"

        def login():
            r = session.post(token_url, data={"grant_type": "client_credentials", "client_id": self.kc.client_id,
                                              "client_secret": self.kc.client_secret}, timeout=30)
            r.raise_for_status()
            session.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

        url = f"{self.kc.admin_url}/organizations/{org_id}/members/invite-user"

        def invite(email: str, i: int) -> int:
            r = session.post(url, data={"email": email, "firstName": "Bench", "lastName": str(i)}, timeout=60)
            if r.status_code == 401:  # the token ran out
                login()
                r = session.post(url, data={"email": email, "firstName": "Bench", "lastName": str(i)}, timeout=60)
            return r.status_code

        login()
        since = time.time()
        _, warm = self.addresses("plain-warm", WARM_UP)
        for i, email in enumerate(warm):
            invite(email, i)
        domain, emails = self.addresses("plain", n)
        before = self.meter.read([])
        answers = Counter(invite(email, i) for i, email in enumerate(emails))
        used = Meter.between(before, self.meter.read([]))
        if answers != Counter({204: n}):
            raise SystemExit(f"plain: Keycloak answered {dict(answers)} (expected 204 for each of {n}); no figure printed")
        self.check_mails(domain, emails, "plain", since)
        return used

    def keybridge(self, n: int) -> dict:
        since = time.time()
        with self.workers() as pids:
            account = f"BENCH-BATCH-{self.run}-{uuid.uuid4().hex[:4]}"
            self.organization(account)
            self.batch(account, "kb-warm", WARM_UP)  # workers started, Keycloak's and PostgreSQL's paths warm
            before = self.meter.read(pids)
            domain, emails, batch_id, intake = self.batch(account, "kb", n, timed=True)
            used = Meter.between(before, self.meter.read(pids))
            # this process: the webhook's intake is Keybridge's (the web app's) work; polling the status is the bench's
            used["others"] += max(0.0, used["bench"] - intake)
            used["bench"] = intake
        status = batches.batch_status(self.kb, batch_id, limit=0)
        if status["counts"] != {"sent": n}:
            raise SystemExit(f"keybridge: the batch settled as {status['counts']} (expected {n} sent); no figure printed")
        self.check_mails(domain, emails, "keybridge", since)
        return used

    def ids_read(self, emails: list[str]) -> int:
        from sqlalchemy import func, select

        from adapter.models import Invitation

        with self.kb.db.session() as session:
            return session.scalar(select(func.count()).select_from(Invitation).where(
                Invitation.email.in_(emails), Invitation.keycloak_invitation_id.is_not(None)))

    def batch(self, account: str, label: str, n: int, timed: bool = False):
        domain, emails = self.addresses(label, n)
        since = time.time()
        batch_id = f"{label}-{uuid.uuid4().hex[:8]}"
        items = [{"kind": "contact", "contact_id": f"{batch_id}-{i}", "email": e, "account_id": account, "first_name": "Bench",
                  "last_name": str(i)} for i, e in enumerate(emails)]
        body = envelope("invitations.batch_requested", {"batch_id": batch_id, "items": items})
        cpu = time.process_time()
        r = signed_post(self.client, body)
        intake = time.process_time() - cpu
        if r.status_code != 202:
            raise SystemExit(f"the batch webhook answered {r.status_code}: {r.get_data(as_text=True)[:300]}")
        last_done, last_change = -1, time.monotonic()
        while True:
            status = batches.batch_status(self.kb, batch_id, limit=0)
            done = status["done"] if status else 0
            if status and status["status"] == "completed" and self.ids_read(emails) == n:
                break  # and Keycloak's id of every invitation is read (the last read follows the completion)
            if done != last_done:
                last_done, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > 120:
                raise SystemExit(f"keybridge: no progress for 120 s at {done}/{n}; worker logs in {self.logs}")
            time.sleep(0.25)
        if not timed:
            self.check_mails(domain, emails, "keybridge warm-up", since)
            return None
        return domain, emails, batch_id, intake


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1000], help="batch sizes, e.g. --items 1000 10000")
    parser.add_argument("--workers", type=int, default=3, help="Keybridge worker processes")
    parser.add_argument("--threads", type=int, default=4, help="KEYBRIDGE_WORKER_THREADS of each worker")
    parser.add_argument("--concurrency", type=int, default=8, help="KEYBRIDGE_KEYCLOAK_CONCURRENCY of each worker")
    parser.add_argument("--chunk", type=int, default=25, help="KEYBRIDGE_BATCH_CHUNK_SIZE")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--paths", default="plain,keybridge")
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    bench = Bench(args)
    cpus = os.cpu_count() or 1
    mtu = loopback_mtu()
    say(f"{cpus} CPUs; {args.workers} workers x {args.threads} threads, Keycloak concurrency {args.concurrency}, chunks of {args.chunk}; "
        f"load average {os.getloadavg()[0]:.2f}; loopback MTU {mtu}")
    if mtu > 9000:
        say("  warning: with a loopback MTU this large, each invitation email just over 8 KB waits ~40 ms in Keycloak for a\n"
            "  delayed ACK (JavaMail writes 8 KB at a time, Nagle holds the rest): it slows the plain loop (one call at a\n"
            "  time) about 4x, and Keybridge (8 at a time) hardly. A real network's MTU does not; run in a private network\n"
            "  namespace with `ip link set lo up mtu 1500` (see bench/README.md) for a fair baseline.")
    results: dict[int, list[dict]] = {}
    for n in args.items:
        for r in range(args.rounds):
            say(f"\n{n} invitations, round {r + 1}/{args.rounds}")
            out = {}
            for path in paths:
                out[path] = getattr(bench, path)(n)
                say(f"  {path:10} {out[path]['wall']:7.1f} s  {n / out[path]['wall']:6.1f}/s  (checked: every address mailed once"
                    f"{', every item sent' if path == 'keybridge' else ', every call 204'})")
            results.setdefault(n, []).append(out)
            report(n, out, cpus)
    if args.rounds > 1 or len(args.items) > 1:
        say("\nmedians")
        for n, rounds in results.items():
            line = f"  {n:>6} items:"
            for path in paths:
                line += f"  {path} {statistics.median(n / o[path]['wall'] for o in rounds):.1f}/s"
            if len(paths) == 2:
                line += f"  ratio {statistics.median(o['plain']['wall'] / o['keybridge']['wall'] for o in rounds):.2f}x"
            line += f"  (load average {statistics.median(o[paths[0]]['load'] for o in rounds):.1f})"
            say(line)
    return 0


def report(n: int, out: dict, cpus: int) -> None:
    if "plain" in out and "keybridge" in out:
        say(f"  ratio keybridge/plain: {out['plain']['wall'] / out['keybridge']['wall']:.2f}x")
    say(f"  CPU seconds {'':14}{'keycloak':>9}{'keybridge':>10}{'plain':>7}{'postgres':>9}{'others':>8}   Keycloak ms/invitation")
    for path, used in out.items():
        keybridge = used["workers"] + (used["bench"] if path == "keybridge" else 0.0)
        plain = used["bench"] if path == "plain" else 0.0
        say(f"  {path:26}{used['keycloak']:9.1f}{keybridge:10.1f}{plain:7.1f}{used['postgres']:9.1f}{used['others']:8.1f}"
            f"   {1000 * used['keycloak'] / n:6.1f}   (wall {used['wall']:.1f} s, load {used['load']:.1f})")
    # The ceiling each path's own Keycloak CPU per invitation sets (on a busy machine the two differ:
    # a loop of one request at a time pays for every wait, see bench/README.md).
    parts = []
    for path, used in out.items():
        if used["keycloak"] > 0:
            ceiling = cpus / (used["keycloak"] / n)
            parts.append(f"{path} {1000 * used['keycloak'] / n:.1f} ms -> at most {ceiling:.0f}/s, reached {100 * (n / used['wall']) / ceiling:.0f}%")
    if parts:
        say(f"  ceiling (Keycloak CPU per invitation on {cpus} CPUs): " + "; ".join(parts))

if __name__ == "__main__":
    sys.exit(main())
