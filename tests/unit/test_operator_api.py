"""The operator endpoints: health, the OpenAPI document, and the dead letters behind a bearer token."""
from __future__ import annotations

from dataclasses import replace

import pytest

from adapter import create_app
from adapter.models import Job, OutboxEvent
from tests.conftest import envelope, signed_post

AUTH = {"Authorization": "Bearer op-token"}


@pytest.fixture
def dead(kb):
    """One dead job and one dead outbound event, as the worker leaves them."""
    with kb.db.session() as s:
        job = Job(kind="inbound_event", ref="msg_1", status="dead", attempts=3, last_error="PermanentError: refused")
        event = OutboxEvent(id="evt_dead", type="invitation.sent", data={"contact_id": "C-1"}, dedupe_key="k",
                            status="dead", attempts=7, last_error="CRM refused (400)")
        s.add_all([job, event])
        s.flush()
        return {"job": str(job.id), "outbound": "evt_dead"}


def status_of(kb, kind, item_id):
    with kb.db.session() as s:
        if kind == "job":
            return s.get(Job, int(item_id)).status
        return s.query(OutboxEvent).filter_by(id=item_id).one().status


def test_healthz_answers_ok_without_a_token(client):
    r = client.get("/healthz")
    assert (r.status_code, r.json) == (200, {"status": "ok"})


def test_the_openapi_document_describes_the_crm_webhook(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json
    assert doc["openapi"].startswith("3.")
    post = doc["paths"]["/webhooks/crm"]["post"]
    assert {p["name"] for p in post["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    schemas = doc["components"]["schemas"]
    envelopes = [schemas[v["$ref"].rsplit("/", 1)[1]] for v in post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]]
    types = {v["properties"]["type"]["enum"][0] for v in envelopes if "enum" in v["properties"]["type"]}
    assert {"account.upserted", "contact.invite_requested", "lead.invite_requested"} <= types
    assert {"202", "200", "400", "401", "413", "422"} <= set(post["responses"])
    assert "/api/dead-letters" in doc["paths"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "op-token-but-longer"}, {"Authorization": "Basic op-token:x"}])
def test_the_dead_letters_need_the_operator_token(client, headers):
    r = client.get("/api/dead-letters", headers=headers)
    assert r.status_code == 401
    assert set(r.json) == {"code", "status", "message", "errors"} and "Bearer" in r.json["message"]


def test_without_an_operator_token_configured_the_api_is_off(settings):
    app = create_app({"KEYBRIDGE_SETTINGS": replace(settings, operator_token=""), "TESTING": True})
    r = app.test_client().get("/api/dead-letters", headers={"Authorization": "Bearer "})
    assert r.status_code == 403 and "KEYBRIDGE_OPERATOR_TOKEN" in r.json["message"]
    app.extensions["keybridge"].db.dispose()


def test_the_dead_letters_are_listed(client, dead):
    r = client.get("/api/dead-letters", headers=AUTH)
    assert r.status_code == 200
    listed = {(d["kind"], d["id"]): d for d in r.json["dead_letters"]}
    assert set(listed) == {("job", dead["job"]), ("outbound", "evt_dead")}
    assert listed[("job", dead["job"])]["what"] == "inbound_event msg_1" and listed[("job", dead["job"])]["attempts"] == 3
    assert listed[("outbound", "evt_dead")]["error"] == "CRM refused (400)"


def test_an_empty_dead_letter_list(client):
    assert client.get("/api/dead-letters", headers=AUTH).json == {"dead_letters": []}


@pytest.mark.parametrize("kind, queued", [("job", "queued"), ("outbound", "pending")])
def test_a_dead_letter_is_replayed(client, kb, dead, kind, queued):
    r = client.post(f"/api/dead-letters/{kind}/{dead[kind]}/replay", headers=AUTH)
    assert (r.status_code, r.json) == (202, {"status": "requeued"})
    assert status_of(kb, kind, dead[kind]) == queued
    assert all(d["kind"] != kind for d in client.get("/api/dead-letters", headers=AUTH).json["dead_letters"])


def test_replaying_something_that_is_not_dead_is_a_conflict(client, kb, dead):
    client.post(f"/api/dead-letters/job/{dead['job']}/replay", headers=AUTH)
    r = client.post(f"/api/dead-letters/job/{dead['job']}/replay", headers=AUTH)
    assert r.status_code == 409 and "not dead" in r.json["message"]


def test_replaying_an_unknown_dead_letter_is_not_found(client, dead):
    assert client.post("/api/dead-letters/job/999/replay", headers=AUTH).status_code == 404
    assert client.post("/api/dead-letters/outbound/evt_nope/replay", headers=AUTH).status_code == 404


def test_replaying_an_unknown_kind_is_a_bad_request(client, dead):
    r = client.post("/api/dead-letters/email/1/replay", headers=AUTH)
    assert r.status_code == 400 and "kind" in r.json["errors"]


def test_the_replay_endpoint_needs_the_token_too(client, kb, dead):
    assert client.post(f"/api/dead-letters/job/{dead['job']}/replay").status_code == 401
    assert status_of(kb, "job", dead["job"]) == "dead"


def test_the_webhook_endpoint_does_not_need_the_operator_token(client):
    r = signed_post(client, envelope("lead.invite_requested", {"lead_id": "L-1", "email": "l@corp.example"}))
    assert r.status_code == 202
