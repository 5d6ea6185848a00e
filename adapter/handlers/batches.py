"""invitations.batch_requested: up to 10,000 invitations, at the speed Keycloak allows.

The batch is stored with one `batch_items` row per item (progress and per-item results are
read from there); when the last item is settled the CRM receives `invitation.batch_completed`
with the counts per outcome.

- Contacts go in chunks (KEYBRIDGE_BATCH_CHUNK_SIZE, 25 by default), one `batch_chunk` job
  each, so several workers and each worker's threads share a batch (claims use SKIP LOCKED).
  What a chunk shares is looked up once: the organization of each account. Each new
  invitation is one call, Keycloak's invite-user, whose answer says what a single invite
  would have asked first: 204 sent, 409 "pending invitation" or "already a member" (nothing
  sent: Keycloak checks both before it mails, so a repeated call never mails anyone twice).
  A chunk's bookkeeping is two transactions: before sending (desired state, invitation rows
  marked `sending`) and after (rows `sent`, `invitation.sent` events, audit, items settled).
  Keycloak's 204 carries no invitation id (a registration names its invitation by it): the
  ids are read in pages of the organization's pending invitations, at most every few seconds
  while the batch runs and once when it completes (`fill_invitation_ids`). A person who
  registers within those seconds is matched only by a verified address (registrations.py).
- Whatever is not a plain new invitation (a resend, a contact who left, an invitation row
  in another state, an address or contact met earlier in the batch, a 409) takes the
  single invitation's path (`invitations.invite_contact`), one item at a time.
- Leads stay one `batch_item` job each, in their lead's order, through `invitations.invite_lead`.

A chunk that dies half-way is run again (its lease runs out): its settled items are skipped;
an item left `sending` is invited again, and Keycloak's 409 "pending invitation" sends it to
the single path, which records it as sent (it was this batch's own invitation). A chunk whose
run settled items does not count as a crash of the worker (that is for jobs that never get on).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from marshmallow import ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .. import outbox, tasks
from ..db import utcnow
from ..errors import PermanentError, RetryableError
from ..events import INVITATION_BATCH_COMPLETED, BatchRequestedSchema, ContactInviteSchema, LeadInviteSchema
from ..models import Batch, BatchItem, Cursor, Invitation, Job
from . import audit, invitations, records

log = logging.getLogger(__name__)

CHUNK_JOB = "batch_chunk"


@tasks.crm_event("invitations.batch_requested", schema=BatchRequestedSchema, ordering_key=lambda d: f"batch:{d['batch_id']}")
def handle_batch_requested(kb, data: dict, cause: str, crm_time=None) -> str:
    """Record the batch and queue its work (contacts in chunks, leads one by one); a batch_id seen before queues nothing."""
    batch_id, items = data["batch_id"], data["items"]
    with kb.db.session() as session:
        if session.get(Batch, batch_id) is not None:
            return "duplicate_batch"
        session.add(Batch(batch_id=batch_id, total=len(items), webhook_id=cause))
        session.flush()
        session.execute(insert(BatchItem), [
            {"batch_id": batch_id, "idx": idx, "kind": item["kind"], "crm_id": item.get("contact_id") or item.get("lead_id"),
             "email": item["email"]} for idx, item in enumerate(items)])
        raw = [_json_ready(item) for item in items]
        when = crm_time.isoformat() if crm_time is not None else None  # each item is its record's state as of the batch's time
        for idx, item in enumerate(raw):
            if item["kind"] == "lead":
                tasks.enqueue(session, "batch_item", f"{batch_id}:{idx}", payload={**item, **({"crm_time": when} if when else {})})
        chunks = plan_chunks(items, kb.settings.batch_chunk_size)
        for n, idxs in enumerate(chunks):
            tasks.enqueue(session, CHUNK_JOB, f"{batch_id}:chunk:{n}",
                          payload={"batch_id": batch_id, "crm_time": when, "items": [{"idx": i, **raw[i]} for i in idxs]})
        audit.record(session, "batch.queued", f"batch:{batch_id}", cause, {"items": len(items), "chunks": len(chunks)})
    return f"queued {len(items)}"


def _json_ready(item: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in item.items()}


def plan_chunks(items: list[dict], size: int) -> list[list[int]]:
    """The contact items' indexes in chunks of about `size`, one account per chunk where it can be.

    Items naming a contact or an (account, address) met before join that earlier item's
    chunk (which may then grow past `size`): one chunk runs them one after another, where
    two chunks would race each other.
    """
    chunks: list[list[int]] = []
    open_chunk: dict[str, int] = {}
    placed: dict[tuple, int] = {}
    for idx, item in enumerate(items):
        if item["kind"] != "contact":
            continue
        account = item["account_id"]
        keys = (("contact", item["contact_id"]), ("email", account, item["email"].strip().lower()))
        target = next((placed[k] for k in keys if k in placed), None)
        if target is None:
            target = open_chunk.get(account)
            if target is None or len(chunks[target]) >= size:
                chunks.append([])
                target = open_chunk[account] = len(chunks) - 1
        chunks[target].append(idx)
        for key in keys:
            placed.setdefault(key, target)
    return chunks


# -- one item at a time: leads, and whatever a chunk hands on ---------------------------------

def _item_record(item: dict) -> str:
    """An item runs in its CRM record's order (with that contact's or lead's other events)."""
    return f"contact:{item['contact_id']}" if item.get("kind") == "contact" else f"lead:{item.get('lead_id')}"


