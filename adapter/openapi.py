"""The OpenAPI 3.1 document served at /openapi.json, generated with apispec from the marshmallow
schemas the endpoints load: the CRM webhook (one envelope per inbound type), the operator API
(bearer token, query parameters from api.py's *Query schemas), health, the portal's and the dashboard's pages,
the error body, and the outbound identity events as `webhooks`.

tests/unit/test_openapi.py checks that every route of the app is here and that the document
and the marshmallow schemas accept and refuse the same payloads.
"""
from __future__ import annotations

from functools import lru_cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import RAISE, Schema, fields, validate

from . import contract_fields as wire
from .api import AuditQuery, BatchQuery, InvitationsQuery, RegistrationsQuery
from .events import OUTBOUND_SCHEMAS, BatchItemField, ContactInviteSchema, LeadInviteSchema, RegistrationDecidedSchema
from .handlers import TASKS
from .json_body import MAX_DEPTH
from .webhooks.dialects import keys as vendor_keys

DESCRIPTION = f"""\
Keybridge ties customer identity in Keycloak to a CRM. A CRM posts signed events to
`POST /webhooks/crm` ([Standard Webhooks](https://www.standardwebhooks.com/): `webhook-signature`
holds space-separated `v1,<base64 HMAC-SHA256(key, "{{webhook-id}}.{{webhook-timestamp}}.{{body}}")>`
entries, where the key is the base64-decoded part of the `whsec_` secret; one valid entry is
enough). The adapter answers once the event is stored; the worker does the work. Identity
events go back to the CRM signed the same way (see `webhooks`).

Every error body is `{{code, status, message, errors}}`; `errors` maps each field (or header,
or query parameter) to what is wrong with it. JSON bodies nest at most {MAX_DEPTH} levels.
"""


class ErrorSchema(Schema):
    code = fields.Int(required=True, metadata={"description": "the HTTP status code"})
    status = fields.Str(required=True, metadata={"description": "the HTTP status phrase"})
    message = fields.Str(required=True, metadata={"description": "what is wrong and what to do"})
    errors = fields.Dict(required=True, metadata={"description": "field -> messages (nested for nested fields)"})


class StatusSchema(Schema):
    status = fields.Str(required=True, validate=validate.OneOf(["accepted", "duplicate", "ignored", "requeued", "ok"]))
    event_id = fields.Str(metadata={"description": "the stored event (operator decisions)"})


class InvitationSchema(Schema):
    kind = fields.Str(required=True, validate=validate.OneOf(["contact", "lead"]))
    id = fields.Str(required=True, metadata={"description": "the CRM contact or lead id"})
    email = fields.Str(required=True)
    account_id = fields.Str(allow_none=True)
    state = fields.Str(required=True, validate=validate.OneOf(["pending", "accepted", "expired", "revoked", "skipped", "refused"]))
    sent_count = fields.Int(required=True)
    sent_at = fields.Str(allow_none=True, metadata={"format": "date-time"})
    expires_at = fields.Str(allow_none=True, metadata={"format": "date-time", "description": "pending: when the link stops working"})
    reminded_at = fields.Str(allow_none=True, metadata={"format": "date-time", "description": "when the one reminder was decided"})
    accepted_at = fields.Str(allow_none=True, metadata={"format": "date-time"})
    ended_at = fields.Str(allow_none=True, metadata={"format": "date-time", "description": "revoked or expired at"})
    batch_index = fields.Int(metadata={"description": "listed by batch: the item's index"})


class InvitationListSchema(Schema):
    invitations = fields.List(fields.Nested(InvitationSchema), required=True)
    counts = fields.Dict(keys=fields.Str(), values=fields.Int(), required=True, metadata={"description": "invitations per state (all, not only the page)"})
    total = fields.Int(required=True, metadata={"description": "invitations listed (after the state filter)"})
    offset = fields.Int(required=True)


class InvitationAnswerSchema(Schema):
    status = fields.Str(required=True, validate=validate.OneOf(["queued", "already_revoked", "already_expired"]))
    state = fields.Str(required=True, metadata={"description": "the invitation's state when asked"})
    message = fields.Str(required=True)
    job = fields.Str(metadata={"description": "queued: the worker's job"})


