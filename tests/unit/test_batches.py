"""invitations.batch_requested: each item as its single form, progress readable, one completion event."""
from __future__ import annotations

import pytest

from adapter.worker import Worker
from adapter.runtime import Keybridge
from tests.conftest import envelope, signed_post
from tests.unit.fakes import all_jobs, drain, invitation_row, make_everything_due, outbox_events
from tests.unit.test_jobs import crash

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


# -- contacts in chunks ----------------------------------------------------------------------------

def contacts(n: int, account: str = "A-1", domain: str = "acme.example", start: int = 0) -> list[dict]:
    return [{"kind": "contact", "contact_id": f"C-{i}", "email": f"p{i}@{domain}", "account_id": account}
            for i in range(start, start + n)]


def test_chunks_keep_to_one_account_and_put_a_repeated_contact_or_address_with_its_first_item():
    from adapter.handlers.batches import plan_chunks

    items = contacts(5) + contacts(2, "A-2", "beta.example", 100) + [{"kind": "lead", "lead_id": "L-1", "email": "l@x.example"}]
    items.append({"kind": "contact", "contact_id": "C-0", "email": "other@acme.example", "account_id": "A-1"})  # contact again
    items.append({"kind": "contact", "contact_id": "C-77", "email": "P1@acme.example", "account_id": "A-1"})  # address again
    items.append({"kind": "contact", "contact_id": "C-78", "email": "p100@beta.example", "account_id": "A-1"})  # not A-2's

    assert plan_chunks(items, 2) == [[0, 1, 8, 9], [2, 3], [4, 10], [5, 6]]
    assert plan_chunks(items, 25) == [[0, 1, 2, 3, 4, 8, 9, 10], [5, 6]]


def test_a_chunk_asks_keycloak_for_its_organization_once_and_makes_one_invite_per_contact(client, worker, keycloak):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    worker.kb.settings.batch_chunk_size = 25
    before = len(keycloak.calls)
    assert signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-9", "items": contacts(60)})).status_code == 202
    drain(worker)

    made = [name for name, _, _ in keycloak.calls[before:]]
    assert made.count("find_organization") == 3  # chunks of 25, 25 and 10
    assert made.count("invite_to_organization") == 60
    # Keycloak's ids (registrations are matched by them): read in pages for many at once, not asked one by one
    assert made.count("organization_invitations_page") == 2  # the first chunk's read, and the completed batch's
    assert {"find_user_by_email", "is_member", "invite_new_member", "organization_invitations"} & set(made) == set()
    assert sorted(m["to"] for m in keycloak.emails) == sorted(f"p{i}@acme.example" for i in range(60))
    for i in (0, 59):
        row = invitation_row(worker.kb, "contact", f"C-{i}")
        pending = keycloak.organization_invitations(row.organization_id, f"p{i}@acme.example")
        assert (row.status, row.sent_count, row.keycloak_invitation_id) == ("sent", 1, pending[0]["id"])
        assert row.details["first_name"] is None and row.account_id == "A-1"
    sent = outbox_events(worker.kb, "invitation.sent")
    assert sorted(e.data["contact_id"] for e in sent) == sorted(f"C-{i}" for i in range(60))
    assert [e.data["counts"] for e in outbox_events(worker.kb, "invitation.batch_completed")] == [{"sent": 60}]
    assert {j.status for j in all_jobs(worker.kb, "batch_chunk")} == {"done"}


def test_a_chunk_whose_worker_died_between_sending_and_bookkeeping_mails_nobody_twice(client, worker, keycloak, monkeypatch):
    from adapter import jobs, outbox
    from adapter.handlers import TASKS

    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-3", "items": contacts(10)}))
    worker.batch = 1
    worker.run_jobs()  # the batch: one chunk queued
    with worker.kb.db.session() as s:
        job = jobs.claim(s)
    assert job.kind == "batch_chunk"

    def killed(*args, **kwargs):
        raise SystemExit("the worker was killed after Keycloak sent the invitations")

    monkeypatch.setattr(outbox, "record_many", killed)  # the bookkeeping after the invitations went out
    with pytest.raises(SystemExit):
        TASKS.run(worker.kb, job)
    monkeypatch.undo()
    assert len(keycloak.emails) == 10 and invitation_row(worker.kb, "contact", "C-3").status == "sending"
    crash(worker.kb, job.id)  # its lease runs out: another run takes it
    worker.batch = 50
    drain(worker)

    assert sorted(m["to"] for m in keycloak.emails) == sorted(f"p{i}@acme.example" for i in range(10))
    status = client.get("/api/batches/B-3", headers=AUTH).json
    assert status["status"] == "completed" and status["counts"] == {"sent": 10}
    assert sorted(e.data["contact_id"] for e in outbox_events(worker.kb, "invitation.sent")) == sorted(f"C-{i}" for i in range(10))
    assert {invitation_row(worker.kb, "contact", f"C-{i}").keycloak_invitation_id for i in range(10)} - {None} \
        == {i["id"] for i in keycloak.invitations.values()}


