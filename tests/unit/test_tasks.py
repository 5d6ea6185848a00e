"""The task registry: each kind of work declared once, with its schema, ordering key and retry policy."""
from __future__ import annotations

import pytest

from adapter import tasks
from adapter.handlers import TASKS
from adapter.openapi import openapi_document
from adapter.worker import Worker  # noqa: F401  (the worker registers the admin-event task too)
from tests.conftest import envelope, signed_post
from tests.unit.fakes import all_jobs, drain, make_everything_due

ACME = {"account_id": "A-1", "name": "Acme", "contract": {"status": "active"}}


def test_every_inbound_type_of_the_contract_is_declared_once_with_schema_and_record_order():
    doc = openapi_document()
    envelopes = [doc["components"]["schemas"][e["$ref"].rsplit("/", 1)[1]]
                 for e in doc["paths"]["/webhooks/crm"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]]
    documented = {e["properties"]["type"]["enum"][0] for e in envelopes if "enum" in e["properties"]["type"]}
    assert documented == set(TASKS.crm_events) == {
        "account.upserted", "contact.upserted", "contact.invite_requested", "lead.invite_requested",
        "invitations.batch_requested", "registration.decided", "contact.invite_revoked", "lead.invite_revoked"}
    assert TASKS.event("account.upserted").key_for({"account_id": "A-7"}) == "account:A-7"
    assert TASKS.event("contact.upserted").key_for({"contact_id": "C-7"}) == "contact:C-7"
    assert TASKS.event("contact.invite_requested").key_for({"contact_id": "C-7"}) == "contact:C-7"
    assert TASKS.event("lead.invite_requested").key_for({"lead_id": "L-7"}) == "lead:L-7"
    assert TASKS.event("contact.invite_revoked").key_for({"contact_id": "C-7"}) == "contact:C-7"
    assert TASKS.event("lead.invite_revoked").key_for({"lead_id": "L-7"}) == "lead:L-7"
    assert TASKS.jobs["batch_item"].key_for({"kind": "contact", "contact_id": "C-7"}) == "contact:C-7"
    assert TASKS.jobs["keycloak_event"].key_for({"userId": "u-1"}) == "user:u-1"


def test_declaring_a_kind_twice_with_another_handler_is_refused():
    registry = tasks.Registry()
    registry.job("x")(lambda kb, job: "one")
    with pytest.raises(ValueError, match="declared twice"):
        registry.job("x")(lambda kb, job: "two")


def test_a_stored_crm_event_is_ordered_by_its_record(client, kb, keycloak, worker):
    assert signed_post(client, envelope("account.upserted", ACME)).status_code == 202
    assert signed_post(client, envelope("contact.upserted", {"contact_id": "C-1", "email": "c1@acme.example"})).status_code == 202
    assert [(j.payload, j.ordering_key) for j in all_jobs(kb, "inbound_event")] == [
        ({"type": "account.upserted"}, "account:A-1"), ({"type": "contact.upserted"}, "contact:C-1")]


def test_one_records_events_wait_for_an_earlier_one_that_retries(client, kb, keycloak, worker):
    signed_post(client, envelope("account.upserted", ACME))
    drain(worker)
    user_id = keycloak.add_user("c1@acme.example", crm_contact_id=["C-1"])
    keycloak.fail_for("update_user", user_id)  # the first contact.upserted keeps failing for now
    signed_post(client, envelope("contact.upserted", {"contact_id": "C-1", "email": "c1@acme.example", "first_name": "Old"}))
    signed_post(client, envelope("contact.upserted", {"contact_id": "C-1", "email": "c1@acme.example", "first_name": "New"}))
    drain(worker)
    assert [j.status for j in all_jobs(kb, "inbound_event")][-2:] == ["queued", "queued"], "the second waits for the first"
    keycloak.heal()
    make_everything_due(kb)
    drain(worker)
    assert keycloak.users[user_id]["firstName"] == "New", "the later event is applied last"


def test_a_dead_batch_item_is_settled_by_its_declared_hook(client, kb, keycloak, worker, settings):
    signed_post(client, envelope("account.upserted", ACME))
    drain(worker)
    keycloak.fail_next("find_organization", times=100)
    signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-1", "items": [
        {"kind": "contact", "contact_id": "C-9", "email": "c9@acme.example", "account_id": "A-1"}]}))
    settings.job_retry_window_seconds = 0
    drain(worker)
    from adapter.handlers import batches

    status = batches.batch_status(kb, "B-1")
    assert status["status"] == "completed" and status["items"][0]["outcome"] == "failed"


def test_the_worker_retries_and_gives_up_as_the_task_declares(kb, worker, monkeypatch):
    from adapter import jobs
    from adapter.errors import RetryableError

    dead = []

    def flaky(kb, job):
        raise RetryableError("the CRM is down")

    monkeypatch.setitem(TASKS.jobs, "flaky", tasks.Task("flaky", flaky, retry=tasks.RetryPolicy(window_seconds=0),
                                                       on_dead=lambda kb, job, error: dead.append((job.ref, str(error)))))
    with kb.db.session() as s:
        jobs.enqueue(s, "flaky", "f-1")
    worker.run_jobs()
    (job,) = all_jobs(kb, "flaky")
    assert job.status == "dead", "a zero retry window: dead at the first failure, not after 24 h"
    assert dead == [("f-1", "the CRM is down")]


def test_a_job_of_an_unknown_kind_is_a_dead_letter_that_says_what_to_do(kb, worker):
    from adapter import jobs

    with kb.db.session() as s:
        jobs.enqueue(s, "from_the_future", "x")
    worker.run_jobs()
    (job,) = all_jobs(kb, "from_the_future")
    assert job.status == "dead" and "Upgrade, then replay it" in job.last_error
