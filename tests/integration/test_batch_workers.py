"""Batch invitations shared by three worker processes on one PostgreSQL, on the real Keycloak and mail
sink: every address mailed exactly once, every item settled, the batch completed once; and a worker
SIGKILLed in the middle of a batch, whose chunks the others finish without mailing anyone twice."""
from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter

import pytest
from sqlalchemy import select

from adapter import create_app
from adapter.config import Settings
from adapter.models import Invitation, Job, OutboxEvent
from tests.conftest import SECRET, envelope, signed_post
from tests.support import stack

from .conftest import CRM_SECRET
from .test_faults import _batch_status, _wait, batch_state, start_worker, worker_env

pytestmark = pytest.mark.integration

BATCH_SIZE = 500
LEASE_SECONDS = 5  # how long the chunk of a killed worker waits before another worker takes it


@pytest.fixture
def pg_url(postgres_url):
    url = stack.create_database(postgres_url)
    yield url
    stack.drop_database(url)


@pytest.fixture
def setup(keycloak, crm, pg_url, unique, kc_admin, tmp_path):
    settings = Settings.from_env(
        {}, database_url=pg_url, webhook_secrets=[SECRET], keycloak_url=keycloak.url, keycloak_realm=keycloak.realm,
        keycloak_client_id=keycloak.client_id, keycloak_client_secret=keycloak.client_secret,
        crm_events_url=crm.url, crm_events_secret=CRM_SECRET, events_start="now", portal_enabled=False, dashboard_enabled=False)
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    client, kb = app.test_client(), app.extensions["keybridge"]
    env = {**worker_env(settings), "KEYBRIDGE_JOB_LEASE_SECONDS": str(LEASE_SECONDS), "KEYBRIDGE_LOG_LEVEL": "INFO"}
    workers: list[tuple[subprocess.Popen, object]] = []

    def start(n: int):
        for i in range(n):
            path = tmp_path / f"worker-{len(workers)}.log"
            log = open(path, "wb")
            workers.append((start_worker(env, log), path))
            log.close()
        return workers

    account_id = f"ACC-{unique}"
    assert signed_post(client, envelope("account.upserted", {"account_id": account_id, "name": f"Batch {unique}",
                                                             "contract": {"status": "active"}})).status_code == 202
    yield client, kb, start, account_id
    for process, _ in workers:
        if process.poll() is None:
            process.terminate()
    for process, _ in workers:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    kb.db.dispose()


def post_batch(client, account_id: str, unique: str, domain: str) -> tuple[str, list[str]]:
    batch_id = f"BATCH-{unique}"
    emails = [f"p{i}.{unique}@{domain}" for i in range(BATCH_SIZE)]
    items = [{"kind": "contact", "contact_id": f"CON-{unique}-{i}", "email": e, "account_id": account_id, "first_name": "P",
              "last_name": str(i)} for i, e in enumerate(emails)]
    assert signed_post(client, envelope("invitations.batch_requested", {"batch_id": batch_id, "items": items})).status_code == 202
    return batch_id, emails


def mails_to(mail_dir, domain: str) -> Counter:
    return Counter(address.lower() for mail in stack.read_mails(mail_dir) for address in mail.to if address.lower().endswith("@" + domain))


def ids_read(kb, emails: list[str]) -> int:
    """How many of these invitations have Keycloak's id (read in pages, the last read right after the batch completes)."""
    with kb.db.session() as s:
        return len(s.scalars(select(Invitation.id).where(Invitation.email.in_(emails), Invitation.keycloak_invitation_id.is_not(None))).all())


