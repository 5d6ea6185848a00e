"""The operator API (/api/*, bearer token) and the OpenAPI document.

Every query parameter is read through a marshmallow schema (`*Query` below, documented in
the OpenAPI document from the same classes): a bad or unknown one is a 400 naming it.
"""
from __future__ import annotations

import hmac

from flask import Blueprint, Flask, current_app, jsonify, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from .errors import ApiError

from . import dead_letters, inbox, reports
from .events import RegistrationDecidedSchema
from .json_body import load_json_object
from .handlers import batches, invitation_lifecycle, self_service

bp = Blueprint("api", __name__)


class _Query(Schema):
    class Meta:
        unknown = RAISE


class AuditQuery(_Query):
    subject = fields.Str(validate=validate.Length(min=1, max=300), metadata={"description": "exact ('account:A-1', 'user:<id>'), or a prefix ending in ':'"})
    limit = fields.Int(strict=True, load_default=100, validate=validate.Range(min=1, max=1000), metadata={"description": "newest entries first, 1 to 1000"})


class BatchQuery(_Query):
    offset = fields.Int(strict=True, load_default=0, validate=validate.Range(min=0, max=10_000), metadata={"description": "first item shown"})
    limit = fields.Int(strict=True, load_default=1000, validate=validate.Range(min=1, max=10_000), metadata={"description": "items shown, 1 to 10000"})


class InvitationsQuery(_Query):
    account_id = fields.Str(validate=validate.Length(min=1, max=200), metadata={"description": "the CRM account's invitations (contacts)"})
    batch_id = fields.Str(validate=validate.Length(min=1, max=200), metadata={"description": "the batch's invitations (contacts and leads)"})
    state = fields.Str(validate=validate.OneOf(list(invitation_lifecycle.STATES)), metadata={"description": "only invitations in this state"})
    offset = fields.Int(strict=True, load_default=0, validate=validate.Range(min=0), metadata={"description": "first invitation shown"})
    limit = fields.Int(strict=True, load_default=1000, validate=validate.Range(min=1, max=10_000), metadata={"description": "invitations shown, 1 to 10000"})


class RegistrationsQuery(_Query):
    status = fields.Str(load_default="pending", validate=validate.OneOf(["awaiting_verification", "pending", "approved", "rejected", "all"]),
                        metadata={"description": "which registrations; 'all' for every one"})


def query_args(schema: type[Schema]) -> dict:
    """The request's query parameters loaded with `schema`; raises ApiError(400) naming each bad one."""
    raw = {}
    for name, values in request.args.lists():
        if len(values) > 1:
            raise ApiError(400, f"Query parameter {name} is given {len(values)} times; give it once.", {name: ["Given more than once."]})
        raw[name] = values[0]
    field_of = {f.data_key or n: f for n, f in schema().fields.items()}
    for name, value in raw.items():
        # numbers arrive as text: convert only what looks like an integer, so "1.5", "1e3" or " 7" are refused
        if isinstance(field_of.get(name), fields.Int) and value.lstrip("-").isascii() and value.lstrip("-").isdigit():
            raw[name] = int(value)
    try:
        return schema().load(raw)
    except ValidationError as exc:
        names = ", ".join(sorted(exc.messages))
        raise ApiError(400, f"Query parameter {names} is not valid; see errors (allowed: {', '.join(sorted(field_of))}).", exc.messages) from None


@bp.before_request
def require_operator_token():
    """/api/* is for operators: `Authorization: Bearer $KEYBRIDGE_OPERATOR_TOKEN`."""
    if not request.path.startswith("/api/"):
        return None
    expected = current_app.extensions["keybridge"].settings.operator_token
    if not expected:
        raise ApiError(403, "The operator API is off: set KEYBRIDGE_OPERATOR_TOKEN on the adapter to use it.")
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "Send Authorization: Bearer <KEYBRIDGE_OPERATOR_TOKEN>.")
    return None


@bp.get("/api/dead-letters")
def list_dead_letters():
    return jsonify({"dead_letters": dead_letters.list_all(current_app.extensions["keybridge"].db)})


@bp.post("/api/dead-letters/<kind>/<item_id>/replay")
def replay_dead_letter(kind: str, item_id: str):
    if kind not in ("job", "outbound"):
        raise ApiError(400, "kind must be 'job' or 'outbound'.", {"kind": ["Must be one of: job, outbound."]})
    if kind == "job" and not (item_id.isascii() and item_id.isdigit() and len(item_id) <= 18):
        raise ApiError(404, f"No job {item_id!r}; job ids are numbers, see `keybridge dead-letters list`.", {"id": ["Not a job id."]})
    dead_letters.replay(current_app.extensions["keybridge"].db, kind, item_id)
    return jsonify({"status": "requeued"}), 202


@bp.get("/api/accounts/<account_id>")
def get_account(account_id: str):
    status = reports.account_status(current_app.extensions["keybridge"], account_id)
    if status is None:
        raise ApiError(404, f"No account {account_id}: Keybridge has not received account.upserted for it.")
    return jsonify(status)


@bp.get("/api/batches/<batch_id>")
def get_batch(batch_id: str):
    page = query_args(BatchQuery)
    status = batches.batch_status(current_app.extensions["keybridge"], batch_id, page["offset"], page["limit"])
    if status is None:
        raise ApiError(404, f"No batch {batch_id}: it has not been received, or its webhook was refused.")
    return jsonify(status)


