"""The served API document: complete, and in agreement with the marshmallow schemas it is generated from."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator, validators
from marshmallow import ValidationError
from schemathesis import GenerationMode

from adapter.events import OUTBOUND_SCHEMAS, EnvelopeSchema, RegistrationDecidedSchema
from adapter.handlers import TASKS
from adapter.openapi import openapi_document

DOC = openapi_document()
INBOUND_SCHEMAS = TASKS.schemas()


def _ecma_pattern(validator, pattern, instance, schema):
    """`pattern` as JSON Schema means it (ECMA-262): `$` is the end of the value, not also before a final newline."""
    if isinstance(instance, str):
        python = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        if not re.search(python, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def validator_for(schema: dict) -> Draft202012Validator:
    return Validator({**schema, "components": DOC["components"]}, format_checker=Draft202012Validator.FORMAT_CHECKER)


WEBHOOK_BODY = DOC["paths"]["/webhooks/crm"]["post"]["requestBody"]["content"]["application/json"]["schema"]
DECISION_BODY = DOC["paths"]["/api/registrations/{user_id}/decision"]["post"]["requestBody"]["content"]["application/json"]["schema"]
OPERATIONS = schemathesis.openapi.from_dict(DOC)


def marshmallow_accepts_webhook(body) -> bool:
    """What POST /webhooks/crm loads: the envelope, then `data` with its type's schema (unknown types pass: ignored)."""
    if not isinstance(body, dict):
        return False
    try:
        EnvelopeSchema().load(body)
        schema = INBOUND_SCHEMAS.get(body["type"])
        if schema is not None:
            schema().load(body["data"])
    except ValidationError:
        return False
    return True


def marshmallow_accepts_decision(body) -> bool:
    if not isinstance(body, dict) or "user_id" in body:
        return False
    try:
        RegistrationDecidedSchema().load({**body, "user_id": "path-user"})
    except ValidationError:
        return False
    return True


AGREE = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_document_and_the_schemas_agree_on_generated_webhook_bodies(mode):
    validator = validator_for(WEBHOOK_BODY)
    disagreements = []

    @AGREE
    @given(OPERATIONS["/webhooks/crm"]["POST"].as_strategy(generation_mode=mode))
    def compare(case):
        document, schemas = validator.is_valid(case.body), marshmallow_accepts_webhook(case.body)
        if document != schemas:
            disagreements.append((document, schemas, json.dumps(case.body, default=str)[:400]))

    compare()
    assert not disagreements, f"{len(disagreements)} bodies judged differently (document, marshmallow, body): {disagreements[:5]}"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_document_and_the_schema_agree_on_generated_registration_decisions(mode):
    validator = validator_for(DECISION_BODY)
    disagreements = []

    @AGREE
    @given(OPERATIONS["/api/registrations/{user_id}/decision"]["POST"].as_strategy(generation_mode=mode))
    def compare(case):
        document, schemas = validator.is_valid(case.body), marshmallow_accepts_decision(case.body)
        if document != schemas:
            disagreements.append((document, schemas, json.dumps(case.body, default=str)[:400]))

    compare()
    assert not disagreements, f"{len(disagreements)} bodies judged differently (document, marshmallow, body): {disagreements[:5]}"


