"""Reconciling a CRM export of 100,000 contacts against Keycloak: the adapter against a naive script.

    python bench/reconcile.py [--contacts 100000] [--rounds 3] [--sample 1000] [--concurrency 8]

Runs against its own Keycloak instance `bench-reconcile-<contacts>` (scripts/keycloak.sh,
port 28080, data in .data/bench-reconcile-<contacts>/, kept between runs: seeded once;
never reset when realm-config changes). Setup, not timed:

- contacts/100 organizations BENCH-A-0001... (contract active) through the admin API;
- the users, straight into the stopped instance's H2 database (`SEED_SQL`: one
  INSERT ... SELECT per table, as Keycloak itself writes them; the realm's partial import
  took ~90 ms a user here, 2.5 hours for 100,000): user, attribute crm_contact_id
  BENCH-C-000001..., realm roles default-roles-customers and member, member of its
  organization (100 an organization);
- a CSV export (one file, record_type column) with seeded drift (`expected_drift`): 1% of
  contacts with other CRM roles, 1% left the company, 1% with another first name, 0.1% of
  identities left out of the export, 0.5% more contacts without identity, and 1% of the
  accounts suspended in the CRM while their organizations say active.

Timed, each in a fresh child process (its wall time, CPU time and peak RSS are its own):

- adapter: what `keybridge reconcile --from export.csv --no-wait` does (not a dry run: the
  drift found and one event stored per drifted record, into a new SQLite database each
  time); the worker does not run, so Keycloak stays as seeded;
- naive baseline: one contact at a time, what an operator's script would do: find the user
  by crm_contact_id, read its organizations and its realm roles (3 calls), with `requests`
  and the adapter's own service-account token. It runs on the first `--sample` contacts and
  is extrapolated linearly to all of them.

Checks: the adapter's drift counts must equal the seeded ones, and the events it stored
must be exactly the upserts of the seeded drifted records; otherwise the run stops with an
error instead of printing a figure. It is a measurement, not a test.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR))

import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

from tests.support import stack  # noqa: E402

HTTP_PORT = 28080
NAME = "bench-reconcile"  # + "-<contacts>": one instance per size (their seeds differ)
CLIENT_SECRET = stack.TEST_CLIENT_SECRET
SETUP_THREADS = 8


def say(message: str) -> None:
    print(message, flush=True)


# --- the seeded world ------------------------------------------------------------------------


def account_id(j: int) -> str:
    return f"BENCH-A-{j:04d}"


def contact_id(i: int) -> str:
    return f"BENCH-C-{i:06d}"


def username(i: int) -> str:
    return f"rc-{i:06d}@bench.example"  # the realm uses emails as usernames


PER_ACCOUNT = 100


def account_of(i: int, contacts: int, accounts: int) -> int:
    """Contact i belongs to account account_of(i): 100 contacts an account."""
    return min(accounts, (i - 1) // PER_ACCOUNT + 1)


def suspended(j: int) -> bool:
    return j % 100 == 7  # 1% of accounts are suspended in the CRM, still active in Keycloak


def drift_of(i: int) -> str | None:
    """What is wrong with contact i (the export says one thing, Keycloak another)."""
    if i % 1000 == 999:
        return "unknown_identity"  # left out of the export
    return {1: "roles_differ", 2: "left_can_login", 3: "profile_differs"}.get(i % 100)


def expected_drift(contacts: int, accounts: int) -> dict[str, int]:
    """The drift the adapter must find in the seeded world."""
    counts = dict.fromkeys(("roles_differ", "left_can_login", "profile_differs", "unknown_identity"), 0)
    access = 0
    for i in range(1, contacts + 1):
        kind = drift_of(i)
        if kind:
            counts[kind] += 1
        if suspended(account_of(i, contacts, accounts)):
            access += 1  # every member of a suspended account is still enabled
    counts["access_contradicts_contract"] = access
    counts["account_differs"] = sum(1 for j in range(1, accounts + 1) if suspended(j))
    counts["missing_identity"] = contacts // 200
    counts["membership_differs"] = counts["left_can_login"]  # who left is still a member too
    return counts


def write_export(path: Path, contacts: int, accounts: int) -> None:
    """One CSV with a record_type column, as many CRMs export it."""
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["record_type", "id", "name", "contract_status", "domains", "email", "account_id", "first_name",
                      "last_name", "roles", "status", "modified_at"])
        for j in range(1, accounts + 1):
            out.writerow(["account", account_id(j), f"Bench account {j}", "suspended" if suspended(j) else "active",
                          f"a{j:04d}.bench.example", "", "", "", "", "", "", "2026-11-20T09:00:00Z"])
        for i in range(1, contacts + contacts // 200 + 1):
            kind = drift_of(i) if i <= contacts else None
            if kind == "unknown_identity":
                continue
            j = account_of(min(i, contacts), contacts, accounts)
            out.writerow(["contact", contact_id(i), "", "", "", username(i), account_id(j),
                          "Changed" if kind == "profile_differs" else "Bench", username(i).split("@")[0],
                          "Buyer" if kind == "roles_differ" else "", "left" if kind == "left_can_login" else "active",
                          "2026-11-20T09:00:00Z"])


# --- Keycloak: the bench instance and its seed ------------------------------------------------


def ensure_bench_keycloak(name: str) -> stack.KeycloakInstance:
    """The `bench` instance, started (or found running); never reset when realm-config changes."""
    env = {**os.environ, "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET": CLIENT_SECRET, "KC_SMTP_HOST": "127.0.0.1",
           "KC_SMTP_PORT": "28025", "KC_BOOTSTRAP_ADMIN_USERNAME": stack.TEST_ADMIN_USER,
           "KC_BOOTSTRAP_ADMIN_PASSWORD": stack.TEST_ADMIN_PASSWORD,
           "JAVA_OPTS_KC_HEAP": os.environ.get("JAVA_OPTS_KC_HEAP", "-Xms256m -Xmx2g"),
           "KC_DB_USERNAME": DB_USER, "KC_DB_PASSWORD": DB_PASSWORD,
           "KEYBRIDGE_KEYCLOAK_DELEGATION_CLIENT_SECRET": stack.TEST_DELEGATION_SECRET}
    result = subprocess.run([str(stack.KEYCLOAK_SCRIPT), "start", "--name", name, "--http-port", str(HTTP_PORT)],
                            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=REPO_DIR)
    if result.returncode != 0:
        raise SystemExit(f"could not start the bench Keycloak:\n{result.stdout}{result.stderr}")
    instance = stack.KeycloakInstance(url=f"http://localhost:{HTTP_PORT}", realm=stack.REALM, admin_user=stack.TEST_ADMIN_USER,
                                      admin_password=stack.TEST_ADMIN_PASSWORD, client_id=stack.ADAPTER_CLIENT_ID,
                                      client_secret=CLIENT_SECRET, smtp_port=28025)
    stack._align_keycloak(instance)
    return instance


class Admin:
    """The realm's admin REST API as the master admin (setup and checks only)."""

    def __init__(self, kc: stack.KeycloakInstance):
        self.kc = kc
        self.http = requests.Session()
        self.http.mount("http://", HTTPAdapter(pool_maxsize=SETUP_THREADS * 2))
        self._token_at = 0.0

    def request(self, method: str, path: str, ok=(200, 201, 204), **kwargs) -> requests.Response:
        if time.monotonic() - self._token_at > 30:
            self.http.headers["Authorization"] = f"Bearer {self.kc.admin_token()}"
            self._token_at = time.monotonic()
        response = self.http.request(method, self.kc.admin_url + path, timeout=600, **kwargs)
        if response.status_code not in ok:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
        return response


