"""`POST /webhooks/espocrm`: EspoCRM webhooks.

Each EspoCRM webhook has one event (Contact.create, Contact.update, Account.update,
Lead.create ...) and its own secret key; records of one webhook come batched in a
JSON array. `Signature` = base64(webhook id + ":" + hex HMAC-SHA256(payload, secret
key)). KEYBRIDGE_ESPOCRM_WEBHOOK_SECRETS lists each webhook as WEBHOOK_ID:EVENT:SECRET_KEY,
so the signature says which webhook (and so which event) a delivery is. EspoCRM
sends no delivery id or time: a change is identified by webhook, record and its
`modifiedAt` (or, without one, the record's content), so a redelivery is a duplicate.
An update carries only the changed fields; with KEYBRIDGE_ESPOCRM_URL and
KEYBRIDGE_ESPOCRM_API_TOKEN the worker reads the whole record back (job `vendor_read`).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime, timezone
from urllib.parse import quote

import requests

from ..errors import ApiError, PermanentError, RetryableError
from . import dialects
from .dialects import Deferred, Dialect
from .translation import Change, parse_time


@dialects.register
class EspoCrm(Dialect):
    key = "espocrm"
    name = "EspoCRM webhooks"

    def configured(self, settings) -> bool:
        return bool(settings.espocrm_webhook_secrets)

    def authenticate(self, settings, req, body: bytes) -> dict:
        hooks = {}
        for entry in settings.espocrm_webhook_secrets:
            hook_id, event, secret = entry.split(":", 2)
            hooks[hook_id] = (event, secret)
        if not hooks:
            raise ApiError(401, "KEYBRIDGE_ESPOCRM_WEBHOOK_SECRETS is not set (WEBHOOK_ID:EVENT:SECRET_KEY per webhook); every EspoCRM delivery is refused until it is.")
        signature = req.headers.get("Signature")
        if not signature:
            raise ApiError(401, "Not a signed EspoCRM delivery: EspoCRM 9+ sends the Signature header.", {"Signature": ["Missing header."]})
        try:
            hook_id, _, digest = base64.b64decode(signature, validate=True).decode("ascii").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ApiError(401, "Signature is not base64 of WEBHOOK_ID:HMAC.", {"Signature": ["Malformed."]}) from None
        event, secret = hooks.get(hook_id, ("", ""))
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), digest.encode()) or not event:
            raise ApiError(401, "Signature does not match: check the webhook's id and secret key in KEYBRIDGE_ESPOCRM_WEBHOOK_SECRETS "
                                "(Administration > Webhooks).", {"Signature": ["No valid signature."]})
        return {"webhook_id": hook_id, "event": event}

    def parse(self, settings, req, body: bytes, sender: dict) -> list:
        records = dialects.json_body(body, "EspoCRM")
        if not isinstance(records, list):
            raise ApiError(400, "An EspoCRM delivery is a JSON array of records.")
        entity, _, event = sender["event"].partition(".")
        action = "create" if event == "create" else "delete" if event == "delete" else "update"
        changes = []
        for i, record in enumerate(records):
            if not isinstance(record, dict) or not record.get("id"):
                raise ApiError(400, f"Record {i} has no id.", {f"[{i}].id": ["Missing."]})
            stamp = record.get("modifiedAt") or record.get("createdAt")
            version = stamp or hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:24]
            fields = set(record) - {"id"} if action == "update" else None
            if event.startswith("fieldUpdate"):
                fields = {event.split(".", 1)[1]} if "." in event else fields
            change = Change(event_id=f"{sender['webhook_id']}:{record['id']}:{version}", object=entity, record_id=str(record["id"]),
                            occurred_at=parse_time(stamp) or datetime.now(timezone.utc), attributes=record,
                            action=action, changed=fields)
            # An update carries only the changed fields: with API access, the worker reads the whole record.
            read_back = action == "update" and settings.espocrm_url and settings.espocrm_api_token
            changes.append(Deferred(change) if read_back else change)
        return changes

    def read_record(self, settings, change: Change) -> tuple[dict, datetime | None] | None:
        """The record through EspoCRM's REST API (GET api/v1/<Entity>/<id>, X-Api-Key), as of its modifiedAt."""
        url = f"{settings.espocrm_url.rstrip('/')}/api/v1/{quote(change.object, safe='')}/{quote(change.record_id, safe='')}"
        try:
            response = requests.get(url, headers={"X-Api-Key": settings.espocrm_api_token, "Accept": "application/json"},
                                    timeout=10, allow_redirects=False)
        except requests.RequestException as exc:
            raise RetryableError(f"EspoCRM unreachable reading {change.object} {change.record_id}: {type(exc).__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise PermanentError(f"EspoCRM refused to read {change.object} {change.record_id} ({response.status_code}): check "
                                 "KEYBRIDGE_ESPOCRM_API_TOKEN (an API user's key with read access to it) and KEYBRIDGE_ESPOCRM_URL.")
        if response.status_code != 200:
            raise RetryableError(f"EspoCRM answered {response.status_code} reading {change.object} {change.record_id}")
        record = response.json()
        return record, parse_time(record.get("modifiedAt"))
