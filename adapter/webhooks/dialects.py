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

import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request
from marshmallow import EXCLUDE, ValidationError

from .. import inbox
from ..config import REPO_ROOT
from ..errors import ApiError
from ..handlers import TASKS
from ..tasks import INBOUND_EVENT

log = logging.getLogger(__name__)
bp = Blueprint("webhooks_vendors", __name__)

DEFAULT_MAPPING_DIR = REPO_ROOT / "realm-config" / "vendors"
KINDS = ("lead", "contact", "account")  # the order a record's kind is decided in (lead's `when` first)


@dataclass
class Change:
    """One changed CRM record, as the vendor told it."""

    event_id: str                 # the vendor's stable id for this change (same on every redelivery)
    object: str                   # the vendor's object name: contact, Contact, company, person ...
    record_id: str
    occurred_at: datetime         # when it changed in the CRM (aware)
    attributes: dict              # field -> plain value (the dialect flattens vendor value types)
    action: str = "update"        # create | update | delete
    changed: set[str] | None = None  # fields this change touched; None when the vendor does not say


@dataclass
class Deferred:
    """An event stored as it came; the job `job_kind` turns it into native events later."""

    event_id: str
    type: str
    payload: dict
    occurred_at: datetime
    job_kind: str


@dataclass
class Ignored:
    event_id: str
    reason: str


@dataclass
class Outcome:
    accepted: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    ignored: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"status": "accepted" if self.accepted else ("duplicate" if self.duplicate else "ignored"),
                "accepted": self.accepted, "duplicate": self.duplicate, "ignored": self.ignored}


class Dialect:
    """One CRM's own webhook format. Subclasses set `key`, `name` and implement the two steps."""

    key: str = ""
    name: str = ""

    def authenticate(self, settings, req, body: bytes) -> dict:
        """Return what parsing needs to know about the sender; raise ApiError(401) when not authentic."""
        raise NotImplementedError

    def parse(self, settings, req, body: bytes, sender: dict) -> list:
        """The delivery as Change / Deferred / Ignored items; raise ApiError(400) for a malformed body."""
        raise NotImplementedError

    def answer(self, outcome: Outcome):
        """What the vendor expects once everything is stored."""
        return jsonify(outcome.as_json()), 200


_dialects: dict[str, Dialect] = {}


def register(cls: type[Dialect]) -> type[Dialect]:
    _dialects[cls.key] = cls()
    return cls


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
            rows.append((f"{vendor}:{item.event_id}", {"type": item.type, "timestamp": iso(item.occurred_at),
                                                      "data": item.payload, "vendor": vendor}, item.job_kind))
            continue
        try:
            events = translate(vendor, item, mapping)
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


def native_event_id(vendor: str, event_id: str, event_type: str) -> str:
    """The inbox id of one translated event: stable per vendor event and native type."""
    return f"{vendor}:{event_id}:{event_type}"[:200]


# --- translation -------------------------------------------------------------------------------

def translate(vendor: str, change: Change, mapping: dict) -> list[tuple[str, dict | Ignored]]:
    """Native (type, data) pairs for one change, following the vendor's mapping; raises ValidationError."""
    kind = kind_of(change, mapping)
    if kind is None:
        return []
    spec = mapping["kinds"][kind]
    if change.action == "delete":
        return [(f"{kind}.deleted", Ignored(change.event_id, f"a deleted {kind} changes nothing in Keycloak; mark it left instead"))]
    values = {native: value_at(change.attributes, path) for native, path in spec.get("fields", {}).items()}
    id_field = f"{kind}_id"
    values[id_field] = values.get(id_field) or change.record_id
    partial = change.changed is not None and change.action != "create"
    out = []
    if kind == "account":
        out.append(_event("account.upserted", _account_data(values, spec, change), partial, change))
    elif kind == "contact":
        left = matches(change.attributes, spec.get("left"))
        if not (partial and values.get("email") is None and not _touched(change, spec, "left")):
            out.append(_event("contact.upserted", _contact_data(values, spec, left), partial, change))
        if not left and matches(change.attributes, spec.get("invite")) and _touched(change, spec, "invite"):
            invite = _contact_data(values, spec, left)
            invite.pop("status"), invite.pop("phone")
            invite["org_admin"] = matches(change.attributes, spec.get("org_admin"))
            out.append(_event("contact.invite_requested", invite, partial, change))
    elif kind == "lead" and matches(change.attributes, spec.get("invite")) and _touched(change, spec, "invite"):
        data = _clean({k: values.get(k) for k in ("lead_id", "email", "first_name", "last_name", "company")})
        out.append(_event("lead.invite_requested", data, partial, change))
    return [pair for pair in out if pair is not None]