class ReadinessSchema(Schema):
    status = fields.Str(required=True, validate=validate.OneOf(["ready"]))
    checks = fields.Dict(keys=fields.Str(), values=fields.Str(), required=True,
                         metadata={"description": "database, keycloak, worker: 'ok'"})


def _component_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.replace(".", "_").split("_"))


def _envelope(event_type: str, data_schema: type[Schema]) -> type[Schema]:
    """The envelope the endpoint loads for `event_type`: EnvelopeSchema with `data` as its schema."""
    return Schema.from_dict({
        "type": fields.Str(required=True, validate=validate.OneOf([event_type])),
        "timestamp": wire.DateTime(required=True, metadata={"description": "the time of the change in the CRM"}),
        "data": fields.Nested(data_schema, required=True),
    }, name=f"{_component_name(event_type)}Event")


class _UnknownTypeEnvelope(Schema):
    """An event of a type this version does not know: acknowledged (200 ignored), not stored."""

    class Meta:
        unknown = RAISE

    type = fields.Str(required=True, validate=validate.Length(min=1, max=80))
    timestamp = wire.DateTime(required=True)
    data = fields.Dict(required=True)


# Rules a marshmallow @validates_schema enforces, stated for the document (the agreement test checks them).
SCHEMA_RULES = {
    RegistrationDecidedSchema: {"anyOf": [
        {"required": ["user_id"], "properties": {"user_id": {"type": "string", "minLength": 1}}},
        {"required": ["email"], "properties": {"email": {"type": "string"}}},
    ]},
}


def _batch_item(converter, field, **kwargs) -> dict:
    """A batch item is a contact or lead invitation with `kind`: say so instead of 'object'."""
    if not isinstance(field, BatchItemField):
        return {}
    variants = []
    for kind, schema in (("contact", ContactInviteSchema), ("lead", LeadInviteSchema)):
        item = converter.schema2jsonschema(schema)
        item["properties"] = {"kind": {"type": "string", "enum": [kind]}, **item["properties"]}
        item["required"] = ["kind", *item.get("required", [])]
        variants.append(item)
    return {"oneOf": variants}


def _json(schema) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return {"description": description, **_json("Error")}


def _status(description: str) -> dict:
    return {"description": description, **_json("Status")}


OPERATOR = {"security": [{"operatorToken": []}], "tags": ["operator"]}
OPERATOR_ERRORS = {"400": _error("a query parameter is not valid (named in errors)"),
                   "401": _error("missing or wrong bearer token"), "403": _error("the operator API is off (no KEYBRIDGE_OPERATOR_TOKEN)")}
SIGNED = [
    {"name": "webhook-id", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^[!-~]{1,200}$"},
     "description": "unique per event, the same on every retry: the idempotency key (1-200 visible ASCII characters)"},
    {"name": "webhook-timestamp", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
     "description": "Unix seconds; more than 300 s away from the adapter's clock is refused"},
    {"name": "webhook-signature", "in": "header", "required": True, "schema": {"type": "string", "minLength": 1},
     "description": "space-separated v1,<base64 signature> entries; any one valid is enough"},
]


def _path_param(name: str, description: str, **schema) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string", **schema}}