def _item_dead(kb, job, error: Exception) -> None:
    """An item that kept failing is settled as failed, so the batch still completes."""
    batch_id, idx = job.ref.rsplit(":", 1)
    if settle_item(kb, batch_id, int(idx), "failed", f"{type(error).__name__}: {error}"):
        fill_batch_invitation_ids(kb, batch_id)


@tasks.job("batch_item", ordering_key=_item_record, on_dead=_item_dead)
def run_batch_item(kb, job) -> str:
    """Invite one item; a refusal is the item's outcome (the batch goes on), a passing failure retries."""
    batch_id, idx = job.ref.rsplit(":", 1)
    outcome, error = _invite_one(kb, batch_id, int(idx), dict(job.payload), job)
    if settle_item(kb, batch_id, int(idx), outcome, error):
        fill_batch_invitation_ids(kb, batch_id)
    return outcome


def _invite_one(kb, batch_id: str, idx: int, item: dict, job) -> tuple[str, str | None]:
    """One item through the single invitation's handler: (outcome, error). Raises RetryableError."""
    item.pop("idx", None)
    kind = item.pop("kind")
    crm_time = item.pop("crm_time", None)
    crm_time = datetime.fromisoformat(crm_time) if crm_time else None
    schema = ContactInviteSchema() if kind == "contact" else LeadInviteSchema()
    data = schema.load(item)
    cause = f"batch {batch_id} item {idx}"
    try:
        outcome = (invitations.invite_contact if kind == "contact" else invitations.invite_lead)(kb, data, cause, crm_time=crm_time)
    except PermanentError as exc:
        return "failed", str(exc)
    if outcome == "pending" and job.attempts > 1 and _sent_since(kb, kind, data.get(f"{kind}_id"), job.created_at):
        # An earlier run of this very job sent it and died before settling the item (jobs of one
        # record run one at a time, so no other request sent it since this item was queued).
        outcome = "sent"
    return outcome, None


def _sent_since(kb, kind: str, crm_id: str, since) -> bool:
    with kb.db.session() as session:
        sent_at = session.scalar(select(Invitation.sent_at).where(Invitation.kind == kind, Invitation.crm_id == crm_id))
    return sent_at is not None and sent_at >= since


# -- contacts in chunks -------------------------------------------------------------------------

def _chunk_dead(kb, job, error: Exception) -> None:
    """A chunk that kept failing settles its waiting items as failed, so the batch still completes."""
    batch_id = job.payload["batch_id"]
    message = f"{type(error).__name__}: {error}"
    with kb.db.session() as session:
        waiting = _waiting(session, batch_id, [i["idx"] for i in job.payload["items"]])
    _settle_many(kb, batch_id, {idx: ("failed", message) for idx in waiting})


def _waiting(session, batch_id: str, idxs: list[int]) -> set[int]:
    return set(session.scalars(select(BatchItem.idx).where(BatchItem.batch_id == batch_id, BatchItem.idx.in_(idxs),
                                                           BatchItem.outcome.is_(None))))


