"""Reconciling a CRM export of 100,000 contacts against Keycloak: `keybridge reconcile --dry-run` beside baselines.

    python bench/reconcile.py [--contacts 100000] [--rounds 3] [--sample 200] [--listing-pages 2] [--concurrency 8]

Runs against its own Keycloak instance `bench-reconcile-<contacts>` (scripts/keycloak.sh,
port 28080, data in .data/bench-reconcile-<contacts>/, kept between runs: seeded once;
never reset when realm-config changes; one instance at a time, they share the port). It
runs Keybridge's extension, as every instance scripts/keycloak.sh starts. Setup, not timed:

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

Timed, each round:

- **keybridge reconcile --from export.csv --dry-run --json**, the command an operator types,
  in its own process (a new SQLite database): wall time, and its own CPU time and peak RSS
  (os.wait4's rusage of that process). It reads Keycloak through the extension's export.
- **export read alone** (the floor): the same export pages read with `requests` and parsed,
  nothing compared: what reading costs, without the CSV, the drift logic or the adapter.
- **admin API listing** (the simplest read without the extension): the first
  `--listing-pages` pages of `GET users?briefRepresentation=true&max=500`, extrapolated to
  all users. A lower bound: it carries no roles or memberships, and Keycloak pages by offset.
- **naive per contact**: what an operator's script would do, one contact at a time: find
  the user by crm_contact_id, read its organizations and its realm roles (3 calls), on the
  first `--sample` contacts, extrapolated.

Checks, before any figure is printed: the drift counts must equal the seeded ones kind by
kind, every seeded user must have been read, and through the export (not the fallback).
It is a measurement, not a test.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
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


def cli_env(database: str, concurrency: int) -> dict[str, str]:
    """The environment `keybridge` reads its settings from, pointed at the bench Keycloak and a new SQLite file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYBRIDGE_")}
    env.update({"KEYBRIDGE_DATABASE_URL": f"sqlite:///{database}", "KEYBRIDGE_KEYCLOAK_URL": f"http://localhost:{HTTP_PORT}",
                "KEYBRIDGE_KEYCLOAK_REALM": stack.REALM, "KEYBRIDGE_KEYCLOAK_CLIENT_ID": stack.ADAPTER_CLIENT_ID,
                "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET": CLIENT_SECRET, "KEYBRIDGE_KEYCLOAK_CONCURRENCY": str(concurrency),
                "KEYBRIDGE_KEYCLOAK_TIMEOUT_SECONDS": "300",  # a shared 2-CPU machine answers slowly at times
                "PYTHONPATH": str(REPO_DIR)})
    return env


def run_cli(export_path: Path, concurrency: int) -> dict:
    """`keybridge reconcile --from export.csv --dry-run --json` in its own process: its wall time, CPU time and
    peak RSS (os.wait4: that process alone), and the JSON result it printed."""
    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = Path(tmp, "stdout.json"), Path(tmp, "stderr.txt")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t0 = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-c", "from adapter.cli import main; main()", "reconcile",
                                      "--from", str(export_path), "--dry-run", "--json"],
                                     stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO_DIR,
                                     env=cli_env(f"{tmp}/kb.db", concurrency))
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - t0
            child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"keybridge reconcile failed ({child.returncode}):\n{err_path.read_text()[-3000:]}")
        result = json.loads(out_path.read_text())
        warnings = [line for line in err_path.read_text().splitlines() if "WARNING" in line]
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
            "counts": result["drift"]["counts"], "stats": result["drift"]["stats"], "warnings": warnings}


def adapter_token(kc: stack.KeycloakInstance) -> str:
    return requests.post(f"{kc.realm_url}/protocol/openid-connect/token", timeout=60, data={
        "grant_type": "client_credentials", "client_id": kc.client_id, "client_secret": kc.client_secret}).json()["access_token"]