def _paths(inbound_refs: list[dict]) -> dict[str, dict]:
    html = {"content": {"text/html": {"schema": {"type": "string"}}}}
    portal_session = {"tags": ["portal"], "security": [{"portalSession": []}]}
    csrf_form = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["csrf"], "properties": {"csrf": {"type": "string"}}}}}}
    return {
        "/webhooks/crm": {"post": {
            "tags": ["webhooks"], "summary": "Receive a signed CRM event", "operationId": "receiveCrmEvent",
            "parameters": SIGNED,
            "requestBody": {"required": True, **_json({"oneOf": [*inbound_refs, "UnknownTypeEvent"]})},
            "responses": {"202": _status("stored durably with its job"),
                          "200": _status("duplicate webhook-id (nothing done twice), or an unknown type (ignored)"),
                          "400": _error("not a JSON object, nested too deeply, or an unusable webhook-id"),
                          "401": _error("missing, wrong or stale signature (nothing stored)"),
                          "413": _error("body over KEYBRIDGE_MAX_BODY_BYTES"),
                          "422": _error("the envelope or data does not match the schema of its type")}}},
        "/internal/keycloak-nudge": {"post": {
            "tags": ["webhooks"], "summary": "Keycloak's extension: an event was logged, read the event logs now",
            "description": "Signed with KEYBRIDGE_NUDGE_SECRET (Standard Webhooks). Stores only that a nudge arrived; "
                           "the worker reads Keycloak's event logs at its next pass (README, The Keycloak extension).",
            "operationId": "receiveKeycloakNudge", "parameters": SIGNED,
            "requestBody": {"required": True, **_json({"type": "object", "properties": {
                "type": {"const": "keycloak.nudge"}, "time_ms": {"type": "integer"}, "count": {"type": "integer"},
                "event_types": {"type": "array", "items": {"type": "string"}}}})},
            "responses": {"202": _status("the worker reads the event logs at its next pass"),
                          "401": _error("missing, wrong or stale signature, or no KEYBRIDGE_NUDGE_SECRET (nothing stored)"),
                          "413": _error("body over 4096 bytes")}}},
        "/webhooks/{vendor}": {"post": {
            "tags": ["webhooks"], "summary": "Receive a CRM's own webhooks (README: CRM vendors)", "operationId": "receiveVendorDelivery",
            "description": "Each vendor authenticates its way (HubSpot X-HubSpot-Signature-v3, Salesforce OrganizationId allow-list "
                           "and ?token=, Dataverse X-Keybridge-Key or ?code=, Pipedrive HTTP basic auth, EspoCRM Signature); the "
                           "delivery is translated into the native events and stored like /webhooks/crm.",
            "parameters": [_path_param("vendor", "the CRM's dialect", enum=vendor_keys())],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {}},
                                                          "text/xml": {"schema": {"type": "string"}}}},
            "responses": {"200": {"description": "stored (accepted, duplicate and ignored events listed); Salesforce gets its SOAP Ack",
                                  "content": {"application/json": {"schema": {"type": "object"}},
                                              "text/xml": {"schema": {"type": "string"}}}},
                          "400": _error("not the vendor's format"),
                          "401": _error("not authentic, or about a change older than KEYBRIDGE_VENDOR_MAX_AGE_SECONDS (nothing stored)"),
                          "404": _error("no such vendor dialect"),
                          "413": _error("body over KEYBRIDGE_MAX_BODY_BYTES"),
                          "422": _error("a record that cannot make a valid native event (the field is named; nothing stored)")}}},
        "/healthz": {"get": {"tags": ["health"], "summary": "Liveness: the process answers", "operationId": "healthz",
                             "responses": {"200": _status("alive")}}},
        "/readyz": {"get": {"tags": ["health"], "summary": "Readiness: the database answers, Keycloak accepts the adapter's credential, a worker ran within a minute",
                            "operationId": "readyz",
                            "responses": {"200": {"description": "ready", **_json("Readiness")},
                                          "503": _error("a check failed; errors names it (database, keycloak, worker) and why")}}},
        "/metrics": {"get": {"tags": ["health"], "summary": "Prometheus metrics (see README, Operating)", "operationId": "metrics",
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"tags": ["documentation"], "summary": "This document", "operationId": "openapi",
                                  "responses": {"200": {"description": "OpenAPI 3.1", **_json({"type": "object"})}}}},
        "/docs": {"get": {"tags": ["documentation"], "summary": "This document as a readable page", "operationId": "docs",
                          "responses": {"200": {"description": "HTML", **html}}}},
        "/api/dead-letters": {"get": {
            **OPERATOR, "summary": "Jobs and outbound events that kept failing", "operationId": "listDeadLetters",
            "responses": {"200": {"description": "the dead letters", **_json({"type": "object", "required": ["dead_letters"], "properties": {
                "dead_letters": {"type": "array", "items": {"type": "object"}}}})}, **OPERATOR_ERRORS}}},
        "/api/dead-letters/{kind}/{id}/replay": {"post": {
            **OPERATOR, "summary": "Queue one dead letter again", "operationId": "replayDeadLetter",
            "parameters": [_path_param("kind", "job or outbound", enum=["job", "outbound"]),
                           _path_param("id", "the id from the list")],
            "responses": {"202": _status("requeued"), "404": _error("no such dead letter"), "409": _error("not dead"), **OPERATOR_ERRORS}}},
        "/api/accounts/{account_id}": {"get": {
            **OPERATOR, "summary": "An account's contract state and members", "operationId": "getAccount",
            "parameters": [_path_param("account_id", "the CRM account id")],
            "responses": {"200": {"description": "contract, access and member counts", **_json({"type": "object"})},
                          "404": _error("Keybridge never received account.upserted for it"), **OPERATOR_ERRORS}}},
        "/api/batches/{batch_id}": {"get": {
            **OPERATOR, "summary": "A batch's progress, counts per outcome and a page of items", "operationId": "getBatch",
            "parameters": [_path_param("batch_id", "the batch_id of invitations.batch_requested"),
                           {"in": "query", "schema": BatchQuery}],
            "responses": {"200": {"description": "progress", **_json({"type": "object"})},
                          "404": _error("no such batch"), **OPERATOR_ERRORS}}},
        "/api/invitations": {"get": {
            **OPERATOR, "summary": "Invitations of one account or one batch with their state (pending, accepted, expired, revoked, skipped)",
            "operationId": "listInvitations", "parameters": [{"in": "query", "schema": InvitationsQuery}],
            "responses": {"200": {"description": "the invitations, counts per state and the total", **_json("InvitationList")},
                          **OPERATOR_ERRORS}}},
        "/api/invitations/{kind}/{crm_id}": {"get": {
            **OPERATOR, "summary": "One contact's or lead's invitation", "operationId": "getInvitation",
            "parameters": [_path_param("kind", "contact or lead", enum=["contact", "lead"]), _path_param("crm_id", "the CRM contact or lead id")],
            "responses": {"200": {"description": "the invitation", **_json("Invitation")},
                          "404": _error("no invitation for this record"), **OPERATOR_ERRORS}}},
        "/api/invitations/{kind}/{crm_id}/{action}": {"post": {
            **OPERATOR, "summary": "Revoke (the link stops working, invitation.revoked) or resend an invitation",
            "description": "Answered from what is stored; the worker does it in the record's order, like "
                           "contact.invite_revoked / lead.invite_revoked and invite_requested with resend.",
            "operationId": "actOnInvitation",
            "parameters": [_path_param("kind", "contact or lead", enum=["contact", "lead"]), _path_param("crm_id", "the CRM contact or lead id"),
                           _path_param("action", "revoke or resend", enum=["revoke", "resend"])],
            "responses": {"202": {"description": "queued for the worker", **_json("InvitationAnswer")},
                          "200": {"description": "already revoked or expired: nothing to do", **_json("InvitationAnswer")},
                          "404": _error("no invitation for this record, or no such kind or action"),
                          "409": _error("already accepted (or used after the contact left): nothing to revoke or resend"),
                          **OPERATOR_ERRORS}}},
        "/api/registrations": {"get": {
            **OPERATOR, "summary": "Self-registrations (pending approval by default)", "operationId": "listRegistrations",
            "parameters": [{"in": "query", "schema": RegistrationsQuery}],
            "responses": {"200": {"description": "registrations", **_json({"type": "object", "required": ["registrations"], "properties": {
                "registrations": {"type": "array", "items": {"type": "object"}}}})}, **OPERATOR_ERRORS}}},
        "/api/registrations/{user_id}/decision": {"post": {
            **OPERATOR, "summary": "Approve or reject a self-registration", "operationId": "decideRegistration",
            "parameters": [_path_param("user_id", "the Keycloak user id", minLength=1)],
            "requestBody": {"required": True, **_json("RegistrationDecision")},
            "responses": {"202": _status("stored; the worker applies it"), "422": _error("the decision does not match the schema"),
                          **OPERATOR_ERRORS}}},
        "/api/audit": {"get": {
            **OPERATOR, "summary": "What Keybridge changed, why and when (newest first)", "operationId": "getAudit",
            "parameters": [{"in": "query", "schema": AuditQuery}],
            "responses": {"200": {"description": "audit entries", **_json({"type": "object", "required": ["entries"], "properties": {
                "entries": {"type": "array", "items": {"type": "object"}}}})}, **OPERATOR_ERRORS}}},
        "/api/reconcile": {"post": {
            **OPERATOR, "summary": "Reconcile a CRM export with Keycloak (see README, Reconciliation); the worker runs it",
            "operationId": "postReconcile",
            "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "string", "enum": ["true", "false", "1", "0"]},
                            "description": "true: report the drift only"},
                           {"name": "exported_at", "in": "query", "schema": {"type": "string"},
                            "description": "the CRM time of records without their own modification time (ISO 8601 with a zone)"}],
            "requestBody": {"required": True, "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": ["object", "array"]}}}},
            "responses": {"202": {"description": "queued", **_json({"type": "object", "required": ["run_id", "url"], "properties": {
                "status": {"type": "string"}, "run_id": {"type": "string"}, "url": {"type": "string"}}})},
                "413": _error("body over KEYBRIDGE_MAX_BODY_BYTES"),
                "422": _error("the export has errors; errors names <file row>.<field> with the fix"), **OPERATOR_ERRORS}}},
        "/api/reconcile/{run_id}": {"get": {
            **OPERATOR, "summary": "A reconciliation's status, drift and how far the worker applied it", "operationId": "getReconcile",
            "parameters": [_path_param("run_id", "the run_id POST /api/reconcile answered"),
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
                            "description": "items shown per kind of drift (default 100)"}],
            "responses": {"200": {"description": "the run", **_json({"type": "object"})},
                          "404": _error("no such run"), **OPERATOR_ERRORS}}},
        "/portal/login": {"get": {"tags": ["portal"], "summary": "Start the org admin's Keycloak login", "operationId": "portalLogin",
                                  "responses": {"302": {"description": "to Keycloak"}}}},
        "/portal/callback": {"get": {"tags": ["portal"], "summary": "Keycloak's redirect back (authorization code, PKCE)",
                                     "operationId": "portalCallback", "responses": {"302": {"description": "to the page"},
                                                                                    "400": {"description": "bad state or code", **html}}}},
        "/portal/logout": {"post": {**portal_session, "summary": "End the page's session (every copy of the cookie), then Keycloak's",
                                    "operationId": "portalLogout", "requestBody": csrf_form,
                                    "responses": {"302": {"description": "to Keycloak's end-session endpoint"},
                                                  "200": {"description": "signed out here", **html}}}},
        "/portal/signed-out": {"get": {"tags": ["portal"], "summary": "Where Keycloak's logout comes back to", "operationId": "portalSignedOut",
                                       "responses": {"200": {"description": "signed out", **html}}}},
        "/portal/": {"get": {**portal_session, "summary": "The organization's members (org admins only)", "operationId": "portalMembers",
                             "responses": {"200": {"description": "the page", **html}, "302": {"description": "to the login"}}}},
        "/portal/invite": {"post": {**portal_session, "summary": "Invite someone into the organization", "operationId": "portalInvite",
                                    "requestBody": csrf_form, "responses": {"302": {"description": "back to the page"},
                                                                            "400": {"description": "refused", **html}}}},
        "/portal/members/{user_id}/roles/{role}/take": {"post": {
            **portal_session, "summary": "Take a business role away", "operationId": "portalTakeRole",
            "parameters": [_path_param("user_id", "a member's Keycloak id"), _path_param("role", "a business role")],
            "requestBody": csrf_form, "responses": {"302": {"description": "back to the page"}, "403": {"description": "refused", **html}}}},
        "/portal/members/{user_id}/remove": {"post": {
            **portal_session, "summary": "Remove someone from the organization", "operationId": "portalRemove",
            "parameters": [_path_param("user_id", "a member's Keycloak id")],
            "requestBody": csrf_form, "responses": {"302": {"description": "back to the page"}, "403": {"description": "refused", **html}}}},
        "/portal/members/{user_id}/roles/give": {"post": {
            **portal_session, "summary": "Give a business role (only those) to a member", "operationId": "portalGiveRole",
            "parameters": [_path_param("user_id", "a member's Keycloak id")],
            "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["csrf", "role"],
                "properties": {"csrf": {"type": "string"}, "org": {"type": "string"}, "role": {"type": "string"}}}}}},
            "responses": {"302": {"description": "back to the page"}, "400": {"description": "no business role, or no member", **html},
                          "403": {"description": "refused", **html}}}},
        "/portal/invitations/{invitation_id}/resend": {"post": {
            **portal_session, "summary": "Send one of the organization's pending invitations again", "operationId": "portalResendInvitation",
            "parameters": [_path_param("invitation_id", "the Keycloak id of one of the organization's pending invitations")],
            "requestBody": csrf_form, "responses": {"302": {"description": "back to the page"},
                                                    "404": {"description": "no such pending invitation here", **html},
                                                    "403": {"description": "refused", **html}}}},
        "/portal/invitations/{invitation_id}/revoke": {"post": {
            **portal_session, "summary": "Revoke one of the organization's pending invitations (its link stops working)",
            "operationId": "portalRevokeInvitation",
            "parameters": [_path_param("invitation_id", "the Keycloak id of one of the organization's pending invitations")],
            "requestBody": csrf_form, "responses": {"302": {"description": "back to the page"},
                                                    "404": {"description": "no such pending invitation here", **html},
                                                    "403": {"description": "refused", **html}}}},
        "/portal/welcome": {"get": {"tags": ["portal"], "summary": "Where an invited person lands after accepting (signed in, "
                                    "welcomed, sent on to their invitation's redirect_uri)", "operationId": "portalWelcome",
                                    "responses": {"200": {"description": "the welcome page", **html},
                                                  "302": {"description": "to the login first"}}}},
        "/portal/logo.svg": {"get": {"tags": ["portal"], "summary": "The portal's logo", "operationId": "portalLogo",
                                     "responses": {"200": {"description": "an SVG image",
                                                           "content": {"image/svg+xml": {"schema": {"type": "string"}}}}}}},
        **_dashboard_paths(html, csrf_form),
    }


