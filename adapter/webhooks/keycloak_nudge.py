"""`POST /internal/keycloak-nudge`: Keycloak's extension says an event was logged.

Signed like every webhook here (Standard Webhooks, KEYBRIDGE_NUDGE_SECRET,
constant-time comparison, the same replay window). The body carries no user
data and nothing of it is stored: only the arrival time, so the worker reads
Keycloak's event logs now instead of at its next poll (adapter/nudges.py).
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from .. import nudges
from ..errors import ApiError
from .signatures import verify_standard_webhook

bp = Blueprint("keycloak_nudge", __name__)

MAX_NUDGE_BYTES = 4096


@bp.post("/internal/keycloak-nudge")
def receive_nudge():
    kb = current_app.extensions["keybridge"]
    settings = kb.settings
    if not settings.nudge_secret:
        raise ApiError(401, "Nudges are off: set KEYBRIDGE_NUDGE_SECRET on the adapter and the same value in Keycloak "
                            "(KEYBRIDGE_NUDGE_SECRET or --spi-events-listener--keybridge-nudge--secret).")
    if (request.content_length or 0) > MAX_NUDGE_BYTES:
        raise ApiError(413, f"A nudge body is at most {MAX_NUDGE_BYTES} bytes; this endpoint only takes Keycloak's nudges.")
    body = request.get_data(cache=False)
    if len(body) > MAX_NUDGE_BYTES:
        raise ApiError(413, f"A nudge body is at most {MAX_NUDGE_BYTES} bytes; this endpoint only takes Keycloak's nudges.")
    verify_standard_webhook([settings.nudge_secret], request.headers, body, settings.webhook_tolerance_seconds)
    nudges.record(kb.db)
    return jsonify({"status": "accepted"}), 202
