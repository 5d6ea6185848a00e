"""Dead letters: jobs and outbound events that kept failing, listed and replayed by an operator."""
from __future__ import annotations

from sqlalchemy import select

from . import jobs, outbox
from .handlers import audit
from .errors import ApiError
from .models import Job, OutboxEvent


def list_all(db) -> list[dict]:
    with db.session() as session:
        dead_jobs = session.scalars(select(Job).where(Job.status == "dead").order_by(Job.id)).all()
        dead_events = session.scalars(select(OutboxEvent).where(OutboxEvent.status == "dead").order_by(OutboxEvent.seq)).all()
        return [
            {"kind": "job", "id": str(j.id), "what": f"{j.kind} {j.ref}", "attempts": j.attempts, "error": j.last_error,
             "since": outbox.iso(j.finished_at)}
            for j in dead_jobs
        ] + [
            {"kind": "outbound", "id": e.id, "what": e.type, "attempts": e.attempts, "error": e.last_error,
             "since": outbox.iso(e.created_at)}
            for e in dead_events
        ]


def replay(db, kind: str, item_id: str, actor: dict | None = None) -> None:
    """Requeue one dead letter; raises ApiError(404/409/400) saying what is wrong.

    `actor` ({"actor": email, "actor_user_id": id, "via": "dashboard"}) is audited with the
    replay, in the same transaction."""
    if kind == "job" and not str(item_id).isdigit():
        raise ApiError(404, f"No job {item_id}; job ids are numbers, see `keybridge dead-letters list`.")
    try:
        with db.session() as session:
            if kind == "job":
                jobs.replay(session, int(item_id))
            elif kind == "outbound":
                outbox.replay(session, item_id)
            else:
                raise ApiError(400, "kind must be 'job' or 'outbound'", {"kind": ["Unknown kind."]})
            if actor:
                audit.record(session, "dead_letter.replayed", f"{kind}:{item_id}",
                             f"operator {actor['actor']} ({actor.get('via', 'dashboard')})", actor)
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    except ValueError as exc:
        raise ApiError(409, str(exc)) from None
