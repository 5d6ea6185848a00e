"""Cutting off and restoring a large organization: the adapter against a plain script.

    python bench/contract_cutoff.py [--members 1000] [--concurrency 8] [--rounds 1] [--paths adapter,plain,extension]

Runs against the real test Keycloak (tests/support/stack.py starts it or reuses it).
Setup, not timed: an organization with crm_account_id BENCH-<members> and that many
member users, created once and reused by later runs, all enabled.

Timed, in the same run and on the same Keycloak:

- adapter: what `account.upserted` does now, `accounts.converge_account` with the contract
  suspended, then active again, through `Keybridge(settings)` (the organization's
  attributes written: that is the cut-off), timed until one member's password login and
  refresh are refused (accepted); its Keycloak writes counted. The members' follow-up
  (`contract_members`: sessions ended, one CRM event each) is run and timed apart, as the
  background work it is, with `keycloak_concurrency=--concurrency`;
- plain: the per-user path (what the adapter did before) as a script making its Keycloak calls one by one with `requests` and the
  adapter's own service-account token: the member list, then per member
  PUT users/{id} {"enabled": false} and POST users/{id}/logout; then per member
  PUT users/{id} {"enabled": true}.

- extension: Keybridge's Keycloak extension decides at login and refresh from the
  organization's contract_status, so the cut-off is one organization write
  (contract_status=suspended) and the restore one write back; timed until one member's
  password login and refresh-token grant are refused (cut off) or accepted again
  (restore). Nobody's `enabled` flag changes.

After each phase every member is read back as the master admin: a run where the
users did not really change fails instead of printing a figure (for the extension:
every member still enabled, and the sample member really refused, then accepted). Prints the times
side by side and the ratio plain/adapter, then where the time went (CPU of Keycloak,
of this process and of everything else); it is a measurement, not a test. A second run
on the same test stack waits for the first (they would change each other's users).
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR))  # `python bench/contract_cutoff.py` from anywhere

import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402
from sqlalchemy import select  # noqa: E402

from adapter.config import Settings  # noqa: E402
from adapter.handlers import accounts, contracts  # noqa: E402
from adapter.keycloak import KeycloakGateway  # noqa: E402
from adapter.models import Job, OutboxEvent  # noqa: E402
from adapter.runtime import Keybridge  # noqa: E402
from tests.support import stack  # noqa: E402

import procstat  # noqa: E402 (bench/, beside this file)

SETUP_THREADS = 8
PAGE_SIZE = 500


def say(message: str) -> None:
    print(message, flush=True)


class Progress:
    """Counts finished users from any thread and prints a line every `step` of them."""

    def __init__(self, label: str, total: int):
        self.label, self.total = label, total
        self.step = max(100, total // 10)
        self.done = 0
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self.done += 1
            done = self.done
        if done % self.step == 0 or done == self.total:
            say(f"    {self.label}: {done}/{self.total}")


# --- the master admin: setup and read-back, never timed ---------------------------------


class AdminApi:
    """The customers realm's admin REST API as the master admin (its token lives 60 s: renewed at 30 s)."""

    def __init__(self, kc: stack.KeycloakInstance):
        self.kc = kc
        self.base = kc.admin_url
        self.http = requests.Session()
        self.http.mount("http://", HTTPAdapter(pool_maxsize=SETUP_THREADS * 2))
        self._token_at = 0.0
        self._lock = threading.Lock()

    def _authorize(self) -> None:
        with self._lock:
            if time.monotonic() - self._token_at > 30:
                self.http.headers["Authorization"] = f"Bearer {self.kc.admin_token()}"
                self._token_at = time.monotonic()

    def request(self, method: str, path: str, ok=(200, 201, 204), **kwargs) -> requests.Response:
        self._authorize()
        url = path if path.startswith("http") else self.base + path
        response = self.http.request(method, url, timeout=60, **kwargs)
        if response.status_code not in ok:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
        return response

    def keycloak_version(self) -> str:
        info = self.request("GET", f"{self.kc.url}/admin/serverinfo").json()
        return info.get("systemInfo", {}).get("version", "?")

    def organization(self, account_id: str) -> dict | None:
        orgs = self.request("GET", "/organizations", params={"q": f"crm_account_id:{account_id}", "exact": "true",
                                                             "briefRepresentation": "false"}).json()
        return orgs[0] if orgs else None

    def members(self, org_id: str) -> list[dict]:
        members, first = [], 0
        while True:
            page = self.request("GET", f"/organizations/{org_id}/members",
                                params={"first": first, "max": PAGE_SIZE, "briefRepresentation": "true"}).json()
            members.extend(page)
            if len(page) < PAGE_SIZE:
                return members
            first += PAGE_SIZE

    def users_at(self, domain: str) -> dict[str, str]:
        """email -> id of the users whose email is at `domain` (the realm may use emails as usernames)."""
        found, first = {}, 0
        while True:
            page = self.request("GET", "/users", params={"email": f"@{domain}", "first": first, "max": PAGE_SIZE,
                                                         "briefRepresentation": "true"}).json()
            found.update({u["email"]: u["id"] for u in page if (u.get("email") or "").endswith(f"@{domain}")})
            if len(page) < PAGE_SIZE:
                return found
            first += PAGE_SIZE


