"""`POST /webhooks/hubspot`: HubSpot app webhooks (signature v3).

HubSpot sends a JSON array of up to 100 thin events (an object id and, for a
property change, the one property that changed), signed with
`X-HubSpot-Signature-v3` = base64(HMAC-SHA256(client secret, method + URI + body +
X-HubSpot-Request-Timestamp)); a timestamp more than 5 minutes away is refused.
The thin events are stored as they are (the webhook answers at once); the job
`vendor_read` reads the whole record through the HubSpot API (`read_record`) and translates it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from datetime import datetime
from urllib.parse import unquote

from ..connectors.hubspot import HubSpotApi, NotFound
from ..errors import ApiError
from ..vendor_mappings import load_mapping
from . import dialects
from .dialects import Deferred, Dialect, occurred
from .translation import Change, Ignored, parse_time

log = logging.getLogger(__name__)

TOLERANCE_MS = 5 * 60 * 1000
MAX_EVENTS = 100
OBJECT_TYPES = {"0-1": "contact", "0-2": "company"}  # objectTypeId of the generic object.* subscriptions
HANDLED = {"creation", "propertyChange", "deletion", "restore"}


@dialects.register
class HubSpot(Dialect):
    key = "hubspot"
    name = "HubSpot app webhooks (v3 signatures)"

    def configured(self, settings) -> bool:
        return bool(settings.hubspot_client_secret)

    def authenticate(self, settings, req, body: bytes) -> dict:
        signature = req.headers.get("X-HubSpot-Signature-v3")
        timestamp = req.headers.get("X-HubSpot-Request-Timestamp")
        missing = {h: ["Missing header."] for h, v in (("X-HubSpot-Signature-v3", signature), ("X-HubSpot-Request-Timestamp", timestamp)) if not v}
        if missing:
            raise ApiError(401, "Not a signed HubSpot delivery: the app's webhooks send X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp.", missing)
        if not settings.hubspot_client_secret:
            raise ApiError(401, "KEYBRIDGE_HUBSPOT_CLIENT_SECRET is not set (the app's client secret); every HubSpot delivery is refused until it is.")
        try:
            stamp = int(timestamp)
        except ValueError:
            raise ApiError(401, "X-HubSpot-Request-Timestamp must be Unix milliseconds.", {"X-HubSpot-Request-Timestamp": ["Not an integer."]}) from None
        if abs(time.time() * 1000 - stamp) > TOLERANCE_MS:
            raise ApiError(401, "X-HubSpot-Request-Timestamp is more than 5 minutes away from the adapter's clock: a stale or replayed delivery is refused.",
                           {"X-HubSpot-Request-Timestamp": ["Outside the 5-minute window."]})
        uri = settings.hubspot_webhook_url or req.url
        expected = v3_signature(settings.hubspot_client_secret, req.method, uri, body, timestamp)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise ApiError(401, "X-HubSpot-Signature-v3 does not match: check KEYBRIDGE_HUBSPOT_CLIENT_SECRET (the app's client secret) and, "
                                "behind a proxy, KEYBRIDGE_HUBSPOT_WEBHOOK_URL (the target URL exactly as configured in HubSpot).",
                           {"X-HubSpot-Signature-v3": ["No valid signature."]})
        return {}

    def parse(self, settings, req, body: bytes, sender: dict) -> list:
        events = dialects.json_body(body, "HubSpot")
        if not isinstance(events, list):
            raise ApiError(400, "A HubSpot delivery is a JSON array of events.")
        if len(events) > MAX_EVENTS:
            raise ApiError(400, f"HubSpot sends at most {MAX_EVENTS} events per delivery; this one has {len(events)}.")
        items = []
        for i, event in enumerate(events):
            if not isinstance(event, dict) or "eventId" not in event or "subscriptionType" not in event:
                raise ApiError(400, f"Event {i} is not a HubSpot webhook event (eventId, subscriptionType, objectId, occurredAt).",
                               {f"[{i}]": ["Needs eventId and subscriptionType."]})
            items.append(self._item(event, i))
        return items

    def _item(self, event: dict, index: int):
        event_id = str(event["eventId"])
        obj, _, action = str(event["subscriptionType"]).partition(".")
        if obj == "object":
            obj = OBJECT_TYPES.get(str(event.get("objectTypeId")), f"object {event.get('objectTypeId')}")
        if obj not in ("contact", "company") or action not in HANDLED:
            return Ignored(event_id, f"subscription {event['subscriptionType']} is not used by Keybridge")
        if event.get("objectId") is None:
            raise ApiError(400, f"Event {index} has no objectId.", {f"[{index}].objectId": ["Missing."]})
        when = occurred(event.get("occurredAt"), f"[{index}].occurredAt")
        if action == "deletion":
            return Ignored(event_id, f"a deleted HubSpot {obj} changes nothing in Keycloak; set the contact's status to left instead")
        return Deferred(Change(event_id=event_id, object=obj, record_id=str(event["objectId"]), occurred_at=when, attributes={},
                               action="create" if action == "creation" else "update",
                               changed={event["propertyName"]} if event.get("propertyName") else None))

    def read_record(self, settings, change: Change) -> tuple[dict, datetime | None] | None:
        """The contact or company with every property the mapping reads (HubSpot API), as of its updatedAt."""
        properties = fields_for(load_mapping(settings.vendor_mapping_dir, self.key), change.object)
        try:
            record = _read(settings, change.object, change.record_id, properties, change.occurred_at)
        except NotFound:
            return None
        attributes = dict(record.get("properties") or {})
        attributes.setdefault("hs_object_id", change.record_id)
        return attributes, parse_time(record.get("updated_at"))


# HubSpot decodes exactly these escapes in the URI before signing (its v3 validation guide).
_URI_ESCAPES = re.compile("%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)


def v3_signature(client_secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot's v3 signature: base64 HMAC-SHA256 of method + URI + body + timestamp."""
    uri = _URI_ESCAPES.sub(lambda m: unquote(m.group(0)), uri)
    source = f"{method}{uri}{body.decode('utf-8')}{timestamp}"
    return base64.b64encode(hmac.new(client_secret.encode(), source.encode(), hashlib.sha256).digest()).decode()