def _parallel(fn, items, threads: int = SETUP_THREADS) -> None:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


def seed(kc: stack.KeycloakInstance, contacts: int, accounts: int, name: str, bench_dir: Path) -> stack.KeycloakInstance:
    """Organizations through the admin API, then users, their attributes, roles and memberships
    written straight into the stopped instance's H2 database (one INSERT ... SELECT per table:
    seconds, where the realm's partial import took ~90 ms a user on this machine). Done once
    per instance; .data/<instance>/seed.json remembers it."""
    marker = bench_dir / "seed.json"
    done = json.loads(marker.read_text()) if marker.exists() else {}
    if done.get("users") == contacts:
        return kc
    admin = Admin(kc)
    say(f"  setup: {accounts} organizations (admin API)")
    have = set(organization_ids(admin))

    def create(j: int) -> None:
        admin.request("POST", "/organizations", ok=(201, 409), json={
            "name": f"Bench account {j}", "alias": f"crm-bench-a-{j:04d}", "enabled": True,
            "attributes": {"crm_account_id": [account_id(j)], "contract_status": ["active"]},
            "domains": [{"name": f"a{j:04d}.bench.example", "verified": False}]})

    _parallel(create, [j for j in range(1, accounts + 1) if account_id(j) not in have])
    say(f"  setup: {contacts} users with crm_contact_id, role member and membership, written into H2")
    subprocess.run([str(stack.KEYCLOAK_SCRIPT), "stop", "--name", name], check=True, stdin=subprocess.DEVNULL, capture_output=True)
    script = bench_dir / "seed.sql"
    script.write_text(SEED_SQL.format(n=contacts, per=PER_ACCOUNT))
    h2_jar = next((REPO_DIR / ".cache").glob("keycloak-*/lib/lib/main/com.h2database.h2-*.jar"))
    database = bench_dir / "keycloak" / "data" / "h2" / "keycloakdb"
    t0 = time.monotonic()
    subprocess.run([_java(), "-cp", str(h2_jar), "org.h2.tools.RunScript", "-url", f"jdbc:h2:file:{database};NON_KEYWORDS=VALUE",
                    "-user", DB_USER, "-password", DB_PASSWORD, "-script", str(script)], check=True)
    say(f"    written in {time.monotonic() - t0:.0f} s; starting Keycloak again")
    marker.write_text(json.dumps({"users": contacts, "accounts": accounts}))
    return ensure_bench_keycloak(name)