def chunk_width(kb) -> int:
    """Invitations one chunk sends at once: KEYBRIDGE_KEYCLOAK_CONCURRENCY shared by the worker's threads."""
    threads = kb.settings.worker_threads if kb.settings.worker_threads > 0 else (4 if kb.db.is_postgres else 1)
    return max(1, kb.settings.keycloak_concurrency // threads)


@tasks.job(CHUNK_JOB, on_dead=_chunk_dead)
def run_batch_chunk(kb, job) -> str:
    """Invite a chunk of a batch's contacts (see the module docstring); raises RetryableError, after
    settling what it could, when some items must wait (Keycloak unreachable, an account with no
    organization yet)."""
    batch_id = job.payload["batch_id"]
    crm_time = datetime.fromisoformat(job.payload["crm_time"]) if job.payload.get("crm_time") else None
    with kb.db.session() as session:
        waiting = _waiting(session, batch_id, [i["idx"] for i in job.payload["items"]])
    todo: list[dict] = []
    settled: dict[int, tuple[str, str | None]] = {}
    schema = ContactInviteSchema()
    for raw in job.payload["items"]:
        if raw["idx"] not in waiting:
            continue  # settled by an earlier run of this chunk
        try:
            data = schema.load({k: v for k, v in raw.items() if k not in ("idx", "kind")})
        except ValidationError as exc:
            settled[raw["idx"]] = ("failed", f"item {raw['idx']} is not a valid contact invitation: {exc.messages}")
            continue
        data["idx"], data["email"] = raw["idx"], data["email"].strip().lower()
        todo.append(data)
    if not todo and not settled:
        return "settled already"

    later: list[Exception] = []
    orgs: dict[str, dict | None] = {}
    for account_id in dict.fromkeys(d["account_id"] for d in todo):
        orgs[account_id] = kb.keycloak.find_organization(account_id)
        if orgs[account_id] is None:
            later.append(RetryableError(f"Account {account_id} has no organization yet: the CRM must send account.upserted "
                                        "for it first (retrying).", retry_after=30))
    todo = [d for d in todo if orgs[d["account_id"]] is not None]

    fast, single = _split(todo)
    fast, handed_on = _prepare(kb, batch_id, fast, orgs, crm_time)
    single += handed_on
    width = min(chunk_width(kb), max(1, len(fast)))
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="invite") as pool:
        answers = list(pool.map(lambda d: _send(kb, d, orgs[d["account_id"]]["id"]), fast))
    sent: list[tuple[dict, str | None]] = []
    restore: dict[int, str] = {}  # invitation rows that go back to what they were: nothing went out
    for data, (answer, detail) in zip(fast, answers):
        if answer == "sent":
            sent.append((data, detail))
        elif answer == "failed":
            settled[data["idx"]] = ("failed", detail)
            restore[data["inv_id"]] = data["prior"]
        elif answer == "retry":
            later.append(detail)  # left `sending`: the next run asks Keycloak again
        else:
            # 409: the single path reads what Keycloak has and records it; a row this run marked
            # `sending` is `new` again for it (the pending invitation is not this run's)
            restore[data["inv_id"]] = data["prior"]
            single.append(data)
    completed = _record_sent_many(kb, batch_id, sent, restore, settled, job)
    for org_id in {orgs[d["account_id"]]["id"] for d, _ in sent}:
        fill_invitation_ids(kb, org_id)

    single.sort(key=lambda d: d["idx"])  # an address met twice: its first item first
    for data in single:
        raw = {k: v for k, v in data.items() if k not in ("inv_id", "prior")}
        raw.update(kind="contact", crm_time=crm_time.isoformat() if crm_time else None)
        try:
            outcome, error = _invite_one(kb, batch_id, data["idx"], raw, job)
        except RetryableError as exc:
            later.append(exc)
            continue
        completed = settle_item(kb, batch_id, data["idx"], outcome, error) or completed
    if completed:
        fill_batch_invitation_ids(kb, batch_id)
    if later:
        first = later[0]
        raise RetryableError(f"{len(later)} item(s) of this chunk wait: {first}", retry_after=getattr(first, "retry_after", None))
    return f"{len(sent)} sent, {len(single)} one by one, {len(settled) - len(sent)} failed"


