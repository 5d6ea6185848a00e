"""`keybridge`: the worker, operator commands and a signed-webhook sender for CRM admins.

    keybridge worker                      run the worker (jobs, Keycloak events, outbound delivery)
    keybridge send TYPE DATA.json         sign and POST one event to the adapter
    keybridge demo                        the dev stack's demo: an account and an invited contact
    keybridge dead-letters list|replay    what kept failing, and sending it again
    keybridge invitations list|revoke|resend   invitations per account or batch with their state; withdraw or send again
    keybridge reconcile --from FILE       compare a CRM export with Keycloak (--dry-run), or converge
    keybridge realm apply [--dry-run]     make an existing realm match realm-config/
    keybridge db upgrade                  apply the schema migrations (run before starting a new version)
    keybridge health worker               exit 1 unless this host's worker finished a pass in the last minute
    keybridge connectors test             check the configured CRM connector's credentials and fields
"""
from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import click
import requests

from .config import ConfigError, Settings


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _kb():
    from .runtime import Keybridge

    return Keybridge(_settings())


@click.group()
def main() -> None:
    """Keybridge adapter commands."""
    from . import logs

    logs.configure()  # text at INFO until a command has its settings


@main.command()
def worker() -> None:
    """Run the worker until stopped (SIGTERM or Ctrl-C)."""
    from . import logs
    from .worker import Worker

    kb = _kb()
    logs.configure(kb.settings)
    try:
        Worker(kb).run_forever()
    except KeyboardInterrupt:
        click.echo("worker stopped")