def _dashboard_paths(html: dict, csrf_form: dict) -> dict[str, dict]:
    """The operator dashboard (adapter/dashboard/): HTML behind the Keycloak login, realm role keybridge-operator."""
    session = {"tags": ["dashboard"], "security": [{"portalSession": []}]}
    refused = {"description": "refused (the page says why and what to do)", **html}
    return {
        "/dashboard/login": {"get": {"tags": ["dashboard"], "summary": "Start the operator's Keycloak login", "operationId": "dashboardLogin",
                                     "responses": {"302": {"description": "to Keycloak"}}}},
        "/dashboard/callback": {"get": {"tags": ["dashboard"], "summary": "Keycloak's redirect back (authorization code, PKCE)",
                                        "operationId": "dashboardCallback", "responses": {"302": {"description": "to the dashboard"},
                                                                                          "400": {"description": "bad state or code", **html}}}},
        "/dashboard/logout": {"post": {**session, "summary": "End the sign-in (every copy of the cookie), then Keycloak's",
                                       "operationId": "dashboardLogout", "requestBody": csrf_form,
                                       "responses": {"302": {"description": "to Keycloak's end-session endpoint"},
                                                     "200": {"description": "signed out here", **html}}}},
        "/dashboard/signed-out": {"get": {"tags": ["dashboard"], "summary": "Where Keycloak's logout comes back to",
                                          "operationId": "dashboardSignedOut", "responses": {"200": {"description": "signed out", **html}}}},
        "/dashboard/": {"get": {**session, "summary": "Funnel, pending registrations, dead letters, batches, audit (operators only)",
                                "operationId": "dashboardHome",
                                "parameters": [{"name": "days", "in": "query", "schema": {"type": "integer", "enum": [7, 30, 90]},
                                                "description": "the funnel's period (default 30)"},
                                               {"name": "account", "in": "query", "schema": {"type": "string"},
                                                "description": "one CRM account's funnel instead of all"}],
                                "responses": {"200": {"description": "the page", **html}, "302": {"description": "to the login"},
                                              "400": refused, "403": refused}}},
        "/dashboard/registrations/{user_id}/decision": {"post": {
            **session, "summary": "Approve or reject a pending registration (stored as registration.decided, audited)",
            "operationId": "dashboardDecide", "parameters": [_path_param("user_id", "the Keycloak user id")],
            "requestBody": csrf_form, "responses": {"302": {"description": "back to the dashboard"}, "400": refused, "403": refused,
                                                    "404": refused, "409": refused}}},
        "/dashboard/dead-letters/{kind}/{id}/replay": {"post": {
            **session, "summary": "Queue one dead letter again (audited)", "operationId": "dashboardReplay",
            "parameters": [_path_param("kind", "job or outbound", enum=["job", "outbound"]), _path_param("id", "the id on the page")],
            "requestBody": csrf_form, "responses": {"302": {"description": "back to the dashboard"}, "400": refused, "403": refused,
                                                    "404": refused, "409": refused}}},
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    """The whole document (built once per process; it depends only on code)."""
    plugin = MarshmallowPlugin(schema_name_resolver=lambda schema: None)
    spec = APISpec(title="Keybridge adapter", version="1", openapi_version="3.1.0", plugins=[plugin],
                   info={"description": DESCRIPTION})
    plugin.converter.add_attribute_function(_batch_item)
    spec.components.security_scheme("operatorToken", {"type": "http", "scheme": "bearer",
                                                      "description": "Authorization: Bearer $KEYBRIDGE_OPERATOR_TOKEN"})
    spec.components.security_scheme("portalSession", {"type": "apiKey", "in": "cookie", "name": "session",
                                                      "description": "the page's session after the Keycloak login"})
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.schema("Status", schema=StatusSchema)
    spec.components.schema("Readiness", schema=ReadinessSchema)
    spec.components.schema("Invitation", schema=InvitationSchema)
    spec.components.schema("InvitationList", schema=InvitationListSchema)
    spec.components.schema("InvitationAnswer", schema=InvitationAnswerSchema)
    inbound = TASKS.schemas()  # the type -> schema mapping, declared beside each handler
    inbound_refs = []
    for event_type, data_schema in inbound.items():
        name = _component_name(event_type)
        spec.components.schema(name, schema=data_schema)
        spec.components.schema(f"{name}Event", schema=_envelope(event_type, data_schema),
                               description=f"`{event_type}` (see the CRM contract)")
        inbound_refs.append(f"{name}Event")
    spec.components.schema("UnknownTypeEvent", schema=_UnknownTypeEnvelope,
                           description="a type this version does not know: answered 200 ignored, not stored")
    spec.components.schema("RegistrationDecision", schema=RegistrationDecidedSchema(exclude=("user_id",)),
                           description="the user id is the path's")
    for path, operations in _paths(inbound_refs).items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    schemas = document["components"]["schemas"]
    for schema_cls, rule in SCHEMA_RULES.items():
        for event_type, data_schema in inbound.items():
            if data_schema is schema_cls:
                schemas[_component_name(event_type)].update(rule)
    # `type` of an unknown event is any type but the known ones
    schemas["UnknownTypeEvent"]["properties"]["type"]["not"] = {"enum": list(inbound)}
    document["webhooks"] = _outbound_webhooks(plugin)
    document["tags"] = [{"name": "webhooks", "description": "inbound CRM events"},
                        {"name": "operator", "description": "the operator API (bearer token)"},
                        {"name": "health"}, {"name": "documentation"},
                        {"name": "portal", "description": "the org admins' page (HTML, Keycloak login)"},
                        {"name": "dashboard", "description": "the operators' dashboard (HTML, Keycloak login, realm role keybridge-operator)"}]
    return document


def _outbound_webhooks(plugin) -> dict:
    """Outbound identity events, POSTed to KEYBRIDGE_CRM_EVENTS_URL in the same signed envelope."""
    out = {}
    for event_type, data_schema in OUTBOUND_SCHEMAS.items():
        envelope = {"type": "object", "required": ["type", "timestamp", "data"], "properties": {
            "type": {"type": "string", "enum": [event_type]},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": plugin.converter.schema2jsonschema(data_schema)}}
        out[event_type] = {"post": {
            "summary": event_type, "operationId": f"outbound{_component_name(event_type)}",
            "description": "Signed like inbound webhooks with KEYBRIDGE_CRM_EVENTS_SECRET; webhook-id is the event's stable id "
                           "(the same on every retry). Delivered at least once, in order per subject.",
            "parameters": SIGNED,
            "requestBody": {"required": True, **_json(envelope)},
            "responses": {"2XX": {"description": "delivered"},
                          "default": {"description": "anything else (3xx included) is retried with backoff, then a dead letter"}}}}
    return out
