"""Converging: each drifted record goes through the path a CRM webhook takes.

For every account or contact whose state differs, a synthetic `account.upserted` or
`contact.upserted` is stored through the inbox (source `reconcile`), so the handlers'
idempotent ensure_* steps and the "newest wins" rule apply exactly as for a webhook:

- the envelope `timestamp` is the CRM time of the record (its modification time in the
  export, else the export's time), so an export older than what the CRM sent since
  changes nothing;
- the webhook id is derived from the record's type, id, content and that time, so the
  same export (or the same record in a later export) stored twice is one event.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from .. import inbox
from .export import Export, iso

SOURCE = "reconcile"


def webhook_id(event_type: str, crm_id: str, data: dict, timestamp: str) -> str:
    """Stable per record state and CRM time: `rec_` + 40 hex digits."""
    canonical = json.dumps([event_type, crm_id, data, timestamp], sort_keys=True, separators=(",", ":"))
    return "rec_" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def synthetic_events(export: Export, accounts: set[str], contacts: set[str]):
    """(webhook id, envelope) for these accounts, then these contacts (an organization exists before its members move in)."""
    for account_id in sorted(accounts):
        record = export.accounts[account_id]
        yield _event("account.upserted", account_id, record.data, iso(export.time_of(record)))
    for contact_id in sorted(contacts):
        record = export.contacts[contact_id]
        yield _event("contact.upserted", contact_id, record.upsert_data(), iso(export.time_of(record)))


def _event(event_type: str, crm_id: str, data: dict, timestamp: str) -> tuple[str, dict]:
    return webhook_id(event_type, crm_id, data, timestamp), {"type": event_type, "timestamp": timestamp, "data": data}


def store(kb, export: Export, accounts: set[str], contacts: set[str],
          progress: Callable[[int, int], None] | None = None) -> dict[str, int | list[str]]:
    """Store one event per drifted record; returns counts (`stored`, `duplicate`) and the stored ids."""
    total = len(accounts) + len(contacts)
    counts: dict = {"stored": 0, "duplicate": 0, "webhook_ids": []}
    for done, (event_id, envelope) in enumerate(synthetic_events(export, accounts, contacts), start=1):
        outcome = inbox.store_event(kb.db, event_id, SOURCE, envelope)
        if outcome == "accepted":
            counts["stored"] += 1
            counts["webhook_ids"].append(event_id)
        else:
            counts["duplicate"] += 1
        if progress:
            progress(done, total)
    return counts