def run_export_read(kc: stack.KeycloakInstance) -> tuple[float, int]:
    """The floor: the extension's export read page after page with `requests` and parsed, nothing compared."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {adapter_token(kc)}"
    t0 = time.perf_counter()
    users, after = 0, ""
    while after is not None:
        r = http.get(f"{kc.realm_url}/keybridge-export/users", params={"after": after, "max": 1000,
                                                                      "attribute": ["crm_contact_id", "phone"]}, timeout=300)
        r.raise_for_status()
        body = r.json()
        users += len(body["users"])
        after = body["next"]
    return time.perf_counter() - t0, users


def run_listing(kc: stack.KeycloakInstance, pages: int) -> float:
    """Without the extension, the simplest full read: the admin API's user listing (briefRepresentation=true, pages
    of 500, as reconcile's fallback reads it but without the role and membership calls), its first `pages` pages;
    seconds. Extrapolated linearly it is a lower bound: Keycloak pages by offset, a deep page costs more."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {adapter_token(kc)}"
    t0 = time.perf_counter()
    for page in range(pages):
        r = http.get(f"{kc.admin_url}/users", params={"first": page * 500, "max": 500, "briefRepresentation": "true"}, timeout=600)
        r.raise_for_status()
        if len(r.json()) != 500:
            raise SystemExit(f"the admin API listed {len(r.json())} users on page {page}: is the seed complete?")
    return time.perf_counter() - t0


def run_baseline(kc: stack.KeycloakInstance, sample: int) -> float:
    """The naive script on the first `sample` contacts: 3 calls per contact, one after the other; seconds."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {adapter_token(kc)}"
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
    """Every seeded kind of drift found, in the seeded number; every user read, through the extension's export."""
    want = expected_drift(contacts, accounts)
    got = {k: v for k, v in result["counts"].items() if v}
    if got != {k: v for k, v in want.items() if v}:
        raise SystemExit(f"drift found {got} but {want} was seeded: the run did not do the work")
    if result["stats"].get("users_read") != contacts or result["stats"].get("read_through_export") != 1:
        raise SystemExit(f"the run read {result['stats'].get('users_read')} users (of {contacts}), through the export: "
                         f"{bool(result['stats'].get('read_through_export'))}; warnings: {result['warnings']}")


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample", type=int, default=200, help="contacts the naive baseline looks up (extrapolated)")
    parser.add_argument("--listing-pages", type=int, default=2, help="pages of 500 the admin API listing reads (extrapolated)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed-only", action="store_true")
    args = parser.parse_args()
    args.accounts = max(1, -(-args.contacts // PER_ACCOUNT))

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
    n = args.contacts
    runs = []
    for round_ in range(1, args.rounds + 1):
        load_before = load_average()
        cli = run_cli(export_path, args.concurrency)
        check(cli, args.contacts, args.accounts)  # no figure unless the drift found is the drift seeded
        read, users = run_export_read(kc)
        if users != n:
            raise SystemExit(f"the export listed {users} users, {n} were seeded")
        listing = run_listing(kc, args.listing_pages) / (args.listing_pages * 500) * n
        naive = run_baseline(kc, args.sample) / args.sample * n
        runs.append({"cli": cli, "read": read, "listing": listing, "naive": naive, "load": f"{load_before} / {load_average()}"})
        say(f"  round {round_}: keybridge reconcile --dry-run {cli['wall']:.1f} s (CPU {cli['cpu']:.1f} s, peak RSS "
            f"{cli['rss_mb']:.0f} MB); export read alone {read:.1f} s; admin API listing ~{listing:.0f} s; "
            f"naive per contact ~{naive:.0f} s; load average {runs[-1]['load']}")

    def median(key: str, sub: str | None = None) -> float:
        return statistics.median(r[key][sub] if sub else r[key] for r in runs)

    wall = median("cli", "wall")
    say("")
    say(f"{n} contacts, {args.rounds} round(s), medians; load average (1, 5, 15 min) before / after each round: "
        + "; ".join(r["load"] for r in runs))
    say(f"{'':46}{'time':>10}{'vs reconcile':>14}")
    say(f"{'keybridge reconcile --dry-run (export)':46}{wall:>8.1f} s{'1.0x':>14}")
    for label, key in (("export read alone, nothing compared (floor)", "read"),
                       (f"admin API user listing, {args.listing_pages} pages, extrap.", "listing"),
                       (f"naive: 3 admin calls a contact, {args.sample}, extrap.", "naive")):
        say(f"{label:46}{median(key):>8.1f} s{median(key) / wall:>13.1f}x")
    say(f"peak RSS of keybridge reconcile: {max(r['cli']['rss_mb'] for r in runs):.0f} MB (max); "
        f"CPU {median('cli', 'cpu'):.1f} s (median)")
    say(f"drift found (= seeded): {json.dumps({k: v for k, v in runs[-1]['cli']['counts'].items() if v})}")
    say(f"users read: {runs[-1]['cli']['stats'].get('users_read')}; organizations: {runs[-1]['cli']['stats'].get('organizations')}")


if __name__ == "__main__":
    main()