def test_a_chunk_hands_what_is_not_a_plain_new_invitation_to_the_single_path(client, worker, keycloak):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    org_id = keycloak.find_organization("A-1")["id"]
    member_id = keycloak.create_user({"username": "mem@acme.example", "email": "mem@acme.example", "enabled": True})
    keycloak.add_member(org_id, member_id)
    keycloak.create_user({"username": "old@acme.example", "email": "old@acme.example", "enabled": True, "firstName": "Old"})
    keycloak.invite_to_organization(org_id, "asked@acme.example", None, None)  # by an org admin, before the batch
    keycloak.emails.clear()
    items = [
        {"kind": "contact", "contact_id": "C-mem", "email": "mem@acme.example", "account_id": "A-1"},
        {"kind": "contact", "contact_id": "C-old", "email": "old@acme.example", "account_id": "A-1"},
        {"kind": "contact", "contact_id": "C-asked", "email": "asked@acme.example", "account_id": "A-1"},
        {"kind": "contact", "contact_id": "C-new", "email": "new@acme.example", "account_id": "A-1"},
        {"kind": "contact", "contact_id": "C-twin", "email": "NEW@acme.example", "account_id": "A-1"},
        {"kind": "lead", "lead_id": "L-1", "email": "lee@corp.example"},
    ]
    signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-4", "items": items}))
    drain(worker)

    by_id = {i["id"]: i["outcome"] for i in client.get("/api/batches/B-4", headers=AUTH).json["items"]}
    assert by_id == {"C-mem": "already_member", "C-old": "sent", "C-asked": "pending", "C-new": "sent", "C-twin": "pending",
                     "L-1": "sent"}
    assert sorted((m["kind"], m["to"]) for m in keycloak.emails) == [
        ("actions", "lee@corp.example"), ("org_invite", "new@acme.example"), ("org_invite_existing", "old@acme.example")]
    assert invitation_row(worker.kb, "contact", "C-mem").status == "accepted"
    assert invitation_row(worker.kb, "contact", "C-asked").status == "sent"  # the CRM hears it was sent (by someone)
    assert keycloak.users[member_id]["attributes"]["crm_contact_id"] == ["C-mem"]


def test_a_contact_who_left_after_the_batch_was_made_is_refused_not_invited(client, worker, keycloak):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    left = {**envelope("contact.upserted", {"contact_id": "C-1", "email": "p1@acme.example", "account_id": "A-1", "status": "left"}),
            "timestamp": "2030-01-01T00:00:00Z"}
    assert signed_post(client, left).status_code == 202
    drain(worker)
    body = {**envelope("invitations.batch_requested", {"batch_id": "B-5", "items": contacts(3)}), "timestamp": "2029-01-01T00:00:00Z"}
    signed_post(client, body)
    drain(worker)

    by_id = {i["id"]: i["outcome"] for i in client.get("/api/batches/B-5", headers=AUTH).json["items"]}
    assert by_id == {"C-0": "sent", "C-1": "refused", "C-2": "sent"}
    assert sorted(m["to"] for m in keycloak.emails) == ["p0@acme.example", "p2@acme.example"]


def test_a_chunk_waiting_for_keycloak_settles_what_it_sent_and_sends_the_rest_later(client, worker, keycloak):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-6", "items": contacts(6)}))
    keycloak.fail_next("invite_to_organization", times=2)
    drain(worker)
    status = client.get("/api/batches/B-6", headers=AUTH).json
    assert status["status"] == "running" and status["counts"] == {"sent": 4, "waiting": 2}

    make_everything_due(worker.kb)
    drain(worker)
    status = client.get("/api/batches/B-6", headers=AUTH).json
    assert status["status"] == "completed" and status["counts"] == {"sent": 6}
    assert sorted(m["to"] for m in keycloak.emails) == sorted(f"p{i}@acme.example" for i in range(6))
    assert len(outbox_events(worker.kb, "invitation.sent")) == 6


def test_the_ids_of_a_completed_batchs_invitations_are_read_later_when_keycloak_cannot_list_them_then(client, worker, keycloak):
    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    keycloak.fail_next("organization_invitations_page", times=2)  # during the batch, and when it completes
    signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-7", "items": contacts(3)}))
    drain(worker)  # the batch completes; a job reads the ids (the third read)
    assert client.get("/api/batches/B-7", headers=AUTH).json["status"] == "completed"

    org_id = keycloak.find_organization("A-1")["id"]
    for i in range(3):
        row = invitation_row(worker.kb, "contact", f"C-{i}")
        assert row.keycloak_invitation_id == keycloak.organization_invitations(org_id, f"p{i}@acme.example")[0]["id"]
    assert [(j.status, j.attempts) for j in all_jobs(worker.kb, "invitation_ids")] == [("done", 1)]
    assert len(keycloak.calls_to("organization_invitations_page")) == 3


def test_a_registration_through_a_batch_invitation_completes_it(client, worker, keycloak):
    from adapter.handlers import registrations

    signed_post(client, envelope("account.upserted", ACCOUNT))
    drain(worker)
    signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-8", "items": contacts(2)}))
    drain(worker)
    org_id = keycloak.find_organization("A-1")["id"]
    (invitation,) = keycloak.organization_invitations(org_id, "p1@acme.example")
    user_id = keycloak.create_user({"username": "p1@acme.example", "email": "p1@acme.example", "enabled": True})
    keycloak.add_member(org_id, user_id)  # Keycloak did this when they registered through the link

    outcome = registrations.handle_keycloak_event(worker.kb, {"type": "REGISTER", "userId": user_id, "time": 1,
                                                             "details": {"token_id": invitation["id"]}})
    assert outcome == "registration_queued"  # settled in the contact's order
    drain(worker)

    assert invitation_row(worker.kb, "contact", "C-1").status == "accepted"
    assert keycloak.users[user_id]["attributes"]["crm_contact_id"] == ["C-1"]
