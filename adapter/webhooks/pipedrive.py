"""`POST /webhooks/pipedrive`: Pipedrive webhooks v2.

One event per request: `meta` (action create/change/delete, entity, entity_id,
id, timestamp ...), `data` (the object now) and `previous` (the fields a change
touched, with their old values). Authenticated with HTTP basic auth (the
username and password given when creating the webhook), compared in constant time.
"""
from __future__ import annotations

import base64
import binascii
import hmac

from ..errors import ApiError
from . import dialects
from .dialects import Dialect, occurred
from .translation import Change, Ignored


@dialects.register
class Pipedrive(Dialect):
    key = "pipedrive"
    name = "Pipedrive webhooks v2"

    def configured(self, settings) -> bool:
        return bool(settings.pipedrive_username and settings.pipedrive_password)

    def authenticate(self, settings, req, body: bytes) -> dict:
        if not (settings.pipedrive_username and settings.pipedrive_password):
            raise ApiError(401, "KEYBRIDGE_PIPEDRIVE_USERNAME and KEYBRIDGE_PIPEDRIVE_PASSWORD are not set; every Pipedrive delivery is refused until they are.")
        header = req.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            user = password = ""
        ok_user = hmac.compare_digest(user.encode(), settings.pipedrive_username.encode())
        ok_password = hmac.compare_digest(password.encode(), settings.pipedrive_password.encode())
        if scheme.lower() != "basic" or not (ok_user and ok_password):
            raise ApiError(401, "Pipedrive deliveries need HTTP basic auth with KEYBRIDGE_PIPEDRIVE_USERNAME and KEYBRIDGE_PIPEDRIVE_PASSWORD "
                                "(the http_auth_user / http_auth_password of the webhook).", {"Authorization": ["Missing or wrong credentials."]})
        return {}

    def parse(self, settings, req, body: bytes, sender: dict) -> list:
        event = dialects.json_body(body, "Pipedrive")
        meta = event.get("meta") if isinstance(event, dict) else None
        if not isinstance(meta, dict) or "entity" not in meta or "action" not in meta:
            raise ApiError(400, "Not a Pipedrive webhooks v2 event: expected {meta: {action, entity, entity_id, timestamp ...}, data, previous}.",
                           {"meta": ["Missing or incomplete."]})
        if str(meta.get("version", "2.0")).split(".")[0] != "2":
            raise ApiError(400, "Only Pipedrive webhooks v2 are understood: create the webhook with version 2.0.", {"meta.version": ["Not 2.0."]})
        entity_id = str(meta.get("entity_id") or (event.get("data") or {}).get("id") or (event.get("previous") or {}).get("id") or "")
        event_id = f"{meta['entity']}:{entity_id}:{meta.get('id')}:{meta.get('timestamp')}"
        action = {"create": "create", "added": "create", "change": "update", "updated": "update", "delete": "delete", "deleted": "delete"}.get(meta["action"])
        if action is None:
            return [Ignored(event_id, f"action {meta['action']} is not used by Keybridge")]
        when = occurred(meta.get("timestamp"), "meta.timestamp")
        data = event.get("data") or event.get("previous") or {}
        previous = event.get("previous")
        changed = set(_paths(previous)) if action == "update" and isinstance(previous, dict) else None
        return [Change(event_id=event_id, object=meta["entity"], record_id=entity_id, occurred_at=when,
                       attributes=data if isinstance(data, dict) else {}, action=action, changed=changed)]


def _paths(value: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every key in `previous` (a changed custom field shows as custom_fields.<key>)."""
    paths = []
    for key, inner in value.items():
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(inner, dict):
            paths += _paths(inner, path + ".")
    return paths