@bp.get("/api/invitations")
def list_invitations():
    query = query_args(InvitationsQuery)
    if ("account_id" in query) == ("batch_id" in query):
        raise ApiError(400, "Give account_id or batch_id (one of them).", {"account_id": ["Give this or batch_id."], "batch_id": ["Give this or account_id."]})
    return jsonify(invitation_lifecycle.list_invitations(current_app.extensions["keybridge"], query.get("account_id"), query.get("batch_id"),
                                                         query.get("state"), query["offset"], query["limit"]))


def _invitation_kind(kind: str) -> str:
    if kind not in ("contact", "lead"):
        raise ApiError(404, f"No invitation kind {kind!r}: use /api/invitations/contact/<contact_id> or /lead/<lead_id>.", {"kind": ["Must be one of: contact, lead."]})
    return kind


@bp.get("/api/invitations/<kind>/<crm_id>")
def get_invitation(kind: str, crm_id: str):
    row = invitation_lifecycle.invitation_status(current_app.extensions["keybridge"], _invitation_kind(kind), crm_id)
    if row is None:
        raise ApiError(404, f"No invitation for {kind} {crm_id}: the CRM never asked to invite them.")
    return jsonify(row)


@bp.post("/api/invitations/<kind>/<crm_id>/<action>")
def invitation_action(kind: str, crm_id: str, action: str):
    """Revoke or resend: answered from what is stored, done by the worker in the record's order."""
    if action not in ("revoke", "resend"):
        raise ApiError(404, f"No action {action!r}: POST .../revoke or .../resend.", {"action": ["Must be one of: revoke, resend."]})
    try:
        answer = invitation_lifecycle.request(current_app.extensions["keybridge"], action, _invitation_kind(kind), crm_id, "operator api")
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    if answer["status"] == "queued":
        return jsonify(answer), 202
    if answer["status"] in ("already_revoked", "already_expired"):
        return jsonify(answer), 200  # what was asked holds already: nothing to do
    raise ApiError(409, answer["message"], {"state": [answer["state"]]})


@bp.get("/api/registrations")
def list_registrations():
    status = query_args(RegistrationsQuery)["status"]
    return jsonify({"registrations": self_service.pending_registrations(current_app.extensions["keybridge"], None if status == "all" else status)})


@bp.post("/api/registrations/<user_id>/decision")
def decide_registration(user_id: str):
    body = load_json_object(request.get_data(cache=False), '{"decision": "approved"|"rejected", "account_id": ..., "roles": [...]}')
    if "user_id" in body:
        raise ApiError(422, "The user is the one in the path; leave user_id out of the body.", {"user_id": ["Give it in the path only."]})
    data = {**body, "user_id": user_id}
    try:
        data = RegistrationDecidedSchema().load(data)
    except ValidationError as exc:
        raise ApiError(422, "The decision does not match the schema; see errors.", exc.messages) from None
    raw = {k: v for k, v in data.items() if v is not None}
    event_id = inbox.store_operator_event(current_app.extensions["keybridge"].db, "registration.decided", raw, "api")
    return jsonify({"status": "accepted", "event_id": event_id}), 202


@bp.get("/api/audit")
def get_audit():
    query = query_args(AuditQuery)
    return jsonify({"entries": reports.audit_trail(current_app.extensions["keybridge"], query.get("subject"), query["limit"])})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/api/reconcile")
def post_reconcile():
    """Queue a reconciliation of the export in the body (JSON, or CSV as text/csv); `?dry_run=true` only reports."""
    from . import reconcile
    from .reconcile.export import parse_time

    dry_run = request.args.get("dry_run", "false").lower()
    if dry_run not in ("true", "false", "1", "0"):
        raise ApiError(400, "dry_run must be true or false", {"dry_run": ["Use true or false."]})
    exported_at = None
    if request.args.get("exported_at"):
        try:
            exported_at = parse_time(request.args["exported_at"])
        except ValueError as exc:
            raise ApiError(400, f"exported_at: {exc}", {"exported_at": [str(exc)]}) from None
    try:
        text = request.get_data(as_text=False).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, "Send the export as UTF-8 JSON or CSV.", {"body": ["Not UTF-8."]}) from None
    label = "csv" if request.mimetype == "text/csv" else "json"
    try:
        run_id = reconcile.queue_run(current_app.extensions["keybridge"], text, label, dry_run in ("true", "1"), exported_at)
    except reconcile.ExportError as exc:
        raise ApiError(422, "The export has errors; see errors (where.field: message with the fix).", exc.as_fields()) from None
    return jsonify({"status": "queued", "run_id": run_id, "url": f"/api/reconcile/{run_id}"}), 202


@bp.get("/api/reconcile/<run_id>")
def get_reconcile(run_id: str):
    from . import reconcile

    try:
        limit = int(request.args.get("limit", 100))
    except ValueError:
        raise ApiError(400, "limit must be a number", {"limit": ["Not an integer."]}) from None
    if not 0 <= limit <= 1000:
        raise ApiError(400, "limit must be between 0 and 1000", {"limit": ["Between 0 and 1000."]})
    status = reconcile.run_status(current_app.extensions["keybridge"], run_id, limit)
    if status is None:
        raise ApiError(404, f"No reconcile run {run_id}: POST /api/reconcile answers with the run_id to use.")
    return jsonify(status)
