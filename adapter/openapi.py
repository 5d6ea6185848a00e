"""The OpenAPI document the adapter serves at /openapi.json, built from the marshmallow schemas."""
from __future__ import annotations

from marshmallow import fields

from .handlers import TASKS

_TYPES = {fields.Str: "string", fields.Email: "string", fields.Url: "string", fields.Bool: "boolean", fields.Int: "integer",
          fields.AwareDateTime: "string", fields.List: "array", fields.Dict: "object", fields.Nested: "object"}


def _schema(schema_cls) -> dict:
    schema = schema_cls()
    props, required = {}, []
    for name, field in schema.fields.items():
        kind = next((t for cls, t in _TYPES.items() if isinstance(field, cls)), "string")
        prop: dict = {"type": kind}
        if isinstance(field, fields.Nested):
            prop = _schema(type(field.schema))
        if isinstance(field, fields.Email):
            prop["format"] = "email"
        if isinstance(field, fields.AwareDateTime):
            prop["format"] = "date-time"
        props[name] = prop
        if field.required:
            required.append(name)
    out = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def openapi_document() -> dict:
    error = {"type": "object", "required": ["code", "status", "message", "errors"], "properties": {
        "code": {"type": "integer"}, "status": {"type": "string"}, "message": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}}}
    envelopes = []
    for event_type, schema_cls in TASKS.schemas().items():
        envelopes.append({"type": "object", "required": ["type", "timestamp", "data"], "properties": {
            "type": {"type": "string", "enum": [event_type]}, "timestamp": {"type": "string", "format": "date-time"},
            "data": _schema(schema_cls)}})
    signed = [{"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
              for h in ("webhook-id", "webhook-timestamp", "webhook-signature")]
    status = lambda s: {"content": {"application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string", "enum": [s]}}}}}}  # noqa: E731
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Keybridge adapter", "version": "1", "description": "CRM webhooks in (Standard Webhooks signed), identity events out. See README."},
        "paths": {
            "/webhooks/crm": {"post": {
                "summary": "Receive a signed CRM event", "parameters": signed,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": envelopes}}}},
                "responses": {"202": {"description": "stored durably", **status("accepted")},
                              "200": {"description": "duplicate webhook-id or unknown type", **status("duplicate")},
                              "400": {"description": "malformed JSON", **err}, "401": {"description": "missing, wrong or stale signature", **err},
                              "413": {"description": "body over the limit", **err}, "422": {"description": "schema errors", **err}}}},
            "/healthz": {"get": {"responses": {"200": {"description": "storage reachable"}}}},
            "/api/dead-letters": {"get": {"summary": "List dead letters", "responses": {"200": {"description": "jobs and outbound events that kept failing"}}}},
            "/api/dead-letters/{kind}/{id}/replay": {"post": {"summary": "Replay one dead letter", "parameters": [
                {"name": "kind", "in": "path", "required": True, "schema": {"type": "string", "enum": ["job", "outbound"]}},
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"202": {"description": "requeued"}, "404": {"description": "unknown", **err}, "409": {"description": "not dead", **err}}}},
        },
        "components": {"schemas": {"Error": error}},
    }
