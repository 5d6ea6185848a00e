"""Login activity summarised to the CRM (`identity.activity`): the raw material for lead scoring.

LOGIN events are counted as they are read from Keycloak's log (no Keycloak call, same
transaction as the cursor), per user and per user and day (`daily_logins`, the dashboard's
"active"); every `KEYBRIDGE_ACTIVITY_REPORT_SECONDS` a report job tells
the CRM, per user who logged in since the last report, when they last did and how often.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from sqlalchemy import select

from .. import outbox, tasks
from ..db import utcnow
from ..events import IDENTITY_ACTIVITY
from ..models import DailyLogin, LoginActivity
from .self_service import crm_link


def count_login(session, event: dict) -> None:
    """Called while taking events from the log: one more login for the user."""
    when = datetime.fromtimestamp(event["time"] / 1000, tz=timezone.utc).replace(tzinfo=None)
    day = session.get(DailyLogin, (when.date(), event["userId"]))
    if day is None:
        session.add(DailyLogin(day=when.date(), user_id=event["userId"], logins=1))
    else:
        day.logins += 1
    row = session.get(LoginActivity, event["userId"])
    if row is None:
        session.add(LoginActivity(user_id=event["userId"], last_login_at=when, logins_since_report=1))
        return
    row.logins_since_report += 1
    row.last_login_at = max(row.last_login_at, when)


def schedule_report(kb) -> int:
    """Queue the report of the current interval (once per interval, whoever asks)."""
    interval = max(1, kb.settings.activity_report_seconds)
    bucket = int(time.time() // interval)
    with kb.db.session() as session:
        if not session.scalar(select(LoginActivity.user_id).where(LoginActivity.logins_since_report > 0).limit(1)):
            return 0
        return int(tasks.enqueue(session, "activity_report", f"activity@{interval}:{bucket}"))


@tasks.job("activity_report")
def run_report(kb, job) -> str:
    """Tell the CRM, per user who logged in since the last report, when they last did and how often."""
    with kb.db.session() as session:
        rows = [(r.user_id, r.last_login_at, r.logins_since_report)
                for r in session.scalars(select(LoginActivity).where(LoginActivity.logins_since_report > 0))]
    for user_id, last_login_at, logins in rows:
        user = kb.keycloak.get_user(user_id) or {}
        with kb.db.session() as session:
            recorded = outbox.record(session, IDENTITY_ACTIVITY,
                                     {"user_id": user_id, **crm_link(user), "last_login_at": outbox.iso(last_login_at), "logins": logins},
                                     f"{IDENTITY_ACTIVITY}:{user_id}:{job.ref}")
            if recorded:
                row = session.get(LoginActivity, user_id)
                row.logins_since_report -= logins  # logins counted meanwhile wait for the next report
                row.last_reported_at = utcnow()
    return f"reported {len(rows)}"
