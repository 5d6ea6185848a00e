"""Vendor dialects: ONE verify -> parse -> translate -> store step for every CRM's own webhooks.

A dialect (one small module per vendor) declares its `key`, how a delivery is
authenticated (`authenticate`) and how it turns into `Change`s (one changed CRM
record each, with the vendor's own event id and occurrence time) or `Deferred`
items (HubSpot's thin events: stored as they are, a job fetches the record).
Everything after that is shared here:

- which CRM field means what comes from the vendor's mapping file
  (realm-config/vendors/<key>.json, overridable in KEYBRIDGE_VENDOR_MAPPING_DIR);
- each change becomes native events (account.upserted, contact.upserted,
  contact.invite_requested, lead.invite_requested), validated with the native schemas;
- every event of one delivery is stored in one transaction through adapter/inbox.py,
  with an id derived from the vendor's event id (a redelivery is a duplicate) and the
  envelope `timestamp` = the vendor's occurrence time (the newest state wins).

Answers: 200 with what was accepted, duplicate or ignored (an unhandled but real
event answers 200 and is logged, so the CRM does not retry it forever); 401 for a
delivery that is not authentic or older than KEYBRIDGE_VENDOR_MAX_AGE_SECONDS
(nothing stored); 400 for a body that is not the vendor's format; 422 when a full
record cannot make a valid native event (the errors name the field).
"""
from __future__ import annotations

import abc

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from flask import Blueprint, current_app, jsonify, request
from marshmallow import ValidationError

from .. import inbox, tasks
from ..errors import ApiError, PermanentError
from ..models import InboundEvent
from ..tasks import INBOUND_EVENT
from ..vendor_mappings import load_mapping
from .translation import Change, Ignored, iso, parse_time, translate

log = logging.getLogger(__name__)
bp = Blueprint("webhooks_vendors", __name__)


@dataclass
class Deferred:
    """A change that does not carry the whole record (HubSpot's thin events, EspoCRM's updates):
    stored as it came; the job `vendor_read` reads the record through the vendor's API
    (`Dialect.read_record`) and translates it then, so the webhook answers at once."""

    change: Change

    @property
    def event_id(self) -> str:
        return self.change.event_id

    @property
    def occurred_at(self) -> datetime:
        return self.change.occurred_at


@dataclass
class Outcome:
    accepted: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    ignored: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"status": "accepted" if self.accepted else ("duplicate" if self.duplicate else "ignored"),
                "accepted": self.accepted, "duplicate": self.duplicate, "ignored": self.ignored}


class Dialect(abc.ABC):
    """One CRM's own webhook format. Subclasses set `key`, `name` and implement the three steps."""

    key: str = ""
    name: str = ""

    @abc.abstractmethod
    def configured(self, settings) -> bool:
        """Whether the settings let this vendor's deliveries in (then its mapping must be readable)."""

    @abc.abstractmethod
    def authenticate(self, settings, req, body: bytes) -> dict:
        """Return what parsing needs to know about the sender; raise ApiError(401) when not authentic."""

    @abc.abstractmethod
    def parse(self, settings, req, body: bytes, sender: dict) -> list:
        """The delivery as Change / Deferred / Ignored items; raise ApiError(400) for a malformed body."""

    def answer(self, outcome: Outcome):
        """What the vendor expects once everything is stored."""
        return jsonify(outcome.as_json()), 200

    def read_record(self, settings, change: Change) -> tuple[dict, datetime | None] | None:
        """For a `Deferred` change: the whole record's attributes now, and the time they are as of;
        None when the record is gone. Raises RetryableError or PermanentError."""
        raise PermanentError(f"{self.name} cannot read records back; send whole records.")


_dialects: dict[str, Dialect] = {}


def register(cls: type[Dialect]) -> type[Dialect]:
    _dialects[cls.key] = cls()
    return cls


def keys() -> list[str]:
    """The vendors with a dialect, as in /webhooks/<vendor>."""
    return sorted(_dialects)


def get(key: str) -> Dialect:
    try:
        return _dialects[key]
    except KeyError:
        raise ApiError(404, f"No CRM dialect {key!r}; known: {', '.join(sorted(_dialects))}, or use /webhooks/crm.") from None


@bp.post("/webhooks/<vendor>")
def receive_vendor_delivery(vendor: str):
    dialect = get(vendor)
    kb = current_app.extensions["keybridge"]
    body = request.get_data(cache=False)
    sender = dialect.authenticate(kb.settings, request, body)
    items = dialect.parse(kb.settings, request, body, sender)
    outcome = store_delivery(kb, dialect.key, items)
    return dialect.answer(outcome)


