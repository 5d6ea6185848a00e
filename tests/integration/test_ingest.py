"""Storing webhooks on the real PostgreSQL: one statement per webhook, the same webhook-id
arriving twice at the same moment stored once, and a connection the database closed replaced
without losing the webhook. (Needs PostgreSQL only, not Keycloak.)"""
from __future__ import annotations

import threading
from collections import Counter

import psycopg
import pytest
from sqlalchemy import func, select

from adapter import create_app, inbox
from adapter.config import Settings
from adapter.models import InboundEvent, Job
from tests.conftest import SECRET, SESSION_SECRET, envelope, signed_post
from tests.support import stack

pytestmark = pytest.mark.integration

INVITE = {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "roles": ["Buyer"]}


@pytest.fixture
def pg_app(postgres_url):
    url = stack.create_database(postgres_url)
    settings = Settings.from_env({}, database_url=url, webhook_secrets=[SECRET], session_secret=SESSION_SECRET,
                                 keycloak_url="http://127.0.0.1:9")
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    yield app
    app.extensions["keybridge"].db.dispose()
    stack.drop_database(url)


def counts(db) -> tuple[int, int]:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(InboundEvent)), s.scalar(select(func.count()).select_from(Job))


def test_the_same_webhook_id_arriving_at_once_is_stored_once_with_one_job(pg_app):
    """Four deliveries of each webhook-id released together, 30 times: one 202, three 200 duplicate."""
    db = pg_app.extensions["keybridge"].db
    body = envelope("contact.invite_requested", INVITE)
    answers: list[tuple[str, int]] = []
    lock = threading.Lock()
    rounds, senders = 30, 4

    for n in range(rounds):
        start = threading.Barrier(senders)

        def deliver(webhook_id=f"msg_race_{n}"):
            client = pg_app.test_client()
            start.wait()
            status = signed_post(client, body, webhook_id=webhook_id).status_code
            with lock:
                answers.append((webhook_id, status))

        threads = [threading.Thread(target=deliver) for _ in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    per_id = Counter(webhook_id for webhook_id, status in answers if status == 202)
    assert sorted(Counter(status for _, status in answers).items()) == [(200, rounds * (senders - 1)), (202, rounds)]
    assert set(per_id.values()) == {1} and len(per_id) == rounds
    assert counts(db) == (rounds, rounds)
    with db.session() as s:
        assert sorted(s.scalars(select(Job.ref)).all()) == sorted(per_id)


def test_storing_a_webhook_is_one_statement_committed_as_it_runs(pg_app, monkeypatch):
    """One statement on an autocommit connection (no BEGIN, no COMMIT, no ping): one round trip."""
    db = pg_app.extensions["keybridge"].db
    client = pg_app.test_client()
    assert signed_post(client, envelope("contact.invite_requested", INVITE), webhook_id="msg_warm").status_code == 202
    sent: list[tuple[str, bool]] = []
    real_execute = psycopg.Cursor.execute

    def execute(cursor, query, *args, **kwargs):
        sent.append((str(query), cursor.connection.autocommit))
        return real_execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    monkeypatch.setattr(psycopg.Connection, "commit", lambda self: sent.append(("COMMIT", self.autocommit)))
    r = signed_post(client, envelope("contact.invite_requested", {**INVITE, "contact_id": "C-2"}), webhook_id="msg_one")
    monkeypatch.undo()

    assert r.status_code == 202
    assert len(sent) == 1 and sent[0][0].lstrip().startswith("WITH new_event AS") and sent[0][1] is True
    # committed: another connection sees both rows at once
    with psycopg.connect(db.url.replace("postgresql+psycopg://", "postgresql://")) as other:
        assert other.execute("select count(*) from jobs where ref = 'msg_one' and kind = 'inbound_event'").fetchone() == (1,)
        assert other.execute("select count(*) from inbound_events where id = 'msg_one'").fetchone() == (1,)
        payload = other.execute("select payload from inbound_events where id = 'msg_one'").fetchone()[0]
        job = other.execute("select payload, status, attempts, ordering_key from jobs where ref = 'msg_one'").fetchone()
    assert payload["data"]["contact_id"] == "C-2" and payload["type"] == "contact.invite_requested"
    assert job == ({"type": "contact.invite_requested"}, "queued", 0, "contact:C-2")


def test_a_connection_the_database_closed_is_replaced_and_the_webhook_stored(pg_app, caplog):
    """The hot path does not ping its connection first: a dead one (the database restarted) is
    noticed by the statement itself, which runs once more on a new connection."""
    db = pg_app.extensions["keybridge"].db
    with db.autocommit_engine.connect() as connection:
        pid = connection.exec_driver_sql("select pg_backend_pid()").scalar()
    with psycopg.connect(db.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        assert admin.execute("select pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)

    status = inbox.store_event(db, "msg_after_restart", "crm", envelope("contact.invite_requested", INVITE))

    assert status == "accepted" and counts(db) == (1, 1)
    assert "storing webhook msg_after_restart again on a new one" in caplog.text
    # the same webhook-id again is still a duplicate
    assert inbox.store_event(db, "msg_after_restart", "crm", envelope("contact.invite_requested", INVITE)) == "duplicate"
    assert counts(db) == (1, 1)