_recent: OrderedDict = OrderedDict()  # (API, object, id, properties) -> the record last read by this process
_RECENT_MAX = 1000


def _read(settings, obj: str, object_id: str, properties: list[str], since: datetime) -> dict:
    """The record, read through the HubSpot API unless this process read it already as of `since` or later.

    HubSpot sends one event per changed property: an edit of five properties is five events, and
    the first read already shows all five (its updatedAt is not older than their occurredAt).
    """
    key = (settings.hubspot_api_url, obj, object_id, tuple(properties))
    cached = _recent.get(key)
    as_of = parse_time(cached.get("updated_at")) if cached is not None else None
    if as_of is not None and as_of >= since:
        return cached
    record = HubSpotApi.from_settings(settings).read(obj, object_id, properties)
    _recent[key] = record
    _recent.move_to_end(key)
    while len(_recent) > _RECENT_MAX:
        _recent.popitem(last=False)
    return record


def fields_for(mapping: dict, obj: str) -> list[str]:
    """Every HubSpot property the mapping reads for this object type."""
    names: set[str] = set()
    for spec in mapping["kinds"].values():
        if obj not in [o.lower() for o in spec.get("objects", [])]:
            continue
        names |= {p.split(".")[0] for p in spec.get("fields", {}).values()}
        for rule in ("when", "left", "invite", "org_admin"):
            if spec.get(rule):
                names.add(spec[rule]["field"])
        contract = spec.get("contract") or {}
        names |= {contract[k] for k in ("starts_at", "ends_at") if contract.get(k)}
        if contract.get("status"):
            names.add(contract["status"]["field"])
    return sorted(names)
