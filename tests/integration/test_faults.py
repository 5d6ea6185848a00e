"""Faults, on the real Keycloak, mail sink and PostgreSQL: the worker killed again and again in
the middle of a batch, and two workers sharing the outbox while the CRM is slow."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from sqlalchemy import select

from adapter import create_app, outbox
from adapter.config import Settings
from adapter.connectors.generic import GenericWebhookConnector
from adapter.handlers import batches
from adapter.models import Job, OutboxEvent
from adapter.runtime import Keybridge
from tests.conftest import SECRET, envelope, signed_post
from tests.support import stack

from .conftest import CRM_SECRET

pytestmark = pytest.mark.integration

BATCH_SIZE = 300
KILL_AT = (0.1, 0.25, 0.4, 0.55, 0.7)  # shares of the batch settled when the worker is killed


@pytest.fixture
def pg_url(postgres_url):
    url = stack.create_database(postgres_url)
    yield url
    stack.drop_database(url)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a `keybridge worker` process using this test's settings (and this checkout's code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYBRIDGE_")}
    env.update({
        "PYTHONPATH": str(stack.REPO_DIR),
        "KEYBRIDGE_DATABASE_URL": settings.database_url,
        "KEYBRIDGE_WEBHOOK_SECRETS": " ".join(settings.webhook_secrets),
        "KEYBRIDGE_KEYCLOAK_URL": settings.keycloak_url,
        "KEYBRIDGE_KEYCLOAK_REALM": settings.keycloak_realm,
        "KEYBRIDGE_KEYCLOAK_CLIENT_ID": settings.keycloak_client_id,
        "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET": settings.keycloak_client_secret,
        "KEYBRIDGE_CRM_EVENTS_URL": settings.crm_events_url,
        "KEYBRIDGE_CRM_EVENTS_SECRET": settings.crm_events_secret,
        "KEYBRIDGE_EVENTS_START": "now",
    })
    return env


def start_worker(env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from adapter.cli import main; main()", "worker"],
                            cwd=stack.REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)


def batch_state(kb, batch_id: str) -> tuple[int, bool]:
    """(items settled, batch completed)."""
    status = _batch_status(kb, batch_id)
    return (status["done"], status["status"] == "completed") if status else (0, False)


def _batch_status(kb, batch_id):
    return batches.batch_status(kb, batch_id, limit=0)


def test_a_worker_killed_again_and_again_during_a_batch_sends_every_invitation_exactly_once(
        keycloak, mail_dir, kc_admin, crm, pg_url, unique):
    settings = Settings.from_env(
        {}, database_url=pg_url, webhook_secrets=[SECRET], keycloak_url=keycloak.url, keycloak_realm=keycloak.realm,
        keycloak_client_id=keycloak.client_id, keycloak_client_secret=keycloak.client_secret,
        crm_events_url=crm.url, crm_events_secret=CRM_SECRET, events_start="now", portal_enabled=False, dashboard_enabled=False)
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    client, kb = app.test_client(), app.extensions["keybridge"]
    account_id, domain, batch_id = f"ACC-{unique}", f"faults-{unique}.example", f"BATCH-{unique}"
    emails = [f"p{i}.{unique}@{domain}" for i in range(BATCH_SIZE)]
    # Small chunks, one at a time: the batch is fast enough to finish between two kills on a quiet machine
    # otherwise, and a kill then lands inside a chunk (some of its invitations sent, none settled) more often.
    env = {**worker_env(settings), "KEYBRIDGE_BATCH_CHUNK_SIZE": "5", "KEYBRIDGE_WORKER_THREADS": "1",
           "KEYBRIDGE_KEYCLOAK_CONCURRENCY": "1"}
    log_path = stack.TEST_DIR / f"faults-worker-{unique}.log"
    log = open(log_path, "ab")
    worker = start_worker(env, log)
    try:
        assert signed_post(client, envelope("account.upserted", {"account_id": account_id, "name": f"Faults {unique}",
                                                                 "contract": {"status": "active"}})).status_code == 202
        _wait(lambda: kc_admin.organization_of(account_id), 60, "the account's organization")
        items = [{"kind": "contact", "contact_id": f"CON-{unique}-{i}", "email": email, "account_id": account_id}
                 for i, email in enumerate(emails)]
        assert signed_post(client, envelope("invitations.batch_requested",
                                            {"batch_id": batch_id, "items": items})).status_code == 202

        progress_at_kills = []
        for share in KILL_AT:
            # In the middle of the work, spread over the batch whatever the machine's speed: once the
            # (restarted) worker has settled this share of the items, a moment later.
            _wait(lambda: batch_state(kb, batch_id)[0] >= share * BATCH_SIZE, 180,
                  f"{share:.0%} of the batch (progress at the kills: {progress_at_kills})")
            time.sleep(random.uniform(0, 0.3))
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            progress_at_kills.append(batch_state(kb, batch_id))
            worker = start_worker(env, log)
        last_restart = time.monotonic()
        assert not progress_at_kills[-1][1], f"the batch finished before the last kill: {progress_at_kills}; kill sooner"

        _wait(lambda: batch_state(kb, batch_id)[1], 60, f"the batch to complete (progress at the kills: {progress_at_kills})")
        completed_after = time.monotonic() - last_restart
        assert completed_after < 60

        status = _batch_status(kb, batch_id)
        assert status["counts"] == {"sent": BATCH_SIZE}, status["counts"]
        with kb.db.session() as s:
            dead = s.scalars(select(Job).where(Job.status == "dead")).all()
        assert dead == []

        def ours():
            return Counter(address.lower() for mail in stack.read_mails(mail_dir) for address in mail.to
                           if address.lower().endswith("@" + domain))

        received = _wait(lambda: (c := ours()) and sum(c.values()) >= BATCH_SIZE and c, 30, "every invitation email")
        time.sleep(1)  # a second email, if any, would be in flight now
        received = ours()
        assert set(received) == set(emails)
        assert [address for address, n in received.items() if n != 1] == []
        print(f"\nbatch of {BATCH_SIZE} with {len(KILL_AT)} SIGKILLs: completed {completed_after:.1f}s after the last restart; "
              f"progress at the kills {[done for done, _ in progress_at_kills]}")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        kb.db.dispose()


# -- the outbox shared by two workers on PostgreSQL --------------------------------------

class HeldCrm:
    """A CRM endpoint that keeps the request of an event in `hold` open until `release` is set."""

    def __init__(self):
        self.received: list[tuple[str, str]] = []  # (webhook-id, contact_id)
        self.hold: set[str] = set()
        self.holding = threading.Event()
        self.release = threading.Event()
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                webhook_id = self.headers["webhook-id"]
                if webhook_id in crm.hold:
                    crm.holding.set()
                    crm.release.wait(30)
                crm.received.append((webhook_id, body["data"].get("contact_id")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_two_workers_share_the_outbox_without_locks_held_across_crm_calls_and_keep_each_records_order(pg_url):
    crm = HeldCrm()
    settings = Settings.from_env({}, database_url=pg_url, crm_events_url=crm.url, crm_events_secret=CRM_SECRET)
    kb = Keybridge(settings)
    try:
        with kb.db.session() as s:
            for contact_id, event_type in (("C-1", "invitation.sent"), ("C-1", "invitation.accepted"),
                                           ("C-2", "invitation.sent")):
                outbox.record(s, event_type, {"contact_id": contact_id, "email": f"{contact_id}@acme.example"},
                              f"{event_type}:{contact_id}")
        with kb.db.session() as s:
            c1_sent, c1_accepted, c2_sent = s.scalars(select(OutboxEvent.id).order_by(OutboxEvent.seq)).all()
        crm.hold.add(c1_sent)

        first = threading.Thread(target=outbox.deliver_due,
                                 args=(kb.db, GenericWebhookConnector(crm.url, CRM_SECRET), settings), kwargs={"limit": 1})
        first.start()
        assert crm.holding.wait(15), "the first worker never called the CRM"

        # While C-1's first event is on the wire: its row is not locked...
        with psycopg.connect(stack._libpq_url(pg_url), autocommit=False) as connection:
            connection.execute("SET lock_timeout = '1s'")
            connection.execute("SELECT seq FROM outbox_events WHERE id = %s FOR UPDATE NOWAIT", (c1_sent,))
            connection.rollback()
        # ...and a second worker sends C-2's event, but not C-1's next one.
        counts = outbox.deliver_due(kb.db, GenericWebhookConnector(crm.url, CRM_SECRET), settings)
        assert counts["delivered"] == 1 and crm.received == [(c2_sent, "C-2")]

        crm.release.set()
        first.join(30)
        outbox.deliver_due(kb.db, GenericWebhookConnector(crm.url, CRM_SECRET), settings)
        assert crm.received == [(c2_sent, "C-2"), (c1_sent, "C-1"), (c1_accepted, "C-1")]
        with kb.db.session() as s:
            assert [(e.status, e.attempts) for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))] == \
                [("delivered", 1)] * 3
    finally:
        crm.close()
        kb.db.dispose()


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