def ensure_bench_organization(admin: AdminApi, members: int) -> tuple[str, str]:
    """The BENCH-<members> organization with `members` enabled member users; returns (account_id, org_id)."""
    account_id = f"BENCH-{members}"
    slug = account_id.lower()
    domain = f"{slug}.bench.example"
    org = admin.organization(account_id)
    if org is None:
        admin.request("POST", "/organizations", json={
            "name": f"Benchmark: {members} members", "alias": f"crm-{slug}", "enabled": True,
            "attributes": {"crm_account_id": [account_id], "contract_status": ["active"]},
            "domains": [{"name": domain, "verified": False}]})
        org = admin.organization(account_id)
    org_id = org["id"]

    have = {m["id"]: m for m in admin.members(org_id)}
    if len(have) < members:
        emails = [f"{slug}-{i:05d}@{domain}" for i in range(1, members + 1)]
        existing = admin.users_at(domain)
        missing = [e for e in emails if e not in existing]
        progress = Progress("setup: users created", len(missing))

        def create(email: str) -> None:
            admin.request("POST", "/users", ok=(201, 409), json={
                "username": email.split("@")[0], "email": email, "emailVerified": True, "enabled": True,
                "firstName": "Bench", "lastName": email.split("@")[0]})
            progress.tick()

        if missing:
            say(f"  setup: creating {len(missing)} users")
            _run_all(create, missing)
            existing = admin.users_at(domain)
        joining = [existing[e] for e in emails if existing[e] not in have]
        progress = Progress("setup: members added", len(joining))

        def join(user_id: str) -> None:
            admin.request("POST", f"/organizations/{org_id}/members", ok=(201, 204, 409), data=user_id,
                          headers={"Content-Type": "application/json"})
            progress.tick()

        say(f"  setup: adding {len(joining)} members to the organization")
        _run_all(join, joining)
        have = {m["id"]: m for m in admin.members(org_id)}
    if len(have) != members:
        raise SystemExit(f"organization {account_id} has {len(have)} members, expected {members}; "
                         "delete it in the Keycloak admin console and run again")

    # A run that stopped half-way may have left members disabled: the adapter would take
    # them for administrator-disabled and skip them.
    disabled = [uid for uid, m in have.items() if not m.get("enabled", True)]
    if disabled:
        say(f"  setup: enabling {len(disabled)} members left disabled by an earlier run")
        _run_all(lambda uid: admin.request("PUT", f"/users/{uid}", json={"enabled": True}), disabled)
    return account_id, org_id


def _run_all(fn, items: list) -> None:
    with ThreadPoolExecutor(max_workers=SETUP_THREADS) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


def check_members(admin: AdminApi, org_id: str, enabled: bool, expected: int, who: str, phase: str) -> None:
    """Fail loudly unless every one of the `expected` members is now enabled (or disabled)."""
    members = admin.members(org_id)
    right = sum(1 for m in members if m.get("enabled", True) == enabled)
    if len(members) != expected or right != expected:
        raise SystemExit(f"{who} {phase}: {right} of {len(members)} members are {'enabled' if enabled else 'disabled'}, "
                         f"expected all {expected}; the figure would be meaningless")


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Phase:
    """One timed phase: wall time and the CPU seconds spent meanwhile, by whom."""

    wall: float = 0.0
    writes: int = 0  # Keycloak calls that change something
    refused_after: float | None = None  # extension: seconds until the sample member's login and refresh flipped
    keycloak_cpu: float | None = None
    bench_cpu: float = 0.0
    other_cpu: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)  # where the adapter's time went


