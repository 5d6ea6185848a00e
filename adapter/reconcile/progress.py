"""What `keybridge reconcile` shows: progress bars while it reads and stores, the drift report,
and the worker applying what was stored."""
from __future__ import annotations

import time

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .drift import KINDS

PHASES = {"organizations": "organizations", "members": "members and invitations", "roles": "business role holders",
          "users": "users compared", "events": "events stored", "applied": "events applied"}


class ProgressBars:
    """One bar per phase (rich, on stderr); `update(phase, done, total)` is the reconcile progress callback."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.progress = Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True), disable=not enabled)
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()
        return False

    def update(self, phase: str, done: int, total: int | None) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(PHASES.get(phase, phase), total=total)
        self.progress.update(self.tasks[phase], completed=done, total=total)


def print_report(result: dict, limit: int) -> None:
    """The drift per kind (counts, then up to `limit` items each), and what was stored."""
    drift = result["drift"]
    records = result["records"]
    click.echo(f"Compared {records['accounts']} account(s) and {records['contacts']} contact(s) with "
               f"{drift['stats'].get('users_read', 0)} Keycloak user(s) and {drift['stats'].get('organizations', 0)} "
               f"organization(s); CRM time {result['exported_at'] or 'per record'}.")
    for note in drift["notes"]:
        click.echo(f"note: {note}")
    if not drift["total"]:
        click.echo("No drift: Keycloak matches the export.")
    for kind, label in KINDS.items():
        count = drift["counts"].get(kind, 0)
        if not count:
            continue
        click.echo(f"\n{label}: {count}")
        for item in drift["items"].get(kind, [])[:limit]:
            who = item["record"] + (f" (user {item['user_id']})" if item.get("user_id") and not item["record"].startswith("user:") else "")
            line = f"  {who}: {item['detail']}"
            if item.get("fix"):
                line += f"  -> {item['fix']}"
            click.echo(line)
        if count > limit:
            click.echo(f"  ... and {count - limit} more (--limit, or --json)")
    invited = drift["stats"].get("invited_not_registered")
    if invited:
        click.echo(f"\n({invited} contact(s) without an identity have a pending invitation: not drift.)")
    if result["dry_run"]:
        click.echo(f"\nDry run: nothing changed. Without --dry-run, {drift['to_converge']['accounts']} account(s) and "
                   f"{drift['to_converge']['contacts']} contact(s) would be fed to the worker as upserts.")
    else:
        events = result["events"]
        click.echo(f"\nStored {events['stored']} event(s) for the worker ({events['duplicate']} already stored by an "
                   f"earlier run of this export); run {result['run_id']}.")


def wait_until_applied(kb, run_id: str, poll_seconds: float = 1.0) -> None:
    """A bar of the stored events the worker has applied, until all are done (Ctrl-C stops waiting only)."""
    from . import run_status

    click.echo("Waiting for the worker (`keybridge worker`) to apply them; Ctrl-C stops waiting, not the work.")
    with ProgressBars() as bars:
        try:
            while True:
                applied = (run_status(kb, run_id) or {}).get("applied") or {"total": 0, "done": 0, "dead": 0}
                bars.update("applied", applied["done"] + applied["dead"], applied["total"])
                if applied["done"] + applied["dead"] >= applied["total"]:
                    break
                time.sleep(poll_seconds)
        except KeyboardInterrupt:
            return
    if applied["dead"]:
        click.echo(f"{applied['dead']} event(s) failed for good: see `keybridge dead-letters list`.")
