"""Which CRM field means what: the vendor mapping files, and one changed CRM record turned into native events.

A mapping (realm-config/vendors/<vendor>.json, or KEYBRIDGE_VENDOR_MAPPING_DIR/<vendor>.json)
declares per kind (lead, contact, account) the vendor objects it covers, `fields`
(native field -> vendor field path), and rules {"field", "values"}: `when` (lead only),
`invite`, `left`, `org_admin`; roles are split on `roles_separator`; an account's
`contract.status` maps CRM values to the contract's statuses. See README "CRM vendors".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone

from marshmallow import EXCLUDE, ValidationError

from ..handlers import TASKS
from ..vendor_mappings import KINDS


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
class Ignored:
    event_id: str
    reason: str


def translate(change: Change, mapping: dict) -> list[tuple[str, dict | Ignored]]:
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
            del invite["status"], invite["phone"]
            invite["org_admin"] = matches(change.attributes, spec.get("org_admin"))
            out.append(_event("contact.invite_requested", invite, partial, change))
    elif kind == "lead" and matches(change.attributes, spec.get("invite")) and _touched(change, spec, "invite"):
        data = _clean({k: values.get(k) for k in ("lead_id", "email", "first_name", "last_name", "company")})
        out.append(_event("lead.invite_requested", data, partial, change))
    return out


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


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(value) -> datetime | None:
    """Unix seconds or milliseconds, ISO-8601, "YYYY-MM-DD HH:MM:SS" (UTC) or Microsoft's /Date(ms)/."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
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