class Meter:
    """Wall clock plus CPU of Keycloak (its process), of this process, and of everything else.

    On a machine where Keycloak shares the CPUs, these say whether a phase waited on
    the network or ran out of CPU (and whether other programs took some of it).
    """

    def __init__(self, keycloak_port: int):
        # A private helper of the stack module, reused rather than copied: it finds
        # the listening process in /proc.
        self.keycloak_pid = stack._listener_pid(keycloak_port)

    def _read(self) -> tuple[float, float | None, float, float]:
        kc = procstat.cpu_of(self.keycloak_pid) if self.keycloak_pid else None
        return time.perf_counter(), kc, time.process_time(), procstat.busy_seconds()

    @contextmanager
    def phase(self) -> Iterator[Phase]:
        phase = Phase()
        wall0, kc0, own0, busy0 = self._read()
        yield phase
        wall1, kc1, own1, busy1 = self._read()
        phase.wall, phase.bench_cpu = wall1 - wall0, own1 - own0
        phase.keycloak_cpu = kc1 - kc0 if kc0 is not None and kc1 is not None else None
        phase.other_cpu = max(0.0, (busy1 - busy0) - phase.bench_cpu - (phase.keycloak_cpu or 0.0))


# --- the adapter ----------------------------------------------------------------------


class CountingGateway(KeycloakGateway):
    """The adapter's gateway, unchanged, plus a count of the calls that change something in Keycloak."""

    WRITES = ("create_organization", "update_organization", "update_organization_attributes", "set_enabled", "logout",
              "update_user", "add_member", "remove_member", "ensure_realm_roles", "save_admin_user_policy",
              "save_admin_permission", "delete_admin_policy")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.writes: dict[str, int] = {}
        self._count_lock = threading.Lock()
        for name in self.WRITES:
            setattr(self, name, self._counted(name, getattr(self, name)))

    def _counted(self, name, method):
        def call(*args, **kwargs):
            result = method(*args, **kwargs)
            with self._count_lock:
                self.writes[name] = self.writes.get(name, 0) + 1
                self.last_write_at = time.perf_counter()
            return result
        return call

    def take_writes(self) -> dict[str, int]:
        with self._count_lock:
            taken, self.writes = self.writes, {}
        return taken


def bench_account(account_id: str, members: int, status: str) -> dict:
    """The account.upserted body the bench organization stands for (its name and domain as set up)."""
    slug = account_id.lower()
    return {"account_id": account_id, "name": f"Benchmark: {members} members", "domains": [f"{slug}.bench.example"],
            "contract": {"status": status}}


def run_adapter(settings: Settings, account_id: str, org_id: str, members: int, admin: AdminApi, sample: "SampleMember",
                meter: Meter) -> tuple[Phase, Phase, Phase, Phase]:
    """converge_account suspended, then active; returns the (cut off, restore) phases and their background follow-ups."""
    gateway = CountingGateway.from_settings(settings)
    kb = Keybridge(settings, keycloak=gateway)
    try:
        accounts.converge_account(kb, account_id, "bench: setup", bench_account(account_id, members, "active"))  # not timed
        gateway.take_writes()
        phases = []
        refresh_token = sample.refresh_token()
        for status, refused in (("suspended", True), ("active", False)):
            if not refused:
                refresh_token = None  # the cut-off's follow-up ended the sample's sessions, as it should
            with meter.phase() as phase, ThreadPoolExecutor(max_workers=1) as checker:
                started = time.perf_counter()
                # The sample member tries to log in (and refresh) from the moment the webhook's work starts.
                flipped = checker.submit(sample.until, refused, refresh_token, started)
                state = accounts.converge_account(kb, account_id, f"bench: contract {status}", bench_account(account_id, members, status))
                converged = time.perf_counter() - started
                written = gateway.last_write_at - started
                phase.refused_after = flipped.result()
            writes = gateway.take_writes()
            phase.writes = sum(writes.values())
            phase.parts = {"the organization write returned at": written,
                           "converge_account returned at (admins' permissions, Keybridge's rows)": converged}
            if state != ("inactive" if refused else "active"):
                raise SystemExit(f"adapter {status}: converge_account answered {state!r}")
            if set(writes) - {"update_organization"}:
                raise SystemExit(f"adapter {status}: the cut-off path wrote more than the organization: {writes}")
            check_members(admin, org_id, True, members, "adapter", f"{status} (nobody's enabled flag changes)")
            phases.append(phase)
            phases.append(follow_up(kb, gateway, account_id, members, refused, meter))
        return tuple(phases)
    finally:
        kb.db.dispose()


