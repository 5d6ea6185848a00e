"""`POST /webhooks/crm`: the native format, signed with Standard Webhooks.

The request is only stored here (event + job, one transaction); the worker does the work.
Order of checks: size (413), signature (401), webhook-id and JSON (400), type (200 ignored), schema (422),
then duplicate (200) or stored (202). `accept` is that sequence; the Flask view below and the
WSGI fast path (fast_path.py, which answers only successes and hands the rest to this view)
both run it.
"""
from __future__ import annotations

import functools
import logging
import re

from flask import Blueprint, Response, current_app, g, request
from marshmallow import ValidationError
from .. import inbox
from ..errors import ApiError
from ..events import EnvelopeSchema
from ..handlers import TASKS
from ..json_body import load_json_object
from .signatures import verify_standard_webhook

log = logging.getLogger(__name__)
WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,200}")  # stored as the primary key of inbound_events (String(200))
bp = Blueprint("webhooks_crm", __name__)
ACCEPTED_BODY, DUPLICATE_BODY, IGNORED_BODY = b'{"status":"accepted"}\n', b'{"status":"duplicate"}\n', b'{"status":"ignored"}\n'
ENVELOPE = EnvelopeSchema()  # a schema object holds no state of one load: built once, reused by every request


@functools.cache
def schema_of(schema_class):
    """One instance of a type's data schema, built on first use (building one costs more than a load)."""
    return schema_class()


def accept(kb, headers, body: bytes) -> str:
    """Verify, validate and store one native webhook; returns 'accepted', 'duplicate' or 'ignored'
    (an event type this version does not know). Raises ApiError for anything refused.

    `headers`: the request's (werkzeug's EnvironHeaders). Shared by the Flask view and by
    `fast_path`, which answers the common case without Flask's request machinery.
    """
    settings = kb.settings
    verify_standard_webhook(settings.webhook_secrets, headers, body, settings.webhook_tolerance_seconds)
    webhook_id = headers["webhook-id"]
    if not WEBHOOK_ID.fullmatch(webhook_id):
        raise ApiError(400, "webhook-id must be 1 to 200 visible ASCII characters without spaces (e.g. msg_<unique id>); it is the idempotency key.",
                       {"webhook-id": ["Not a usable idempotency key."]})

    envelope = load_json_object(body, '{"type", "timestamp", "data"}')
    try:
        ENVELOPE.load(envelope)
    except ValidationError as exc:
        raise ApiError(422, "The envelope does not match the contract; see errors.", exc.messages) from None

    event_type = envelope["type"]
    task = TASKS.event(event_type)
    if task is None:
        log.info("ignored webhook %s of unknown type %r", webhook_id, event_type)
        return "ignored"
    try:
        schema_of(task.schema).load(envelope["data"])
    except ValidationError as exc:
        raise ApiError(422, f"data does not match the schema of {event_type}; see errors.", {"data": exc.messages}) from None
    return inbox.store_event(kb.db, webhook_id, "crm", envelope)


ANSWERS = {"accepted": (202, ACCEPTED_BODY), "duplicate": (200, DUPLICATE_BODY), "ignored": (200, IGNORED_BODY)}


@bp.post("/webhooks/crm")
def receive_crm_event():
    body = request.get_data(cache=False)  # MAX_CONTENT_LENGTH answers 413 before we get here
    status = accept(current_app.extensions["keybridge"], request.headers, body)
    g.webhook_outcome = status  # for the metrics (no need to parse the answer again)
    code, answer = ANSWERS[status]
    return Response(answer, code, mimetype="application/json")
