"""Operator endpoints: health, the OpenAPI document, dead letters."""
from __future__ import annotations

import hmac

from flask import Blueprint, Flask, current_app, jsonify, request
from sqlalchemy import text

from .errors import ApiError

from marshmallow import ValidationError

from . import dead_letters, inbox, reports
from .events import RegistrationDecidedSchema
from .handlers import batches, self_service
from .openapi import openapi_document

bp = Blueprint("api", __name__)


@bp.get("/healthz")
def healthz():
    with current_app.extensions["keybridge"].db.session() as session:
        session.execute(text("SELECT 1"))
    return jsonify({"status": "ok"})


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


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
    try:
        offset = max(0, int(request.args.get("offset", 0)))
        limit = min(max(1, int(request.args.get("limit", 1000))), 10_000)
    except ValueError:
        raise ApiError(400, "offset and limit must be numbers", {"offset": ["Not an integer."]}) from None
    status = batches.batch_status(current_app.extensions["keybridge"], batch_id, offset, limit)
    if status is None:
        raise ApiError(404, f"No batch {batch_id}: it has not been received, or its webhook was refused.")
    return jsonify(status)


@bp.get("/api/registrations")
def list_registrations():
    status = request.args.get("status", "pending") or None
    return jsonify({"registrations": self_service.pending_registrations(current_app.extensions["keybridge"], status)})


@bp.post("/api/registrations/<user_id>/decision")
def decide_registration(user_id: str):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object: {\"decision\": \"approved\"|\"rejected\", \"account_id\": ..., \"roles\": [...]}.")
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
    try:
        limit = min(int(request.args.get("limit", 100)), 1000)
    except ValueError:
        raise ApiError(400, "limit must be a number", {"limit": ["Not an integer."]}) from None
    return jsonify({"entries": reports.audit_trail(current_app.extensions["keybridge"], request.args.get("subject"), limit)})


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