def post_event(url: str, secret: str, event_type: str, data: dict, webhook_id: str | None = None) -> requests.Response:
    """Sign {type, timestamp, data} with `secret` and POST it; the same thing a CRM does."""
    from .webhooks.signatures import sign

    body = json.dumps({"type": event_type, "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                       "data": data}).encode()
    return requests.post(url, data=body, headers=sign(secret, webhook_id or f"msg_{uuid.uuid4().hex}", body), timeout=30)


def _first_secret(settings: Settings) -> str:
    if not settings.webhook_secrets:
        raise click.ClickException("Set KEYBRIDGE_WEBHOOK_SECRETS (the whsec_ secret shared with the CRM) to sign events.")
    return settings.webhook_secrets[0]


@main.command()
@click.argument("event_type")
@click.argument("data_file", type=click.File("r"))
@click.option("--url", default="http://127.0.0.1:8000/webhooks/crm", show_default=True)
@click.option("--id", "webhook_id", default=None, help="webhook-id to use (repeat one to test idempotency)")
def send(event_type: str, data_file, url: str, webhook_id: str | None) -> None:
    """Sign and POST one event whose data is read from DATA_FILE ('-' for stdin)."""
    settings = _settings()
    response = post_event(url, _first_secret(settings), event_type, json.load(data_file), webhook_id)
    click.echo(f"{response.status_code} {response.text.strip()}")
    if response.status_code >= 400:
        sys.exit(1)


@main.command()
@click.option("--url", default="http://127.0.0.1:8000/webhooks/crm", show_default=True)
@click.option("--email", default="jane.doe@acme.example", show_default=True)
def demo(url: str, email: str) -> None:
    """Post a signed account.upserted and contact.invite_requested, as a CRM would."""
    secret = _first_secret(_settings())
    account = {"account_id": "ACC-DEMO-1", "name": "Acme Corporation", "domains": ["acme.example"],
               "contract": {"status": "active", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-12-31T23:59:59Z"}}
    contact = {"contact_id": "CON-DEMO-1", "email": email, "account_id": "ACC-DEMO-1", "first_name": "Jane",
               "last_name": "Doe", "roles": ["Buyer"], "org_admin": False}
    for event_type, data, webhook_id in (("account.upserted", account, "demo-account-1"),
                                         ("contact.invite_requested", contact, "demo-invite-1")):
        r = post_event(url, secret, event_type, data, webhook_id)
        click.echo(f"{event_type}: {r.status_code} {r.text.strip()}")
        if r.status_code >= 400:
            raise click.ClickException(f"the adapter refused {event_type}")


def read_invite_csv(path) -> list[dict]:
    """Rows of a CSV (header: kind, contact_id or lead_id, email, account_id, first_name, last_name,
    roles separated by ';', org_admin) as batch items; raises ClickException naming the row and field."""
    import csv

    from marshmallow import ValidationError

    from .events import BatchRequestedSchema

    items = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            item = {k: v.strip() for k, v in row.items() if k and v is not None and v.strip() != ""}
            item.setdefault("kind", "lead" if "lead_id" in item else "contact")
            if "roles" in item:
                item["roles"] = [r.strip() for r in item["roles"].split(";") if r.strip()]
            if "org_admin" in item:
                item["org_admin"] = item["org_admin"].lower() in ("1", "true", "yes")
            items.append(item)
    try:
        BatchRequestedSchema().load({"batch_id": "csv", "items": items})
    except ValidationError as exc:
        problems = exc.messages.get("items", exc.messages)
        first = sorted(problems.items())[:5] if isinstance(problems, dict) else problems
        lines = [f"row {int(i) + 2}: {msg}" for i, msg in first] if isinstance(problems, dict) else [str(problems)]
        raise click.ClickException(f"{path} has errors (row numbers count the header as row 1):\n" + "\n".join(lines)) from None
    return items


@main.command()
@click.option("--csv", "csv_path", required=True, type=click.Path(exists=True, dir_okay=False), help="one invitation per row")
@click.option("--batch-id", default=None, help="re-use one to make a repeated import a no-op (default: from the file's content)")
@click.option("--wait/--no-wait", default=True, show_default=True, help="show progress until the worker has handled every row")
@click.option("--results", "results_path", default=None, type=click.Path(dir_okay=False),
              help="write each row's outcome to this CSV file (row, kind, id, email, outcome, error) once done waiting")
@click.option("--worker-timeout", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="stop waiting when no worker has finished a pass for this many seconds")
def invite(csv_path: str, batch_id: str | None, wait: bool, results_path: str | None, worker_timeout: float) -> None:
    """Invite contacts and leads from a CSV file, as one batch the worker handles.

    While waiting it shows a progress bar with the rate and the time left; it stops waiting, saying
    what to do, when no worker is running (the batch stays stored for the next one).
    """
    import hashlib

    from . import batch_progress, inbox

    if results_path and not wait:
        raise click.BadParameter("the results are known once the worker handled the rows: leave out --no-wait",
                                 param_hint="--results")
    if results_path:
        batch_progress.results_path_ok(results_path)
    items = read_invite_csv(csv_path)
    with open(csv_path, "rb") as handle:
        batch_id = batch_id or f"csv-{hashlib.sha256(handle.read()).hexdigest()[:16]}"
    kb = _kb()
    inbox.store_operator_event(kb.db, "invitations.batch_requested", {"batch_id": batch_id, "items": items}, "cli")
    click.echo(f"batch {batch_id}: {len(items)} invitation(s) queued")
    if not wait:
        return
    try:
        status = batch_progress.wait(kb, batch_id, len(items), worker_timeout=worker_timeout)
    except batch_progress.NoWorker:
        if results_path:
            rows = batch_progress.write_results(kb, batch_id, results_path)
            click.echo(f"{results_path}: {rows} row(s) so far (outcome 'waiting': not handled yet)", err=True)
        raise
    counts = ", ".join(f"{k} {v}" for k, v in sorted(status["counts"].items()) if v)
    click.echo(f"batch {batch_id} completed: {counts}")
    if results_path:
        rows = batch_progress.write_results(kb, batch_id, results_path)
        click.echo(f"{results_path}: {rows} row(s)")


@main.group()
def connectors() -> None:
    """The outbound CRM connector (KEYBRIDGE_CONNECTOR: generic, hubspot or salesforce)."""


@connectors.command("test")
def connectors_test() -> None:
    """Check the configured connector's credentials and CRM fields; says what is wrong, exit 1 if anything is."""
    from .connectors import ConnectorError, from_settings

    try:
        connector = from_settings(_settings())
    except (ConnectorError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if connector is None:
        raise click.ClickException("No connector is configured: set KEYBRIDGE_CONNECTOR=hubspot or salesforce (with its credentials), "
                                   "or KEYBRIDGE_CRM_EVENTS_URL and KEYBRIDGE_CRM_EVENTS_SECRET for the generic signed webhook.")
    check = getattr(connector, "check", None)
    problems = check() if check else _reachable(getattr(connector, "url", ""))
    for problem in problems:
        click.echo(f"{connector.key}: {problem}")
    if problems:
        sys.exit(1)
    click.echo(f"{connector.key}: OK ({connector.name})")


def _reachable(url: str) -> list[str]:
    """For a connector that cannot check more: does its URL answer, without redirecting?"""
    if not url:
        return []
    try:
        response = requests.head(url, timeout=10, allow_redirects=False)
    except requests.RequestException as exc:
        return [f"{url} does not answer ({type(exc).__name__}): check KEYBRIDGE_CRM_EVENTS_URL and that the CRM endpoint is up"]
    if 300 <= response.status_code < 400:
        return [f"{url} redirects to {response.headers.get('Location')}: set KEYBRIDGE_CRM_EVENTS_URL to the final URL (events are not re-posted to redirects)"]
    return []


@main.group()
def accounts() -> None:
    """CRM accounts as Keybridge enforces them."""


@accounts.command("show")
@click.argument("account_id")
def accounts_show(account_id: str) -> None:
    """Contract state and how many members have access."""
    from . import reports

    status = reports.account_status(_kb(), account_id)
    if status is None:
        raise click.ClickException(f"No account {account_id}: Keybridge has not received account.upserted for it.")
    click.echo(json.dumps(status, indent=2))


@main.command()
@click.option("--subject", default=None, help="e.g. account:A-1 or user:<id>")
@click.option("--limit", default=50, show_default=True)
def audit(subject: str | None, limit: int) -> None:
    """What Keybridge changed, why and when (newest first)."""
    from . import reports

    for entry in reports.audit_trail(_kb(), subject, limit):
        click.echo(f"{entry['at']}  {entry['action']:22} {entry['subject']:40} {entry['cause']}  {json.dumps(entry['details'])}")


@main.group()
def registrations() -> None:
    """Self-registrations waiting for a decision, and deciding them."""


@registrations.command("list")
@click.option("--status", default="pending", show_default=True, help="pending, awaiting_verification, approved, rejected or '' for all")
def registrations_list(status: str) -> None:
    from .handlers import self_service

    rows = self_service.pending_registrations(_kb(), status or None)
    if not rows:
        click.echo(f"no {status or ''} registrations".replace("  ", " "))
    for r in rows:
        click.echo(f"{r['user_id']}  {r['email']:40} {r['status']:22} matched={r['matched_account_id'] or '-'}  {r['registered_at']}")


def _decide(decision: str, user_id: str, account_id: str | None, roles: tuple[str, ...]) -> None:
    from . import inbox

    data = {"decision": decision, "user_id": user_id, "roles": list(roles)}
    if account_id:
        data["account_id"] = account_id
    event_id = inbox.store_operator_event(_kb().db, "registration.decided", data, "cli")
    click.echo(f"{decision}: stored as {event_id}; the worker applies it")


@registrations.command("approve")
@click.argument("user_id")
@click.option("--account", "account_id", default=None, help="CRM account (default: the one whose domain matched)")
@click.option("--role", "roles", multiple=True, help="CRM role name (repeat); default business roles when none")
def registrations_approve(user_id: str, account_id: str | None, roles: tuple[str, ...]) -> None:
    """Give the person membership and roles."""
    _decide("approved", user_id, account_id, roles)


@registrations.command("reject")
@click.argument("user_id")
def registrations_reject(user_id: str) -> None:
    """End the person's access."""
    _decide("rejected", user_id, None, ())


@main.group()
def invitations() -> None:
    """Invitations with their state (pending, accepted, expired, revoked, skipped); revoke or resend one."""


@invitations.command("list")
@click.option("--account", "account_id", default=None, help="the CRM account's invitations")
@click.option("--batch", "batch_id", default=None, help="the batch's invitations (batch_id of invitations.batch_requested)")
@click.option("--state", default=None, type=click.Choice(["pending", "accepted", "expired", "revoked", "skipped", "refused"]),
              help="only invitations in this state")
@click.option("--json", "as_json", is_flag=True, help="the list as JSON")
def invitations_list(account_id: str | None, batch_id: str | None, state: str | None, as_json: bool) -> None:
    """List --account ID or --batch ID."""
    from .handlers import invitation_lifecycle

    if (account_id is None) == (batch_id is None):
        raise click.UsageError("Give --account ID or --batch ID (one of them).")
    result = invitation_lifecycle.list_invitations(_kb(), account_id, batch_id, state, 0, 100_000)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result["counts"].items())) or "none"
    click.echo(f"{'account ' + account_id if account_id else 'batch ' + batch_id}: {counts}")
    for r in result["invitations"]:
        when = {"pending": f"expires {r['expires_at']}", "accepted": f"accepted {r['accepted_at']}"}.get(r["state"], r["ended_at"] or "")
        click.echo(f"{r['kind']:7} {r['id']:24} {r['email']:40} {r['state']:9} sent {r['sent_count']}x  {when or ''}")


def _invitation_request(action: str, kind: str, crm_id: str) -> None:
    from .handlers import invitation_lifecycle

    try:
        answer = invitation_lifecycle.request(_kb(), action, kind, crm_id, "cli")
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(answer["message"])
    if answer["status"] not in ("queued", "already_revoked", "already_expired"):
        sys.exit(3)  # refused: the invitation was already accepted


@invitations.command("revoke")
@click.argument("kind", type=click.Choice(["contact", "lead"]))
@click.argument("crm_id")
def invitations_revoke(kind: str, crm_id: str) -> None:
    """Withdraw the pending invitation of contact|lead CRM_ID: its link stops working, the CRM hears invitation.revoked."""
    _invitation_request("revoke", kind, crm_id)


@invitations.command("resend")
@click.argument("kind", type=click.Choice(["contact", "lead"]))
@click.argument("crm_id")
def invitations_resend(kind: str, crm_id: str) -> None:
    """Send the invitation of contact|lead CRM_ID again (a new link, a new expiry)."""
    _invitation_request("resend", kind, crm_id)


@main.group("dead-letters")
def dead_letters_group() -> None:
    """Jobs and outbound events that kept failing."""


@dead_letters_group.command("list")
def dead_letters_list() -> None:
    from . import dead_letters

    items = dead_letters.list_all(_kb().db)
    if not items:
        click.echo("no dead letters")
    for item in items:
        click.echo(f"{item['kind']:8} {item['id']:40} {item['what']:40} attempts={item['attempts']} {item['error'] or ''}")


@dead_letters_group.command("replay")
@click.argument("kind", type=click.Choice(["job", "outbound"]))
@click.argument("item_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="replay every dead letter of KIND")
def dead_letters_replay(kind: str, item_id: str | None, replay_all: bool) -> None:
    """Requeue a dead letter (or --all of KIND); the worker sends it again."""
    from . import dead_letters
    from .errors import ApiError

    kb = _kb()
    ids = [i["id"] for i in dead_letters.list_all(kb.db) if i["kind"] == kind] if replay_all else [item_id]
    if not ids or ids == [None]:
        raise click.ClickException("give an id (see `keybridge dead-letters list`) or --all")
    for one in ids:
        try:
            dead_letters.replay(kb.db, kind, one)
        except ApiError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"requeued {kind} {one}")


@main.command()
@click.option("--from", "paths", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="a CSV or JSON export of accounts and contacts (repeat for one file per record type)")
@click.option("--dry-run", is_flag=True, help="report the drift only; change nothing")
@click.option("--exported-at", default=None, help="when the CRM took the export (ISO 8601); default: the file's own "
              "exported_at, else its modification time")
@click.option("--limit", default=20, show_default=True, help="items shown per kind of drift")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.option("--wait/--no-wait", default=True, show_default=True, help="after storing, show the worker applying the events")
def reconcile(paths: tuple[str, ...], dry_run: bool, exported_at: str | None, limit: int, as_json: bool, wait: bool) -> None:
    """Compare a CRM export with Keycloak; without --dry-run, converge what drifted."""
    from . import reconcile as reconciliation
    from .jobs import PermanentError, RetryableError
    from .reconcile.export import parse_time
    from .reconcile.progress import ProgressBars, print_report, wait_until_applied

    try:
        when = parse_time(exported_at) if exported_at else None
    except ValueError as exc:
        raise click.ClickException(f"--exported-at: {exc}") from None
    try:
        export = reconciliation.read_files(paths, exported_at=when)
    except reconciliation.ExportError as exc:
        raise click.ClickException(str(exc)) from None
    kb = _kb()
    with ProgressBars(enabled=not as_json) as bars:
        try:
            result = reconciliation.reconcile(kb, export, dry_run=dry_run, source="cli", progress=bars.update,
                                              label=", ".join(paths))
        except (RetryableError, PermanentError) as exc:
            raise click.ClickException(f"Keycloak: {exc}") from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_report(result, limit)
    if not dry_run and wait and result["events"]["stored"] and not as_json:
        wait_until_applied(kb, result["run_id"])
@main.group()
def realm() -> None:
    """The Keycloak realm as realm-config/ describes it."""


@realm.command("apply")
@click.option("--file", "realm_file", type=click.Path(exists=True, dir_okay=False),
              default=lambda: str(Path(__file__).resolve().parent.parent / "realm-config" / "customers-realm.json"),
              show_default="realm-config/customers-realm.json", help="realm export to apply")
@click.option("--dry-run", is_flag=True, help="only show the differences; change nothing")
@click.option("--url", envvar="KEYBRIDGE_KEYCLOAK_URL", default="http://localhost:8080", show_default=True,
              help="Keycloak base URL (KEYBRIDGE_KEYCLOAK_URL)")
@click.option("--admin-user", envvar="KEYBRIDGE_REALM_ADMIN_USER", required=True,
              help="a master-realm administrator (KEYBRIDGE_REALM_ADMIN_USER); only this command uses it")
@click.option("--admin-password", envvar="KEYBRIDGE_REALM_ADMIN_PASSWORD", required=True, prompt=True, hide_input=True,
              help="its password (KEYBRIDGE_REALM_ADMIN_PASSWORD; asked for when unset)")
def realm_apply(realm_file: str, dry_run: bool, url: str, admin_user: str, admin_password: str) -> None:
    """Make an existing realm match the realm file, idempotently (Keycloak imports it only once).

    Placeholders (${VAR}) are read from the environment and must be set, as when Keycloak
    was started. Exit code 0: nothing differs (or all applied); 3: a dry run found differences.
    """
    from . import realm_config

    try:
        desired = realm_config.load_realm_file(realm_file)
        admin = realm_config.RealmAdmin(url, desired["realm"], admin_user, admin_password)
        changes = realm_config.plan(admin, desired)
        if not changes:
            click.echo(f"realm {desired['realm']} matches {realm_file}")
            return
        if dry_run:
            for change in changes:
                click.echo(str(change))
            click.echo(f"{len(changes)} difference(s); run without --dry-run to apply them")
            sys.exit(3)
        done = realm_config.apply(changes, report=lambda c: click.echo(("applied " if c.apply else "") + str(c)))
        manual = len(changes) - done
        click.echo(f"{done} change(s) applied" + (f"; {manual} need a hand (see above)" if manual else ""))
    except realm_config.RealmConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def health() -> None:
    """Health checks for container orchestrators (exit code 0: healthy, 1: not)."""


@health.command("worker")
@click.option("--max-age", default=None, type=float, help="seconds since the worker's last finished pass  [default: 60, as /readyz]")
def health_worker(max_age: float | None) -> None:
    """Whether the worker on this host (container) finished a pass recently: its heartbeat.

    The worker's container health check in docker-compose.yml. Reads only the database.
    """
    from .db import Database
    from .health import WORKER_SILENCE_SECONDS, check_this_hosts_worker

    database = Database(_settings().database_url)
    try:
        problem = check_this_hosts_worker(database, WORKER_SILENCE_SECONDS if max_age is None else max_age)
    finally:
        database.dispose()
    if problem:
        click.echo(f"unhealthy: {problem}", err=True)
        sys.exit(1)
    click.echo("healthy: the worker finished a pass recently")


@main.group()
def db() -> None:
    """The adapter's database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="the migration to bring the database to")
def db_upgrade(revision: str) -> None:
    """Apply the schema migrations (Alembic) to KEYBRIDGE_DATABASE_URL; safe to run again.

    A database from before migrations existed is recognised and upgraded in place.
    """
    from . import migrations

    click.echo(migrations.upgrade(_settings().database_url, revision))
