"""`POST /webhooks/crm`: the native format, signed with Standard Webhooks.

The request is only stored here (event + job, one transaction); the worker does the work.
Order of checks: size (413), signature (401), JSON (400), type (200 ignored), schema (422),
then duplicate (200) or stored (202).
"""
from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, jsonify, request
from marshmallow import ValidationError
from .. import inbox
from ..errors import ApiError
from ..events import EnvelopeSchema
from ..handlers import TASKS
from .signatures import verify_standard_webhook

log = logging.getLogger(__name__)
bp = Blueprint("webhooks_crm", __name__)


@bp.post("/webhooks/crm")
def receive_crm_event():
    settings = current_app.extensions["keybridge"].settings
    body = request.get_data(cache=False)  # MAX_CONTENT_LENGTH answers 413 before we get here
    verify_standard_webhook(settings.webhook_secrets, request.headers, body, settings.webhook_tolerance_seconds)
    webhook_id = request.headers["webhook-id"]

    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Body is not valid JSON: {exc}. Send {{\"type\", \"timestamp\", \"data\"}} as application/json.") from None
    if not isinstance(envelope, dict):
        raise ApiError(400, "Body must be a JSON object: {\"type\", \"timestamp\", \"data\"}.")
    try:
        EnvelopeSchema().load(envelope)
    except ValidationError as exc:
        raise ApiError(422, "The envelope does not match the contract; see errors.", exc.messages) from None

    event_type = envelope["type"]
    task = TASKS.event(event_type)
    if task is None:
        log.info("ignored webhook %s of unknown type %r", webhook_id, event_type)
        return jsonify({"status": "ignored"}), 200
    try:
        task.schema().load(envelope["data"])
    except ValidationError as exc:
        raise ApiError(422, f"data does not match the schema of {event_type}; see errors.", {"data": exc.messages}) from None

    status = inbox.store_event(current_app.extensions["keybridge"].db, webhook_id, "crm", envelope)
    if status == "duplicate":
        return jsonify({"status": "duplicate"}), 200
    return jsonify({"status": "accepted"}), 202
