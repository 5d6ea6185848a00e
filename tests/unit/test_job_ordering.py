"""One user's Keycloak events run in the log's order, even when one waits for a retry."""
from __future__ import annotations

from adapter import jobs
from adapter.db import utcnow
from adapter.models import Job


def test_jobs_sharing_an_ordering_key_wait_for_the_earlier_one(kb):
    with kb.db.session() as s:
        jobs.enqueue(s, "keycloak_event", "e1", ordering_key="user:u1")
        jobs.enqueue(s, "keycloak_event", "e2", ordering_key="user:u1")
        jobs.enqueue(s, "keycloak_event", "e3", ordering_key="user:u2")

    with kb.db.session() as s:
        first = jobs.claim(s)
        assert first.ref == "e1"
        jobs.fail(s, first, jobs.RetryableError("Keycloak down"), retry_window_seconds=3600, max_delay=300)

    with kb.db.session() as s:
        other = jobs.claim(s)
        assert other.ref == "e3", "another user's event is not held back"
        jobs.finish(s, other)
    with kb.db.session() as s:
        assert jobs.claim(s) is None, "e2 must not overtake e1, which waits for its retry"
        s.get(Job, first.id).run_at = utcnow()
    with kb.db.session() as s:
        again = jobs.claim(s)
        assert again.ref == "e1"
        jobs.finish(s, again)
    with kb.db.session() as s:
        assert jobs.claim(s).ref == "e2"