def kind_of(change: Change, mapping: dict) -> str | None:
    for kind in KINDS:
        spec = mapping["kinds"].get(kind)
        if not spec or change.object.lower() not in {o.lower() for o in spec.get("objects", [])}:
            continue
        if "when" in spec and not matches(change.attributes, spec["when"]):
            continue
        return kind
    return None


def _touched(change: Change, spec: dict, rule: str) -> bool:
    """Did this change touch the field of `rule` (unknown counts as touched; a creation always does)?"""
    path = (spec.get(rule) or {}).get("field")
    if change.changed is None or change.action == "create" or not path:
        return True
    return any(c == path or path.startswith(c + ".") or c.startswith(path + ".") for c in change.changed)


def _event(event_type: str, data: dict, partial: bool, change: Change):
    """Validate with the native schema; a partial update lacking a required field is ignored, not refused."""
    try:
        TASKS.event(event_type).schema(unknown=EXCLUDE).load(data)
    except ValidationError as exc:
        missing = [f for f, msgs in exc.messages.items() if isinstance(msgs, list) and "Missing data for required field." in msgs]
        if partial and missing:
            return (event_type, Ignored(change.event_id, f"{event_type}: this update does not carry {', '.join(sorted(missing))}; "
                                                         "send the whole record (e.g. a post-image) to apply it"))
        raise ValidationError({event_type: exc.messages}) from None
    return (event_type, data)


def _contact_data(values: dict, spec: dict, left: bool) -> dict:
    data = {k: values.get(k) for k in ("contact_id", "email", "account_id", "first_name", "last_name", "phone")}
    data = _clean(data)
    data.setdefault("phone", None)
    roles = split_list(values.get("roles"), spec.get("roles_separator", ";"))
    if roles is not None:
        data["roles"] = roles
    data["status"] = "left" if left else "active"
    return data


def _account_data(values: dict, spec: dict, change: Change) -> dict:
    data = _clean({"account_id": values.get("account_id"), "name": values.get("name")})
    domains = [d for d in (domain_of(x) for x in split_list(values.get("domains"), spec.get("domains_separator", ";")) or []) if d]
    if domains:
        data["domains"] = domains
    contract_spec = spec.get("contract")
    if contract_spec:
        raw = value_at(change.attributes, contract_spec["status"]["field"])
        touched = change.changed is None or change.action == "create" or _touched(change, {"c": contract_spec["status"]}, "c")
        if raw is not None or touched:
            table = {str(k).lower(): v for k, v in contract_spec["status"].get("map", {}).items()}
            status = table.get(str(raw).lower(), contract_spec["status"].get("default", "none")) if raw is not None else contract_spec["status"].get("default", "none")
            contract = {"status": status}
            for native in ("starts_at", "ends_at"):
                if contract_spec.get(native):
                    contract[native] = to_iso(value_at(change.attributes, contract_spec[native]), end_of_day=native == "ends_at")
            data["contract"] = contract
    return data


def _clean(data: dict) -> dict:
    """Drop empty values; ids and names as trimmed strings (CRMs send numeric ids as numbers)."""
    return {k: (str(v).strip() if isinstance(v, (str, int, float)) and not isinstance(v, bool) else v)
            for k, v in data.items() if v not in (None, "")}