def _split(todo: list[dict]) -> tuple[list[dict], list[dict]]:
    """(plain new invitations, items for the single path): a resend, or a contact or address met earlier in the chunk."""
    fast, single, seen = [], [], set()
    for data in todo:
        keys = {("contact", data["contact_id"]), ("email", data["account_id"], data["email"])}
        (single if data.get("resend") or keys & seen else fast).append(data)
        seen |= keys
    return fast, single


def _prepare(kb, batch_id: str, fast: list[dict], orgs: dict, crm_time) -> tuple[list[dict], list[dict]]:
    """One transaction before sending: each contact's desired state taken, its invitation row made
    or brought up to date and marked `sending`. Returns (to send, for the single path): a contact
    whose newest CRM state is `left`, or whose invitation row is neither new nor `sending` for the
    same address, goes the single path."""
    if not fast:
        return [], []
    cause = f"batch {batch_id}"
    ready, single = [], []
    try:
        with kb.db.session() as session:
            stored = records.stored(session, "contact", [d["contact_id"] for d in fast])
            when = records.naive_utc(crm_time)
            for data in fast:
                # The CRM said something about this contact after the batch was made (it left, its
                # invitation was revoked, ...): the single path weighs it. Without a CRM time the
                # batch counts as older, as there.
                prior = stored.get(data["contact_id"])
                newer = prior is not None and (prior.state.get("status") == "left" if when is None else when < prior.crm_time)
                (single if newer else ready).append(data)
            records.take_many(session, "contact", {d["contact_id"]: {
                "contact_id": d["contact_id"], "email": d["email"], "account_id": d["account_id"], "first_name": d.get("first_name"),
                "last_name": d.get("last_name"), "status": "active"} for d in ready}, crm_time, cause)
            rows = {i.crm_id: i for i in session.scalars(select(Invitation).where(
                Invitation.kind == "contact", Invitation.crm_id.in_([d["contact_id"] for d in ready])).with_for_update())}
            to_send = []
            for data in ready:
                inv = rows.get(data["contact_id"])
                if inv is not None and (inv.status not in ("new", "sending") or inv.email != data["email"]):
                    single.append(data)
                    continue
                if inv is None:
                    inv = Invitation(kind="contact", crm_id=data["contact_id"], email=data["email"], sent_count=0)
                    session.add(inv)
                data["prior"] = inv.status or "new"
                inv.account_id, inv.organization_id = data["account_id"], orgs[data["account_id"]]["id"]
                inv.details = invitations.contact_details(data)
                inv.status = "sending"
                to_send.append((data, inv))
            session.flush()
            for data, inv in to_send:
                data["inv_id"] = inv.id
    except IntegrityError as exc:  # a single invitation of one of these contacts made its row at the same moment
        raise RetryableError(f"an invitation of this chunk was stored concurrently; retrying to compare with it ({exc.orig})") from exc
    return [d for d, _ in to_send], single


def _send(kb, data: dict, org_id: str) -> tuple[str, object]:
    """One invite-user call: ("sent", None), ("pending"|"member", None), ("failed", message) or ("retry", the error).

    Keycloak's 204 carries no invitation id; `fill_invitation_ids` reads them for many at once."""
    try:
        answer = kb.keycloak.invite_to_organization(org_id, data["email"], data.get("first_name"), data.get("last_name"))
    except RetryableError as exc:
        return "retry", exc
    except PermanentError as exc:
        return "failed", str(exc)
    return answer, None


def _record_sent_many(kb, batch_id: str, sent: list[tuple[dict, str | None]], restore: dict[int, str],
                      settled: dict[int, tuple[str, str | None]], job) -> bool:
    """One transaction after sending: invitation rows `sent`, `invitation.sent` owed to the CRM,
    audit entries, the chunk's items settled, the batch completed if these were its last (returns whether)."""
    if not sent and not settled and not restore:
        return False
    cause = f"batch {batch_id}"
    now = utcnow()
    with kb.db.session() as session:
        batch = session.get(Batch, batch_id, with_for_update=True)  # see settle_item
        ids = [d["inv_id"] for d, _ in sent] + list(restore)
        rows = {i.id: i for i in session.scalars(select(Invitation).where(Invitation.id.in_(ids)))} if ids else {}
        owed = []
        for data, invitation_id in sent:
            inv = rows[data["inv_id"]]
            owed.append(invitations.mark_sent(kb, session, inv, f"{cause} item {data['idx']}"))  # as a single invitation
            inv.keycloak_invitation_id = invitation_id
            settled[data["idx"]] = ("sent", None)
        outbox.record_many(session, owed)
        for inv_id, status in restore.items():
            rows[inv_id].status = status
        completed = _settle_in(session, batch, settled, now)
        # This run got somewhere: the worker's earlier deaths in it were not this job's doing.
        session.execute(update(Job).where(Job.id == job.id, Job.crashes.is_not(None)).values(crashes=None))
    return completed


