"""Nudges from Keycloak's extension: "read the event logs now".

The web process records each nudge in one row (`cursors`, name
`nudge:keycloak`: a fresh random id and the time); the worker compares the id
with the last one it acted on at every pass, a primary-key read, and reads both
Keycloak event logs at once when it changed (an id, not a time, so clocks of
several web hosts need not agree). The logs' durable cursors stay the source of truth: a nudge lost
(adapter down, queue full in Keycloak) only means the regular poll finds the
event, a nudge repeated only means one more read.
"""
from __future__ import annotations

import time
import uuid

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from .models import Cursor

NAME = "nudge:keycloak"  # not "keycloak_%": those are the event logs' cursors


def record(db) -> str:
    """Store that a nudge arrived; returns its id. Several web processes may race: the last one wins, which is enough."""
    position = {"id": uuid.uuid4().hex, "at_ms": int(time.time() * 1000)}
    for _ in range(2):
        try:
            with db.session() as session:
                changed = session.execute(update(Cursor).where(Cursor.name == NAME).values(position=position)).rowcount
                if not changed:
                    session.add(Cursor(name=NAME, position=position))
            break
        except IntegrityError:
            continue  # another process inserted the row meanwhile: update it
    return position["id"]


def latest(db) -> str:
    """Id of the latest nudge, "" when none arrived yet."""
    with db.session() as session:
        row = session.get(Cursor, NAME)
        return str((row.position or {}).get("id", "")) if row else ""