def follow_up(kb, gateway: CountingGateway, account_id: str, members: int, cut: bool, meter: Meter) -> Phase:
    """The queued contract_members job, run now: every member's sessions ended (cut off) and one CRM event each."""
    with kb.db.session() as session:
        (job,) = session.scalars(select(Job).where(Job.kind == contracts.MEMBERS_JOB, Job.status == "queued")).all()
        session.expunge(job)
    with meter.phase() as phase:
        outcome = contracts.handle_contract_members(kb, job)
    with kb.db.session() as session:
        session.get(Job, job.id).status = "done"
        told = len(session.scalars(select(OutboxEvent.id).where(OutboxEvent.type == "identity.access_changed",
                                                                OutboxEvent.dedupe_key.endswith(job.payload["since"]))).all())
    writes = gateway.take_writes()
    phase.writes = sum(writes.values())
    expected = members - 1 if not cut else members  # the sample member's own sessions: ended too
    if told < expected - 1 or (cut and writes.get("logout", 0) < expected - 1):
        raise SystemExit(f"adapter follow-up: {outcome}; {told} CRM events, {writes} writes for {members} members")
    phase.parts = {"outcome": 0.0}
    say(f"    follow-up ({'cut off' if cut else 'restore'}): {outcome}, {told} CRM events, writes {writes}, {phase.wall:.2f} s")
    return phase


# --- the plain script -------------------------------------------------------------------


class PlainScript:
    """What someone would write by hand: one requests.Session, one call after the other."""

    def __init__(self, kc: stack.KeycloakInstance):
        self.kc = kc
        self.http = requests.Session()
        self.calls = 0
        self._expires = 0.0

    def _token(self) -> None:
        if time.monotonic() < self._expires:
            return
        r = self.http.post(f"{self.kc.realm_url}/protocol/openid-connect/token", timeout=30, data={
            "grant_type": "client_credentials", "client_id": self.kc.client_id, "client_secret": self.kc.client_secret})
        r.raise_for_status()
        token = r.json()
        self.http.headers["Authorization"] = f"Bearer {token['access_token']}"
        self._expires = time.monotonic() + token.get("expires_in", 60) - 10

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        self._token()
        r = self.http.request(method, f"{self.kc.admin_url}{path}", timeout=30, **kwargs)
        self.calls += 1
        r.raise_for_status()
        return r

    def members(self, org_id: str) -> list[dict]:
        members, first = [], 0
        while True:
            page = self.call("GET", f"/organizations/{org_id}/members",
                             params={"first": first, "max": PAGE_SIZE, "briefRepresentation": "false"}).json()
            members.extend(page)
            if len(page) < PAGE_SIZE:
                return members
            first += PAGE_SIZE

    def cut_off(self, org_id: str) -> list[str]:
        ids = [m["id"] for m in self.members(org_id) if m.get("enabled", True)]
        progress = Progress("plain cut off", len(ids))
        for user_id in ids:
            self.call("PUT", f"/users/{user_id}", json={"enabled": False})
            self.call("POST", f"/users/{user_id}/logout")
            progress.tick()
        return ids

    def restore(self, ids: list[str]) -> None:
        progress = Progress("plain restore", len(ids))
        for user_id in ids:
            self.call("PUT", f"/users/{user_id}", json={"enabled": True})
            progress.tick()


def run_plain(kc: stack.KeycloakInstance, org_id: str, members: int, admin: AdminApi,
              meter: Meter) -> tuple[Phase, Phase, int]:
    """The same Keycloak calls one by one; returns the (cut off, restore) phases and the number of calls."""
    script = PlainScript(kc)
    with meter.phase() as cut:
        ids = script.cut_off(org_id)
    cut.writes = 2 * len(ids)
    check_members(admin, org_id, False, members, "plain", "cut off")
    with meter.phase() as restore:
        script.restore(ids)
    restore.writes = len(ids)
    check_members(admin, org_id, True, members, "plain", "restore")
    return cut, restore, script.calls


# --- the extension ----------------------------------------------------------------------