def store_delivery(kb, vendor: str, items: list, check_age: bool = True) -> Outcome:
    """Translate, validate and store every item of one delivery in one transaction.

    Raises ApiError(401) for a stale item (unless `check_age` is off: a job translating what was
    accepted earlier) and ApiError(422) for an invalid one: then nothing is stored.
    """
    settings = kb.settings
    mapping = load_mapping(settings.vendor_mapping_dir, vendor)
    oldest = datetime.now(timezone.utc) - timedelta(seconds=settings.vendor_max_age_seconds)
    if not check_age:
        oldest = datetime.min.replace(tzinfo=timezone.utc)
    outcome, rows, errors = Outcome(), [], {}
    for index, item in enumerate(items):
        if isinstance(item, Ignored):
            log.info("%s event %s ignored: %s", vendor, item.event_id, item.reason)
            outcome.ignored.append({"id": item.event_id, "reason": item.reason})
            continue
        if item.occurred_at < oldest:
            raise ApiError(401, f"{vendor} event {item.event_id} happened at {iso(item.occurred_at)}, more than "
                                f"{settings.vendor_max_age_seconds} s ago (KEYBRIDGE_VENDOR_MAX_AGE_SECONDS): a stale or "
                                "replayed delivery is refused; nothing was stored.", {"occurred_at": ["Too old."]})
        if isinstance(item, Deferred):
            change = item.change
            rows.append((f"{vendor}:{item.event_id}"[:200], {
                "type": f"{vendor}.{change.object}.{change.action}", "timestamp": iso(change.occurred_at), "vendor": vendor,
                "data": {"vendor": vendor, "event_id": change.event_id, "object": change.object, "record_id": change.record_id,
                         "occurred_at": iso(change.occurred_at), "action": change.action, "attributes": change.attributes,
                         "changed": sorted(change.changed) if change.changed is not None else None}}, "vendor_read"))
            continue
        try:
            events = translate(item, mapping)
        except ValidationError as exc:
            errors[f"events[{index}]"] = exc.messages
            continue
        if not events:
            reason = f"{item.object} {item.action} means nothing to Keybridge with the {vendor} mapping"
            log.info("%s event %s ignored: %s", vendor, item.event_id, reason)
            outcome.ignored.append({"id": item.event_id, "reason": reason})
        for event_type, data in events:
            if isinstance(data, Ignored):
                log.info("%s event %s ignored: %s", vendor, item.event_id, data.reason)
                outcome.ignored.append({"id": item.event_id, "reason": data.reason})
                continue
            envelope = {"type": event_type, "timestamp": iso(item.occurred_at), "data": data,
                        "vendor": {"key": vendor, "event_id": item.event_id, "object": item.object, "record_id": item.record_id}}
            rows.append((native_event_id(vendor, item.event_id, event_type), envelope, INBOUND_EVENT))
    if errors:
        raise ApiError(422, f"The {vendor} delivery does not make valid Keybridge events; fix the CRM fields named in "
                            f"errors or the mapping (realm-config/vendors/{vendor}.json). Nothing was stored.", errors)
    for (row_id, _, _), status in zip(rows, inbox.store_events(kb.db, f"vendor:{vendor}", rows)):
        (outcome.accepted if status == "accepted" else outcome.duplicate).append(row_id)
    return outcome


@tasks.job("vendor_read", ordering_key=lambda data: f"{data['vendor']}:{data['object']}:{data['record_id']}")
def read_and_translate(kb, job) -> str:
    """A deferred vendor change (job.ref: its stored event): read the whole record through the vendor's API,
    translate and store its native events. One record's changes are read in the order they arrived.

    The record read is stamped with the time it is as of when that is later than the change, so the
    newest state wins even when an older change's read happens last; a read older than the change
    (the vendor's API lagging) keeps the delivered fields over it. Raises RetryableError or PermanentError.
    """
    with kb.db.session() as session:
        stored = session.get(InboundEvent, job.ref)
        if stored is None:
            raise PermanentError(f"Vendor event {job.ref} is missing from storage")
        data = dict(stored.payload["data"])
    dialect = get(data["vendor"])
    change = Change(event_id=data["event_id"], object=data["object"], record_id=data["record_id"],
                    occurred_at=parse_time(data["occurred_at"]), attributes=data["attributes"], action=data["action"],
                    changed=set(data["changed"]) if data["changed"] is not None else None)
    read = dialect.read_record(kb.settings, change)
    if read is None:
        log.info("%s %s %s is gone; event %s changes nothing", dialect.name, change.object, change.record_id, job.ref)
        return "gone"
    attributes, as_of = read
    if as_of is not None and as_of >= change.occurred_at:
        change.attributes, change.occurred_at = attributes, as_of  # the record now: newer than what was delivered
    else:
        change.attributes = {**attributes, **change.attributes}  # the API lags behind the delivery: the delivery wins
    try:
        outcome = store_delivery(kb, dialect.key, [change], check_age=False)
    except ApiError as exc:
        raise PermanentError(f"{exc.message} {exc.errors}") from None
    return f"accepted {len(outcome.accepted)}, duplicate {len(outcome.duplicate)}, ignored {len(outcome.ignored)}"


def native_event_id(vendor: str, event_id: str, event_type: str) -> str:
    """The inbox id of one translated event: stable per vendor event and native type (hashed when too long to store)."""
    plain = f"{vendor}:{event_id}:{event_type}"
    return plain if len(plain) <= 200 else f"{vendor}:{hashlib.sha256(plain.encode()).hexdigest()}:{event_type}"


def check_mappings(settings) -> None:
    """Read the mapping of every vendor that is configured once at start-up, so a missing or broken
    file fails loudly (ValueError naming it)."""
    for dialect in _dialects.values():
        if dialect.configured(settings):
            load_mapping(settings.vendor_mapping_dir, dialect.key)


def occurred(value, what: str) -> datetime:
    """The vendor's occurrence time, or a 400 naming the field."""
    parsed = parse_time(value)
    if parsed is None:
        raise ApiError(400, f"{what} is missing or not a time; the CRM must send when the change happened.", {what: ["Not a time."]})
    return parsed


def constant_time_in(candidate: str | None, secrets: list[str]) -> bool:
    """Whether `candidate` equals one of `secrets`, compared in constant time."""
    if not candidate:
        return False
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(candidate.encode(), secret.encode())
    return found


def json_body(body: bytes, vendor: str):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The {vendor} delivery is not valid JSON: {exc}.") from None