DB_USER, DB_PASSWORD = "sa", "bench"  # the bench instances' H2 credentials (KC_DB_USERNAME / KC_DB_PASSWORD)
# Contact i: user id 00000000-0000-4000-8000-<i>, username/email rc-<i>@bench.example, attribute
# crm_contact_id BENCH-C-<i>, realm roles default-roles-customers and member, member of
# organization crm-bench-a-<(i-1)//per+1> (UNMANAGED), as Keycloak itself writes them.
SEED_SQL = """
SET @realm = (SELECT ID FROM REALM WHERE NAME = 'customers');
INSERT INTO USER_ENTITY (ID, EMAIL, EMAIL_CONSTRAINT, EMAIL_VERIFIED, ENABLED, FIRST_NAME, LAST_NAME, REALM_ID, USERNAME,
                         CREATED_TIMESTAMP, NOT_BEFORE, LAST_MODIFIED_TIMESTAMP)
  SELECT '00000000-0000-4000-8000-' || LPAD(CAST(X AS VARCHAR), 12, '0'),
         'rc-' || LPAD(CAST(X AS VARCHAR), 6, '0') || '@bench.example', 'rc-' || LPAD(CAST(X AS VARCHAR), 6, '0') || '@bench.example',
         TRUE, TRUE, 'Bench', 'rc-' || LPAD(CAST(X AS VARCHAR), 6, '0'), @realm,
         'rc-' || LPAD(CAST(X AS VARCHAR), 6, '0') || '@bench.example', 1763600000000, 0, 1763600000000
  FROM SYSTEM_RANGE(1, {n});
INSERT INTO USER_ATTRIBUTE (NAME, VALUE, USER_ID, ID)
  SELECT 'crm_contact_id', 'BENCH-C-' || LPAD(CAST(X AS VARCHAR), 6, '0'), '00000000-0000-4000-8000-' || LPAD(CAST(X AS VARCHAR), 12, '0'),
         '00000000-0000-4000-9000-' || LPAD(CAST(X AS VARCHAR), 12, '0')
  FROM SYSTEM_RANGE(1, {n});
INSERT INTO USER_ROLE_MAPPING (ROLE_ID, USER_ID)
  SELECT R.ID, '00000000-0000-4000-8000-' || LPAD(CAST(X AS VARCHAR), 12, '0')
  FROM SYSTEM_RANGE(1, {n}) JOIN KEYCLOAK_ROLE R ON R.REALM_ID = @realm AND R.CLIENT_ROLE = FALSE
       AND R.NAME IN ('member', 'default-roles-customers');
INSERT INTO USER_GROUP_MEMBERSHIP (GROUP_ID, USER_ID, MEMBERSHIP_TYPE)
  SELECT O.GROUP_ID, '00000000-0000-4000-8000-' || LPAD(CAST(X AS VARCHAR), 12, '0'), 'UNMANAGED'
  FROM SYSTEM_RANGE(1, {n}) JOIN ORG O ON O.REALM_ID = @realm
       AND O.ALIAS = 'crm-bench-a-' || LPAD(CAST((X - 1) / {per} + 1 AS VARCHAR), 4, '0');
"""