class SampleMember:
    """One member with a password: whether Keycloak refuses their login and refresh is the cut-off's effect."""

    PASSWORD = "Bench-Extension-Pw-1!"
    WAIT_LIMIT = 30.0

    def __init__(self, kc: stack.KeycloakInstance, admin: AdminApi, org_id: str):
        self.token_url = f"{kc.realm_url}/protocol/openid-connect/token"
        self.http = requests.Session()
        member = admin.request("GET", f"/organizations/{org_id}/members", params={"first": 0, "max": 1}).json()[0]
        self.id, self.name = member["id"], member["username"]
        admin.request("PUT", f"/users/{self.id}/reset-password",
                      json={"type": "password", "value": self.PASSWORD, "temporary": False})

    def login(self) -> requests.Response:
        return self.http.post(self.token_url, timeout=30, data={
            "grant_type": "password", "client_id": "customer-portal", "username": self.name, "password": self.PASSWORD})

    def refresh(self, refresh_token: str) -> requests.Response:
        return self.http.post(self.token_url, timeout=30, data={
            "grant_type": "refresh_token", "client_id": "customer-portal", "refresh_token": refresh_token})

    def refresh_token(self) -> str:
        r = self.login()
        if r.status_code != 200:
            raise SystemExit(f"the sample member cannot log in before the phase: {r.text[:200]}")
        return r.json()["refresh_token"]

    def until(self, refused: bool, refresh_token: str | None, started: float) -> float:
        """Seconds from `started` until both the login and the refresh are refused (or both accepted);
        without a refresh token (its session was ended meanwhile), the login alone."""
        want = (lambda r: r.status_code == 400 and r.json().get("error") == "invalid_grant") if refused else (
            lambda r: r.status_code == 200)
        login_done, refresh_done = False, refresh_token is None
        while not (login_done and refresh_done):
            if time.perf_counter() - started > self.WAIT_LIMIT:
                raise SystemExit(f"the sample member's login/refresh did not flip within {self.WAIT_LIMIT:.0f} s "
                                 "(is keycloak-extension installed and wired in realm-config?)")
            login_done = login_done or want(self.login())
            refresh_done = refresh_done or want(self.refresh(refresh_token))
        return time.perf_counter() - started


class ExtensionPath:
    """The cut-off as one organization write, checked by one member's login and refresh.

    Keybridge's Keycloak extension (keycloak-extension/) refuses the password grant and
    the refresh-token grant while the organization's contract_status is not active. The
    write goes through the adapter's own service account, as the adapter would make it.
    """

    def __init__(self, kc: stack.KeycloakInstance, admin: AdminApi, org_id: str, sample: SampleMember):
        self.kc, self.admin, self.org_id, self.sample = kc, admin, org_id, sample
        self.script = PlainScript(kc)  # the adapter's service-account token, one session

    def _set_contract(self, status: str) -> None:
        org = self.script.call("GET", f"/organizations/{self.org_id}").json()
        org.setdefault("attributes", {})["contract_status"] = [status]
        self.script.call("PUT", f"/organizations/{self.org_id}", json=org)

    def run(self, members: int, meter: Meter) -> tuple[Phase, Phase]:
        refresh_token = self.sample.refresh_token()
        with meter.phase() as cut:
            started = time.perf_counter()
            self._set_contract("suspended")
            written = time.perf_counter() - started
            cut.refused_after = self.sample.until(True, refresh_token, started)
        cut.writes, cut.parts = 1, {"the write (GET + PUT organization)": written,
                                    "checking login and refresh": cut.wall - written}
        check_members(self.admin, self.org_id, True, members, "extension", "cut off (nobody's enabled flag changes)")
        with meter.phase() as restore:
            started = time.perf_counter()
            self._set_contract("active")
            written = time.perf_counter() - started
            restore.refused_after = self.sample.until(False, refresh_token, started)
        restore.writes, restore.parts = 1, {"the write (GET + PUT organization)": written,
                                            "checking login and refresh": restore.wall - written}
        check_members(self.admin, self.org_id, True, members, "extension", "restore")
        return cut, restore


# --- report -----------------------------------------------------------------------------


