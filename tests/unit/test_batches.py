"""invitations.batch_requested: each item as its single form, progress readable, one completion event."""
from __future__ import annotations

import pytest

from adapter.worker import Worker
from adapter.runtime import Keybridge
from tests.conftest import envelope, signed_post
from tests.unit.fakes import drain, outbox_events

ACCOUNT = {"account_id": "A-1", "name": "Acme", "contract": {"status": "active"}}
AUTH = {"Authorization": "Bearer op-token"}


@pytest.fixture
def worker(settings, keycloak):
    kb = Keybridge(settings, keycloak=keycloak)
    yield Worker(kb)
    kb.db.dispose()


def items(n_contacts: int):
    out = [{"kind": "contact", "contact_id": f"C-{i}", "email": f"p{i}@acme.example", "account_id": "A-1"} for i in range(n_contacts)]
    out.append({"kind": "lead", "lead_id": "L-1", "email": "lee@corp.example"})
    out.append({"kind": "lead", "lead_id": "L-2", "email": "someone@gmail.com"})
    out.append({"kind": "contact", "contact_id": "C-x", "email": "x@nowhere.example", "account_id": "A-unknown"})
    return out


def test_batch_sends_each_invitation_once_and_reports_progress(client, worker, keycloak):
    assert signed_post(client, envelope("account.upserted", ACCOUNT)).status_code == 202
    drain(worker)
    worker.kb.settings.job_retry_window_seconds = 0  # the unknown account fails at once instead of waiting a day
    assert signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-1", "items": items(5)})).status_code == 202

    worker.batch = 1
    worker.run_jobs()  # the batch job itself: items are queued, none done yet
    early = client.get("/api/batches/B-1", headers=AUTH).json
    assert early["total"] == 8 and early["status"] == "running" and early["done"] == 0
    worker.batch = 50

    drain(worker)
    status = client.get("/api/batches/B-1", headers=AUTH).json
    assert status["status"] == "completed" and status["done"] == 8 and status["progress"] == 1.0
    assert status["counts"] == {"sent": 6, "skipped": 1, "failed": 1}
    by_id = {i["id"]: i for i in status["items"]}
    assert by_id["L-2"]["outcome"] == "skipped"
    assert by_id["C-x"]["outcome"] == "failed" and "A-unknown" in by_id["C-x"]["error"]
    assert len(keycloak.emails) == 6

    completed = outbox_events(worker.kb, "invitation.batch_completed")
    assert [e.data for e in completed] == [{"batch_id": "B-1", "counts": {"sent": 6, "skipped": 1, "failed": 1}}]


def test_the_same_batch_again_sends_nothing_new(client, worker, keycloak):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    body = envelope("invitations.batch_requested", {"batch_id": "B-2", "items": items(3)[:3]})
    signed_post(client, body)
    drain(worker)
    signed_post(client, body)  # a new webhook-id, the same batch_id
    drain(worker)
    assert len(keycloak.emails) == 3
    assert len(outbox_events(worker.kb, "invitation.batch_completed")) == 1


def test_unknown_batch_is_404(client):
    r = client.get("/api/batches/nope", headers=AUTH)
    assert r.status_code == 404 and "nope" in r.json["message"]