# --- mapping -------------------------------------------------------------------------------------

def check_mappings(settings) -> None:
    """Read every vendor's mapping once at start-up, so a broken file fails loudly (ValueError naming it)."""
    for vendor in _dialects:
        load_mapping(settings.vendor_mapping_dir, vendor)


def load_mapping(override_dir: str, vendor: str) -> dict:
    """The vendor's mapping: KEYBRIDGE_VENDOR_MAPPING_DIR/<vendor>.json if present, else the default."""
    path = Path(override_dir) / f"{vendor}.json" if override_dir else None
    if path is None or not path.exists():
        path = DEFAULT_MAPPING_DIR / f"{vendor}.json"
    return _read_mapping(str(path), path.stat().st_mtime if path.exists() else 0)


@lru_cache(maxsize=32)
def _read_mapping(path: str, _mtime: float) -> dict:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"Vendor mapping {path} not found; copy one from realm-config/vendors/") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"Vendor mapping {path} is not valid JSON ({exc}); fix the file") from None
    unknown = set(raw.get("kinds", {})) - set(KINDS)
    if unknown:
        raise ValueError(f"{path}: unknown kinds {sorted(unknown)}; use account, contact and lead")
    for kind, spec in raw.get("kinds", {}).items():
        if not spec.get("objects"):
            raise ValueError(f"{path}: kinds.{kind}.objects must list the CRM objects that are {kind}s")
        for rule in ("when", "left", "invite", "org_admin"):
            if rule in spec and not (isinstance(spec[rule], dict) and spec[rule].get("field")):
                raise ValueError(f"{path}: kinds.{kind}.{rule} needs a \"field\" (and \"values\")")
    return raw


def matches(attributes: dict, rule: dict | None) -> bool:
    """A rule {"field", "values"} (case-insensitive; booleans compare as true/false) holds for these attributes."""
    if not rule:
        return False
    value = value_at(attributes, rule["field"])
    if value is None:
        return False
    wanted = {str(v).lower() for v in rule.get("values", ["true"])}
    candidates = value if isinstance(value, list) else split_list(value, rule["separator"]) if rule.get("separator") else [value]
    return any((str(c).lower() if not isinstance(c, bool) else str(c).lower()) in wanted for c in candidates)


def value_at(attributes: dict, path: str | None):
    """attributes["a"]["b"] for "a.b"; list items by index ("emails.0.value"); None when absent."""
    if not path:
        return None
    value = attributes
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
        if value is None:
            return None
    return value


def split_list(value, separator: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [p.strip() for p in str(value).split(separator) if p.strip()]


def domain_of(value: str) -> str | None:
    """"https://www.acme.example/about" -> "acme.example"."""
    host = re.sub(r"^[a-z]+://", "", str(value).strip().lower()).split("/")[0].split(":")[0]
    host = host.removeprefix("www.")
    return host if re.fullmatch(r"[a-z0-9.-]+\.[a-z]{2,}", host) else None


# --- time ----------------------------------------------------------------------------------------

def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(value) -> datetime | None:
    """Unix seconds or milliseconds, ISO-8601, "YYYY-MM-DD HH:MM:SS" (UTC) or Microsoft's /Date(ms)/."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\d{9,13}", value)):
        number = float(value)
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, tz=timezone.utc)
    text = str(value).strip()
    ms = re.fullmatch(r"/Date\((-?\d+)([+-]\d{4})?\)/", text)
    if ms:
        return datetime.fromtimestamp(int(ms.group(1)) / 1000, tz=timezone.utc)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def to_iso(value, end_of_day: bool = False) -> str | None:
    """A CRM date or time as ISO-8601 UTC; a bare date means its start (or its end for an end date)."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        day = date.fromisoformat(value.strip())
        return f"{day.isoformat()}T{'23:59:59' if end_of_day else '00:00:00'}Z"
    parsed = parse_time(value)
    return iso(parsed) if parsed else str(value)


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