def check_everything_happened_once(kb, mail_dir, batch_id: str, emails: list[str], domain: str) -> None:
    status = _batch_status(kb, batch_id)
    assert status["status"] == "completed" and status["counts"] == {"sent": BATCH_SIZE}, status["counts"]
    with kb.db.session() as s:
        assert s.scalars(select(Job).where(Job.status == "dead")).all() == []
        rows = s.scalars(select(Invitation).where(Invitation.email.in_(emails))).all()
        assert sorted((r.status, r.sent_count) for r in rows) == [("sent", 1)] * BATCH_SIZE
        completed = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "invitation.batch_completed")).all()
        assert [e.data for e in completed] == [{"batch_id": batch_id, "counts": {"sent": BATCH_SIZE}}]
        assert len(s.scalars(select(OutboxEvent.id).where(OutboxEvent.type == "invitation.sent")).all()) == BATCH_SIZE
    _wait(lambda: ids_read(kb, emails) == BATCH_SIZE, 60, "Keycloak's id of every invitation (registrations are matched by it)")
    _wait(lambda: sum(mails_to(mail_dir, domain).values()) >= BATCH_SIZE, 60, "every invitation email")
    time.sleep(1)  # a second email, if any, would be in flight now
    received = mails_to(mail_dir, domain)
    assert set(received) == set(emails)
    assert [address for address, n in received.items() if n != 1] == []


def test_three_workers_on_one_postgresql_mail_each_of_500_invitations_exactly_once(setup, mail_dir, kc_admin, unique):
    client, kb, start, account_id = setup
    workers = start(3)
    _wait(lambda: kc_admin.organization_of(account_id), 60, "the account's organization")
    domain = f"three-{unique}.example"
    batch_id, emails = post_batch(client, account_id, unique, domain)
    started = time.monotonic()

    _wait(lambda: batch_state(kb, batch_id)[1], 300, "the batch to complete")
    took = time.monotonic() - started

    check_everything_happened_once(kb, mail_dir, batch_id, emails, domain)
    logs = [path.read_text() for _, path in workers]
    ran_chunks = [log.count(" batch_chunk/") for log in logs]
    assert all(n > 0 for n in ran_chunks), f"every worker ran some of the batch's chunks: {ran_chunks}"
    # Three workers read Keycloak's (admin) event logs at the same time, each invitation one admin event:
    # none may lose a pass to another's ids (a duplicate key failed whole passes before).
    assert [log.count("worker pass failed") for log in logs] == [0, 0, 0], [l for log in logs for l in log.splitlines() if "Error" in l][:5]
    print(f"\n{BATCH_SIZE} invitations by 3 workers in {took:.1f}s ({BATCH_SIZE / took:.0f}/s); chunks per worker {ran_chunks}")


def test_a_worker_killed_in_the_middle_of_a_batch_leaves_its_chunks_to_the_others_and_nobody_is_mailed_twice(
        setup, mail_dir, kc_admin, unique):
    client, kb, start, account_id = setup
    workers = start(3)
    _wait(lambda: kc_admin.organization_of(account_id), 60, "the account's organization")
    domain = f"killed-{unique}.example"
    batch_id, emails = post_batch(client, account_id, unique, domain)

    _wait(lambda: batch_state(kb, batch_id)[0] >= 0.3 * BATCH_SIZE, 300, "30% of the batch")
    victim, victim_log = workers[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    at_kill = batch_state(kb, batch_id)
    assert not at_kill[1], f"the batch finished before the kill: {at_kill}"
    running = victim_log.read_text().count(" batch_chunk/")  # what it finished; what it held is in its log's last lines

    _wait(lambda: batch_state(kb, batch_id)[1], 300, f"the batch to complete (killed at {at_kill[0]} settled)")

    check_everything_happened_once(kb, mail_dir, batch_id, emails, domain)
    with kb.db.session() as s:
        taken_again = s.scalars(select(Job).where(Job.kind == "batch_chunk", Job.attempts > 1)).all()
    assert taken_again, "the killed worker held no chunk: the test proved nothing; kill it sooner"
    print(f"\nkilled a worker at {at_kill[0]}/{BATCH_SIZE} settled (it had finished {running} chunks); "
          f"{len(taken_again)} chunk(s) run again by the others")