def _settle_many(kb, batch_id: str, outcomes: dict[int, tuple[str, str | None]]) -> None:
    if not outcomes:
        return
    with kb.db.session() as session:
        batch = session.get(Batch, batch_id, with_for_update=True)
        completed = _settle_in(session, batch, outcomes, utcnow())
    if completed:
        fill_batch_invitation_ids(kb, batch_id)


def _settle_in(session, batch: Batch, outcomes: dict[int, tuple[str, str | None]], now) -> bool:
    """Settle items in the caller's transaction, which holds the batch row's lock; the last one completes the batch (True)."""
    if outcomes:
        session.execute(update(BatchItem), [{"batch_id": batch.batch_id, "idx": idx, "outcome": outcome, "error": error,
                                             "finished_at": now} for idx, (outcome, error) in outcomes.items()])
    return _complete_if_done(session, batch)


def settle_item(kb, batch_id: str, idx: int, outcome: str, error: str | None = None) -> bool:
    """Record an item's outcome; the last one completes the batch (once; returns True then)."""
    with kb.db.session() as session:
        # Items settle concurrently (several workers or worker threads): the batch row's lock makes
        # each count see the others' outcomes, so exactly one of them completes the batch.
        batch = session.get(Batch, batch_id, with_for_update=True)
        item = session.get(BatchItem, (batch_id, idx))
        item.outcome, item.error, item.finished_at = outcome, error, utcnow()
        session.flush()
        return _complete_if_done(session, batch)


def _complete_if_done(session, batch: Batch) -> bool:
    waiting = session.scalar(select(func.count()).select_from(BatchItem).where(
        BatchItem.batch_id == batch.batch_id, BatchItem.outcome.is_(None)))
    if waiting == 0 and batch.completed_at is None:
        batch.completed_at = utcnow()
        outbox.record(session, INVITATION_BATCH_COMPLETED, {"batch_id": batch.batch_id, "counts": counts(session, batch.batch_id)},
                      f"{INVITATION_BATCH_COMPLETED}:{batch.batch_id}")
        return True
    return False


# -- Keycloak's invitation ids, read for many at once ------------------------------------------------

ID_FILL_PAGE = 500
ID_FILL_EVERY_SECONDS = 2.0  # at most this often per organization while a batch runs ...
ID_FILL_SHARE = 0.1  # ... and spending at most this share of the time between two reads reading