def _java() -> str:
    for jdk in ("/usr/lib/jvm/temurin-25-jdk-amd64", "/usr/lib/jvm/temurin-21-jdk-amd64", "/usr/lib/jvm/java-21-openjdk-amd64"):
        if Path(jdk, "bin", "java").exists():
            return str(Path(jdk, "bin", "java"))
    return "java"


def organization_ids(admin: Admin) -> dict[str, str]:
    orgs, first = {}, 0
    while True:
        page = admin.request("GET", "/organizations", params={"first": first, "max": 500, "briefRepresentation": "false"}).json()
        for o in page:
            for a in (o.get("attributes") or {}).get("crm_account_id", []):
                orgs[a] = o["id"]
        if len(page) < 500:
            return orgs
        first += 500


# --- the timed runs ---------------------------------------------------------------------------


def child_adapter(export_path: str, database: str, concurrency: int) -> None:
    """In a fresh process: what `keybridge reconcile --from export.csv --no-wait` does; prints JSON."""
    from adapter import reconcile
    from adapter.config import Settings
    from adapter.runtime import Keybridge

    settings = Settings.from_env({}, database_url=f"sqlite:///{database}", keycloak_url=f"http://localhost:{HTTP_PORT}",
                                 keycloak_realm=stack.REALM, keycloak_client_id=stack.ADAPTER_CLIENT_ID,
                                 keycloak_client_secret=CLIENT_SECRET, keycloak_concurrency=concurrency,
                                 keycloak_timeout_seconds=300)  # a shared 2-CPU machine answers slowly at times
    kb = Keybridge(settings)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    phases: dict[str, list[float]] = {}

    def progress(phase: str, done: int, total: int | None) -> None:
        now = time.perf_counter() - t0
        phases.setdefault(phase, [now, now])[1] = now

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    export = reconcile.read_files([export_path])
    t_read = time.perf_counter() - t0
    result = reconcile.reconcile(kb, export, dry_run=False, source="bench", progress=progress)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    from sqlalchemy import select

    from adapter.models import InboundEvent

    with kb.db.session() as session:
        stored = [(e.type, e.payload["data"].get("contact_id") or e.payload["data"]["account_id"])
                  for e in session.scalars(select(InboundEvent).where(InboundEvent.source == "reconcile"))]
    print(json.dumps({"wall": wall, "read_export": t_read, "cpu": cpu, "phases": {k: round(v[1], 1) for k, v in phases.items()}, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_before_mb": rss_before, "counts": result["drift"]["counts"], "stats": result["drift"]["stats"],
                      "events": result["events"], "stored": stored}))


def run_adapter(export_path: Path, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, __file__, "--child", str(export_path), "--database", f"{tmp}/kb.db",
                              "--concurrency", str(concurrency)], capture_output=True, text=True, cwd=REPO_DIR)
    if out.returncode != 0:
        raise SystemExit(f"the adapter's run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_baseline(kc: stack.KeycloakInstance, sample: int) -> float:
    """The naive script on the first `sample` contacts: 3 calls per contact, one after the other; seconds."""
    http = requests.Session()
    token = requests.post(f"{kc.realm_url}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": kc.client_id, "client_secret": kc.client_secret}).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    base = kc.admin_url
    t0 = time.perf_counter()
    found = 0
    for i in range(1, sample + 1):
        users = http.get(f"{base}/users", params={"q": f"crm_contact_id:{contact_id(i)}", "exact": "true"}, timeout=60).json()
        if not users:
            continue
        found += 1
        uid = users[0]["id"]
        http.get(f"{base}/organizations/members/{uid}/organizations", params={"briefRepresentation": "false"}, timeout=60)
        http.get(f"{base}/users/{uid}/role-mappings/realm", timeout=60)
    if found < sample * 0.99:
        raise SystemExit(f"the baseline found only {found} of {sample} identities: is the seed complete?")
    return time.perf_counter() - t0