PROBES = [  # the shapes where a hand-written document and marshmallow used to part ways
    {"type": "contact.invite_requested", "timestamp": "2026-11-22T10:00:00Z", "data": {"contact_id": "C-1", "email": "a@b.example", "account_id": "A"}},
    {"type": "contact.invite_requested", "timestamp": "2026-11-22T10:00:00Z", "data": {"contact_id": "C-1", "email": "a@b.example", "account_id": "A", "expires_in_days": "7"}},
    {"type": "contact.invite_requested", "timestamp": "2026-11-22T10:00:00Z", "data": {"contact_id": "C-1", "email": "a@b.example", "account_id": "A", "org_admin": "yes"}},
    {"type": "contact.invite_requested", "timestamp": "2026-11-22T10:00:00Z", "data": {"contact_id": "C-1", "email": "a@b.example", "account_id": "A", "redirect_uri": "nope"}},
    {"type": "contact.invite_requested", "timestamp": "2026-11-22T10:00:00", "data": {"contact_id": "C-1", "email": "a@b.example", "account_id": "A"}},
    {"type": "contact.invite_requested", "timestamp": "20261122T100000Z", "data": {"contact_id": "C-1", "email": "a@b.example", "account_id": "A"}},
    {"type": "contact.invite_requested", "timestamp": "2026-02-30T10:00:00Z", "data": {"contact_id": "C-1", "email": "a@b.example", "account_id": "A"}},
    {"type": "account.upserted", "timestamp": "2026-11-22T10:00:00Z", "data": {"account_id": "A", "name": "Acme", "domains": ["acme.example\n"]}},
    {"type": "account.upserted", "timestamp": "2026-11-22T10:00:00Z", "data": {"account_id": "A", "name": "Acme", "contract": {"status": "active", "ends_at": None}}},
    {"type": "invitations.batch_requested", "timestamp": "2026-11-22T10:00:00Z", "data": {"batch_id": "B", "items": [{"kind": "lead", "lead_id": "L", "email": "l@x.example"}]}},
    {"type": "invitations.batch_requested", "timestamp": "2026-11-22T10:00:00Z", "data": {"batch_id": "B", "items": [{"kind": "lead", "contact_id": "C", "email": "l@x.example"}]}},
    {"type": "invitations.batch_requested", "timestamp": "2026-11-22T10:00:00Z", "data": {"batch_id": "B", "items": []}},
    {"type": "registration.decided", "timestamp": "2026-11-22T10:00:00Z", "data": {"decision": "approved"}},
    {"type": "registration.decided", "timestamp": "2026-11-22T10:00:00Z", "data": {"decision": "approved", "user_id": ""}},
    {"type": "registration.decided", "timestamp": "2026-11-22T10:00:00Z", "data": {"decision": "approved", "email": "x@y.example"}},
    {"type": "deal.closed", "timestamp": "2026-11-22T10:00:00Z", "data": {"anything": 1}},
    {"type": "deal.closed", "timestamp": "2026-11-22T10:00:00Z", "data": {}, "extra": 1},
]


@pytest.mark.parametrize("body", PROBES, ids=range(len(PROBES)))
def test_the_document_and_the_schemas_agree_on_the_probe_payloads(body):
    assert validator_for(WEBHOOK_BODY).is_valid(body) == marshmallow_accepts_webhook(body)


def test_every_route_of_the_app_is_documented(app):
    def openapi_path(rule: str) -> str:
        return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule).replace("{item_id}", "{id}")

    routes = {(openapi_path(r.rule), m.lower()) for r in app.url_map.iter_rules() if r.endpoint != "static"
              for m in r.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, item in DOC["paths"].items() for method in item}
    assert routes - documented == set(), "routes missing from adapter/openapi.py"
    assert documented - routes == set(), "documented operations the app does not have"


def test_the_operator_api_needs_the_bearer_token_and_errors_share_one_body():
    assert DOC["components"]["securitySchemes"]["operatorToken"] == {
        "type": "http", "scheme": "bearer", "description": "Authorization: Bearer $KEYBRIDGE_OPERATOR_TOKEN"}
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if path.startswith("/api/"):
                assert op["security"] == [{"operatorToken": []}], path
                assert {"401", "403"} <= set(op["responses"]), path
            for code, response in op["responses"].items():
                if code.startswith(("4", "5")) and "application/json" in response.get("content", {}):
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (path, code)
    assert set(DOC["components"]["schemas"]["Error"]["required"]) == {"code", "status", "message", "errors"}


def test_query_parameters_come_from_the_query_schemas():
    params = {p["name"]: p for p in DOC["paths"]["/api/audit"]["get"]["parameters"]}
    assert params["limit"]["schema"]["minimum"] == 1 and params["limit"]["schema"]["maximum"] == 1000
    assert {p["name"] for p in DOC["paths"]["/api/batches/{batch_id}"]["get"]["parameters"]} == {"batch_id", "offset", "limit"}


def test_the_outbound_events_are_openapi_webhooks():
    assert DOC["openapi"] == "3.1.0"
    assert set(DOC["webhooks"]) == set(OUTBOUND_SCHEMAS)
    sent = DOC["webhooks"]["invitation.sent"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert sent["properties"]["type"]["enum"] == ["invitation.sent"] and "email" in sent["properties"]["data"]["required"]


def test_the_document_is_a_valid_openapi_3_1_document():
    schemathesis.openapi.from_dict(DOC).validate()


def test_the_docs_page_renders_every_operation_and_event_without_external_assets(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.content_type.startswith("text/html")
    page = r.get_data(as_text=True)
    for path in DOC["paths"]:
        assert f"<code>{path}</code>" in page
    assert "invitation.batch_completed" in page and "operatorToken" in page
    assert "http://" not in page.replace("http://127.0.0.1", "") and "<script" not in page and "<link" not in page
