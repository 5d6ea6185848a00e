"""Reading Keycloak's user event log with a durable cursor.

The cursor is the time (ms) of the newest event taken. Each poll re-reads a short
overlap before it, because an event can be committed a little after a later one
is visible; event ids already taken are skipped (kept in `seen_keycloak_events`).
Each relevant event becomes a job in the same transaction that moves the cursor,
so a restart neither loses nor repeats one. One user's events run in the log's order
(their jobs share an ordering key), even when one of them waits for a retry.
"""
from __future__ import annotations

import logging
import time

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from . import tasks
from .handlers import activity
from .models import Cursor, SeenKeycloakEvent

log = logging.getLogger(__name__)

CURSOR = "keycloak_user_events"
OVERLAP_MS = 10_000
PAGE = 200
RELEVANT = {"REGISTER", "INVITE_ORG", "UPDATE_PASSWORD", "UPDATE_CREDENTIAL", "VERIFY_EMAIL", "UPDATE_PROFILE", "UPDATE_EMAIL"}


def ensure_cursor(kb, name: str = CURSOR) -> dict:
    """A log's cursor, created on first start: at the log's beginning, or at this moment
    when KEYBRIDGE_EVENTS_START=now (floor_ms: never look back before it)."""
    try:
        with kb.db.session() as session:
            cursor = session.get(Cursor, name)
            if cursor is None:
                start = int(time.time() * 1000) if kb.settings.events_start == "now" else 0
                cursor = Cursor(name=name, position={"time_ms": start, "floor_ms": start})
                session.add(cursor)
            return dict(cursor.position)
    except IntegrityError:  # workers starting together: another one made it a moment ago
        with kb.db.session() as session:
            return dict(session.get(Cursor, name).position)


def read_log(kb, name: str, fetch, take_event) -> int:
    """Read one Keycloak event log from its cursor `name`, page by page, oldest first.

    `fetch(date_from_ms, first, max)` returns a page; `take_event(session, event)` turns
    one not-yet-seen event into work (a job, a count) in the transaction that moves the
    cursor, and returns how much it took. Returns the total taken.
    """
    position = ensure_cursor(kb, name)
    date_from = max(int(position.get("floor_ms", 0)), int(position.get("time_ms", 0)) - OVERLAP_MS)
    taken = 0
    first = 0
    while True:
        page = fetch(date_from, first, PAGE)
        if not page:
            break
        taken += _take(kb, name, page, take_event)
        if len(page) < PAGE:
            break
        first += PAGE
    return taken


def _take(kb, name: str, page: list[dict], take_event) -> int:
    taken = 0
    with kb.db.session() as session:
        # Workers reading the same log take turns (the cursor row's lock): the second one sees the
        # first one's ids as seen, instead of failing its whole pass on their primary key.
        cursor = session.get(Cursor, name, with_for_update=True)
        ids = [e["id"] for e in page if e.get("id")]
        seen = set(session.scalars(select(SeenKeycloakEvent.id).where(SeenKeycloakEvent.id.in_(ids))))
        newest = 0
        for event in page:
            newest = max(newest, int(event.get("time", 0)))
            if not event.get("id") or event["id"] in seen:
                continue
            session.add(SeenKeycloakEvent(id=event["id"], time_ms=int(event.get("time", 0))))
            taken += take_event(session, event)
        if newest > int(cursor.position.get("time_ms", 0)):
            cursor.position = {**cursor.position, "time_ms": newest}
        # Forget ids no log can re-read any more. The table is shared by the logs, so the
        # horizon is the slowest cursor's, not this one's.
        cursors = [int(c.position.get("time_ms", 0)) for c in session.scalars(select(Cursor).where(Cursor.name.like("keycloak_%")))]
        horizon = min(cursors + [newest]) - 10 * OVERLAP_MS
        session.execute(delete(SeenKeycloakEvent).where(SeenKeycloakEvent.time_ms < horizon))
    return taken


def poll(kb) -> int:
    """Take every new event from Keycloak's user event log; returns how many became jobs or were counted."""
    return read_log(kb, CURSOR, kb.keycloak.user_events, _take_user_event)


def _take_user_event(session, event: dict) -> int:
    if event.get("type") in RELEVANT:
        tasks.enqueue(session, "keycloak_event", event["id"], payload=event)
        return 1
    if event.get("type") == "LOGIN" and event.get("userId"):
        activity.count_login(session, event)
        return 1
    return 0