def fill_invitation_ids(kb, org_id: str, force: bool = False, quiet: bool = True) -> int:
    """Keycloak's ids of the organization's invitations Keybridge sent without learning it (invite-user
    answers 204 with no body): one paged read of its pending invitations, matched by address.
    Returns how many invitation rows got their id.

    A registration through an invitation names it by this id (registrations.py). Reading every
    pending invitation costs Keycloak about 0.2 ms each, asking for one 10-20 ms: while a batch
    runs the read is repeated at most every ID_FILL_EVERY_SECONDS per organization, and less often
    as it grows (ID_FILL_SHARE); `force` reads now (the batch is complete). A failed read is logged
    and left to the next one (`quiet`), or raised.
    """
    name, now = f"invitation_ids:{org_id}", time.time()
    try:
        with kb.db.session() as session:
            cursor = session.get(Cursor, name, with_for_update=True)
            if cursor is None:
                cursor = Cursor(name=name, position={})
                session.add(cursor)
            last, cost = float(cursor.position.get("at", 0)), float(cursor.position.get("cost", 0))
            if not force and now - last < max(ID_FILL_EVERY_SECONDS, cost / ID_FILL_SHARE):
                return 0
            cursor.position = {"at": now, "cost": cost}  # this reader's turn: the others wait for the next one
    except IntegrityError:  # another worker made the organization's first turn at the same moment: it reads
        if not force:
            return 0
    try:
        ids: dict[str, str] = {}
        first = 0
        while True:
            page = kb.keycloak.organization_invitations_page(org_id, first, ID_FILL_PAGE)
            for invitation in page:
                if invitation.get("status", "PENDING") == "PENDING" and invitation.get("email"):
                    ids.setdefault(invitation["email"].lower(), invitation["id"])
            if len(page) < ID_FILL_PAGE:
                break
            first += ID_FILL_PAGE
    except (RetryableError, PermanentError) as exc:
        if not quiet:
            raise
        log.info("organization %s: its pending invitations were not readable (%s); their ids are read next time", org_id, exc)
        return 0
    filled = 0
    with kb.db.session() as session:
        rows = session.execute(select(Invitation.id, Invitation.email).where(
            Invitation.kind == "contact", Invitation.organization_id == org_id, Invitation.status == "sent",
            Invitation.keycloak_invitation_id.is_(None))).all()
        found = [{"id": inv_id, "keycloak_invitation_id": ids[email]} for inv_id, email in rows if email in ids]
        if found:
            session.execute(update(Invitation), found)
            filled = len(found)
        cursor = session.get(Cursor, name, with_for_update=True)
        if cursor is not None:
            cursor.position = {"at": cursor.position.get("at", now), "cost": time.time() - now}
    return filled


def fill_batch_invitation_ids(kb, batch_id: str) -> int:
    """The batch is complete: the ids of every invitation it sent, read now for each of its organizations
    (when Keycloak cannot be read now, a job reads them, retried like any other)."""
    with kb.db.session() as session:
        created = session.scalar(select(Batch.created_at).where(Batch.batch_id == batch_id))
        orgs = session.scalars(select(Invitation.organization_id).where(
            Invitation.kind == "contact", Invitation.status == "sent", Invitation.keycloak_invitation_id.is_(None),
            Invitation.organization_id.is_not(None), Invitation.sent_at >= created).distinct()).all()
    filled = 0
    for org_id in orgs:
        try:
            filled += fill_invitation_ids(kb, org_id, force=True, quiet=False)
        except (RetryableError, PermanentError) as exc:
            log.info("batch %s: the ids of its invitations in organization %s are read later (%s)", batch_id, org_id, exc)
            with kb.db.session() as session:
                tasks.enqueue(session, ID_FILL_JOB, f"{org_id}@{batch_id}", payload={"org_id": org_id})
    return filled


ID_FILL_JOB = "invitation_ids"


@tasks.job(ID_FILL_JOB)
def run_invitation_ids(kb, job) -> str:
    """Read the ids of an organization's invitations a completed batch sent (Keycloak could not be read then)."""
    return f"{fill_invitation_ids(kb, job.payload['org_id'], force=True, quiet=False)} ids"


def counts(session, batch_id: str) -> dict[str, int]:
    rows = session.execute(select(BatchItem.outcome, func.count()).where(BatchItem.batch_id == batch_id).group_by(BatchItem.outcome))
    return {(outcome or "waiting"): n for outcome, n in rows}


def batch_status(kb, batch_id: str, offset: int = 0, limit: int = 1000) -> dict | None:
    """Progress, counts per outcome and a page of per-item results."""
    with kb.db.session() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            return None
        per_outcome = counts(session, batch_id)
        items = session.scalars(select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.idx)
                                .offset(offset).limit(limit)).all()
        done = batch.total - per_outcome.get("waiting", 0)
        return {"batch_id": batch_id, "total": batch.total, "done": done,
                "progress": round(done / batch.total, 4) if batch.total else 1.0,
                "status": "completed" if batch.completed_at else "running", "counts": per_outcome,
                "created_at": outbox.iso(batch.created_at), "completed_at": outbox.iso(batch.completed_at),
                "items": [{"index": i.idx, "kind": i.kind, "id": i.crm_id, "email": i.email,
                           "outcome": i.outcome, "error": i.error} for i in items],
                "items_offset": offset}