def check(result: dict, contacts: int, accounts: int) -> None:
    want = expected_drift(contacts, accounts)
    got = {k: v for k, v in result["counts"].items() if v}
    if got != {k: v for k, v in want.items() if v}:
        raise SystemExit(f"drift found {got} but {want} was seeded: the run did not do the work")
    kinds = {drift_of(i) for i in range(1, 101)}
    stored_contacts = {cid for t, cid in result["stored"] if t == "contact.upserted"}
    stored_accounts = {aid for t, aid in result["stored"] if t == "account.upserted"}
    want_contacts = {contact_id(i) for i in range(1, contacts + 1) if drift_of(i) in kinds - {None, "unknown_identity"}}
    want_accounts = {account_id(j) for j in range(1, accounts + 1) if suspended(j)}
    if stored_contacts != want_contacts or stored_accounts != want_accounts:
        raise SystemExit(f"stored {len(stored_contacts)} contact and {len(stored_accounts)} account events, expected "
                         f"{len(want_contacts)} and {len(want_accounts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sample", type=int, default=1000, help="contacts the naive baseline looks up (extrapolated)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed-only", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--database", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.accounts = max(1, -(-args.contacts // PER_ACCOUNT))
    if args.child:
        child_adapter(args.child, args.database, args.concurrency)
        return

    name = f"{NAME}-{args.contacts}"
    bench_dir = REPO_DIR / ".data" / name
    bench_dir.mkdir(parents=True, exist_ok=True)
    say(f"bench/reconcile.py: {args.contacts} contacts in {args.accounts} accounts, Keycloak instance '{name}' on port {HTTP_PORT}")
    kc = ensure_bench_keycloak(name)
    kc = seed(kc, args.contacts, args.accounts, name, bench_dir)
    export_path = bench_dir / "export.csv"
    if not export_path.exists():
        write_export(export_path, args.contacts, args.accounts)
    if args.seed_only:
        return
    say(f"  export: {export_path.relative_to(REPO_DIR)} ({export_path.stat().st_size / 1e6:.1f} MB)")
    runs = []
    for round_ in range(1, args.rounds + 1):
        adapter = run_adapter(export_path, args.concurrency)
        say(f"  round {round_}: adapter {adapter['wall']:.1f} s, CPU {adapter['cpu']:.1f} s, peak RSS {adapter['rss_mb']:.0f} MB, "
            f"phases ended at {adapter['phases']}")
        check(adapter, args.contacts, args.accounts)
        baseline = run_baseline(kc, args.sample)
        extrapolated = baseline / args.sample * args.contacts
        runs.append((adapter, extrapolated))
        say(f"  round {round_}: adapter {adapter['wall']:.1f} s (export read {adapter['read_export']:.1f} s, adapter CPU "
            f"{adapter['cpu']:.1f} s; phases ended at {adapter['phases']}), "
            f"peak RSS {adapter['rss_mb']:.0f} MB; naive {baseline:.1f} s for {args.sample} contacts -> "
            f"{extrapolated:.0f} s for {args.contacts}; ratio {extrapolated / adapter['wall']:.1f}x")
    walls = [a["wall"] for a, _ in runs]
    naive = [b for _, b in runs]
    last = runs[-1][0]
    say("")
    say(f"{'':26}{'adapter':>12}{'naive':>12}{'naive/adapter':>16}")
    say(f"{'wall (median)':26}{statistics.median(walls):>10.1f} s{statistics.median(naive):>10.0f} s"
        f"{statistics.median(naive) / statistics.median(walls):>15.1f}x")
    say(f"{'adapter CPU (median)':26}{statistics.median(a['cpu'] for a, _ in runs):>10.1f} s")
    say(f"{'peak RSS (max)':26}{max(a['rss_mb'] for a, _ in runs):>9.0f} MB")
    say(f"drift found (= seeded): {json.dumps({k: v for k, v in last['counts'].items() if v})}")
    say(f"events stored: {last['events']['stored']}; users read: {last['stats'].get('users_read')}; "
        f"organizations: {last['stats'].get('organizations')}")


if __name__ == "__main__":
    main()