class PoolDiscards(logging.Handler):
    """Counts urllib3's 'Connection pool is full, discarding connection' (a pool smaller than the threads)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "pool is full" in record.getMessage():
            self.count += 1


PHASES = ("adapter cut off", "adapter restore", "adapter follow-up (cut off)", "adapter follow-up (restore)",
          "plain cut off", "plain restore", "extension cut off", "extension restore")


def report(rounds: list[dict[str, Phase]], members: int, concurrency: int, version: str, calls: int,
           discards: int) -> None:
    def median(fn) -> float:
        return statistics.median(fn(r) for r in rounds)

    def mean(values) -> float:
        values = list(values)
        return sum(values) / len(values)

    say("")
    say(f"Cutting off and restoring an organization of {members} members")
    say(f"Keycloak {version} (test stack: dev mode, H2), {os.cpu_count()} CPUs shared by Keycloak and this process; "
        f"adapter keycloak_concurrency={concurrency}; {len(rounds)} round(s), median shown")
    if calls:
        say(f"plain script: {calls} Keycloak calls one by one (member list; PUT enabled=false + POST logout; PUT enabled=true)")
    say("adapter: converge_account (what account.upserted runs), timed until a member's password login and refresh "
        "are refused (cut off) or the login accepted (restore); the members' follow-up is timed apart (background)")
    say("extension: one organization write (contract_status) by hand, timed the same way")
    say("")
    paths = [w for w in ("adapter", "plain", "extension") if f"{w} cut off" in rounds[0]]
    ratios = ["plain"] if "plain" in paths and "adapter" in paths else []
    say(f"{'':12}" + "".join(f"{w:>12}" for w in paths) + "".join(f"{'plain/adapter':>15}" for _ in ratios))

    def both(r, who):
        return r[f"{who} cut off"].wall + r[f"{who} restore"].wall

    rows = [("cut off", {w: median(lambda r, w=w: r[f"{w} cut off"].wall) for w in paths}),
            ("restore", {w: median(lambda r, w=w: r[f"{w} restore"].wall) for w in paths}),
            ("total", {w: median(lambda r, w=w: both(r, w)) for w in paths})]
    for label, seconds in rows:
        say(f"{label:12}" + "".join(f"{seconds[w]:>10.2f} s" for w in paths)
            + "".join(f"{seconds[w] / seconds['adapter']:>14.0f}x" for w in ratios))
    writes = {w: (rounds[0][f"{w} cut off"].writes, rounds[0][f"{w} restore"].writes) for w in paths}
    say(f"{'writes':12}" + "".join(f"{f'{c} + {r}':>12}" for c, r in writes.values()))
    say("(plain: a member is refused once their own disable ran, the last one at the end of the phase; "
        "adapter and extension: every member at once)")
    for who in [w for w in ("adapter", "extension") if w in paths]:
        say(f"{who}: login and refresh refused {median(lambda r, w=who: r[f'{w} cut off'].refused_after):.3f} s after the "
            f"{'webhook work' if who == 'adapter' else 'write'} started, accepted again "
            f"{median(lambda r, w=who: r[f'{w} restore'].refused_after):.3f} s after the renewal's")
    if "adapter" in paths:
        say(f"adapter, in the background afterwards (not on the cut-off's path): follow-up of the cut off "
            f"{median(lambda r: r['adapter follow-up (cut off)'].wall):.2f} s "
            f"({rounds[0]['adapter follow-up (cut off)'].writes} writes: sessions ended; one CRM event per member), "
            f"of the restore {median(lambda r: r['adapter follow-up (restore)'].wall):.2f} s "
            f"({rounds[0]['adapter follow-up (restore)'].writes} writes)")

    say("")
    say(f"where the time went (CPU-seconds, mean of the rounds; {os.cpu_count()} CPUs give "
        f"{os.cpu_count()} CPU-s per second of wall time)")
    say(f"{'':30}{'wall':>8}{'Keycloak':>10}{'bench':>8}{'others':>8}{'CPUs busy':>11}")
    for name in [n for n in PHASES if n in rounds[0]]:
        phases = [r[name] for r in rounds]
        wall = mean(p.wall for p in phases)
        kc = mean(p.keycloak_cpu for p in phases) if all(p.keycloak_cpu is not None for p in phases) else None
        own, other = mean(p.bench_cpu for p in phases), mean(p.other_cpu for p in phases)
        busy = ((kc or 0.0) + own + other) / wall / (os.cpu_count() or 1)
        kc_text = f"{kc:>10.2f}" if kc is not None else f"{'?':>10}"
        say(f"{name:30}{wall:>8.2f}{kc_text}{own:>8.2f}{other:>8.2f}{busy:>10.0%}")
    for name in [n for n in PHASES[:2] + PHASES[6:] if n in rounds[0]]:
        parts = {k: mean(r[name].parts[k] for r in rounds) for k in rounds[0][name].parts}
        say(f"{name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))
    if discards:
        say(f"\nurllib3 discarded {discards} connection(s) because its pool was full: the adapter ran more "
            "threads than python-keycloak's connection pool holds (requests' default, 10 per host)")


@contextmanager
def one_run_at_a_time() -> Iterator[None]:
    """Two runs on the same Keycloak would change each other's users and share its CPUs: wait for the other."""
    stack.TEST_DIR.mkdir(parents=True, exist_ok=True)
    with open(stack.TEST_DIR / "bench-contract-cutoff.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another run of this benchmark uses the test Keycloak: waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000, help="members of the organization (default 1000)")
    parser.add_argument("--concurrency", type=int, default=8, help="the adapter's keycloak_concurrency (default 8)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every path; the median is shown (default 1)")
    parser.add_argument("--paths", default="adapter,plain,extension",
                        help="which ways to cut off, comma-separated (default adapter,plain,extension)")
    args = parser.parse_args(argv)

    discards = PoolDiscards()
    pool_log = logging.getLogger("urllib3.connectionpool")
    pool_log.addHandler(discards)
    pool_log.propagate = False  # counted and reported once, not printed a thousand times

    with one_run_at_a_time():
        return run(args, discards)


def run(args: argparse.Namespace, discards: PoolDiscards) -> int:
    say("starting or reusing the test Keycloak and mail sink (tests/support/stack.py)")
    stack.ensure_mail_sink()
    kc = stack.ensure_keycloak()
    admin = AdminApi(kc)
    version = admin.keycloak_version()
    meter = Meter(int(kc.url.rsplit(":", 1)[1]))
    say(f"setup (not timed): organization BENCH-{args.members} with {args.members} members")
    account_id, org_id = ensure_bench_organization(admin, args.members)

    rounds: list[dict[str, Phase]] = []
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = set(paths) - {"adapter", "plain", "extension"}
    if unknown or not paths:
        raise SystemExit(f"--paths: {', '.join(sorted(unknown)) or 'nothing'} is not one of adapter, plain, extension")
    calls = 0
    with tempfile.TemporaryDirectory(prefix="keybridge-bench-") as tmp:
        for round_no in range(1, args.rounds + 1):
            settings = Settings.from_env(
                {}, database_url=f"sqlite:///{Path(tmp) / f'round{round_no}.db'}",
                keycloak_url=kc.url, keycloak_realm=kc.realm, keycloak_client_id=kc.client_id,
                keycloak_client_secret=kc.client_secret, keycloak_concurrency=args.concurrency,
                keycloak_delegation_client_secret=kc.delegation_client_secret)
            phases: dict[str, Phase] = {}
            if "adapter" in paths:
                say(f"round {round_no}/{args.rounds}: adapter (converge_account; follow-up concurrency {args.concurrency})")
                (phases["adapter cut off"], phases["adapter follow-up (cut off)"], phases["adapter restore"],
                 phases["adapter follow-up (restore)"]) = run_adapter(settings, account_id, org_id, args.members, admin,
                                                                      SampleMember(kc, admin, org_id), meter)
                say(f"  adapter: cut off {phases['adapter cut off'].wall:.3f} s, "
                    f"restore {phases['adapter restore'].wall:.3f} s")
            if "plain" in paths:
                say(f"round {round_no}/{args.rounds}: plain script")
                phases["plain cut off"], phases["plain restore"], calls = run_plain(kc, org_id, args.members, admin, meter)
                say(f"  plain:   cut off {phases['plain cut off'].wall:.2f} s, restore {phases['plain restore'].wall:.2f} s")
            if "extension" in paths:
                say(f"round {round_no}/{args.rounds}: extension (one organization write)")
                phases["extension cut off"], phases["extension restore"] = ExtensionPath(
                    kc, admin, org_id, SampleMember(kc, admin, org_id)).run(args.members, meter)
                say(f"  extension: cut off {phases['extension cut off'].wall:.3f} s, "
                    f"restore {phases['extension restore'].wall:.3f} s")
            rounds.append(phases)

    report(rounds, args.members, args.concurrency, version, calls, discards.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
