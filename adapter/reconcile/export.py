"""A CRM export of accounts and contacts, read into the shapes `account.upserted` and
`contact.upserted` carry, with every problem named by file, row and field.

Accepted shapes (see README, "Reconciliation"):

- JSON: an object with `accounts` (or `companies`) and `contacts` arrays, and optionally
  `exported_at`; or an array (or `records`/`results` array) of records, each naming its
  type (`record_type`, `type`, `object`, or Salesforce's `attributes.type`).
  Records are either in the contract's own shape (`contract: {status, ends_at}`,
  `admin_contact: {...}`) or flat (`contract_status`, `admin_contact_email`, ...);
  HubSpot's `properties: {...}` is read as if its fields were at the top.
- CSV: one file with a record-type column, or one file per record type (the header
  tells which: a contact file has an email column). Lists (`domains`, `roles`) are
  separated by `;`. An empty cell is "not given", except `roles`, where it is "none".

Column names are compared without case, spaces, dots, dashes or underscores, so
`contact_id`, `Contact ID` and `ContactId` are one column; `FIELD_NAMES` lists the
names of the common CRMs' exports that are understood as each field.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone

from marshmallow import ValidationError

from ..events import AccountUpsertedSchema, ContactUpsertedSchema

ACCOUNT, CONTACT = "account", "contact"

# Accepted spellings per field (after `_key`: lower case, only letters and digits), first match wins.
MODIFIED_AT = ("modifiedat", "updatedat", "lastmodifieddate", "lastmodified", "hslastmodifieddate", "modifiedon",
               "systemmodstamp", "lastmodifiedat")
FIELD_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    ACCOUNT: {
        "account_id": ("accountid", "id", "hsobjectid", "companyid", "recordid"),
        "name": ("name", "accountname", "companyname"),
        "domains": ("domains", "domain"),
        "contract_status": ("contractstatus",),
        "contract_starts_at": ("contractstartsat", "contractstartdate", "contractstart"),
        "contract_ends_at": ("contractendsat", "contractenddate", "contractend"),
        "admin_contact_id": ("admincontactid", "admincontactcontactid"),
        "admin_contact_email": ("admincontactemail",),
        "admin_contact_first_name": ("admincontactfirstname",),
        "admin_contact_last_name": ("admincontactlastname",),
        "modified_at": MODIFIED_AT,
    },
    CONTACT: {
        "contact_id": ("contactid", "id", "hsobjectid", "recordid"),
        "email": ("email", "emailaddress", "emailaddress1"),
        "account_id": ("accountid", "associatedcompanyid", "companyid", "parentcustomerid"),
        "first_name": ("firstname", "givenname"),
        "last_name": ("lastname", "familyname", "surname"),
        "phone": ("phone", "phonenumber", "telephone1"),
        "roles": ("roles", "role", "crmroles"),
        "status": ("status", "contactstatus"),
        "modified_at": MODIFIED_AT,
    },
}
RECORD_TYPE_KEYS = ("recordtype", "type", "object", "objecttype", "attributestype", "entity", "kind")
RECORD_TYPES = {"account": ACCOUNT, "accounts": ACCOUNT, "company": ACCOUNT, "companies": ACCOUNT,
                "organization": ACCOUNT, "organisation": ACCOUNT,
                "contact": CONTACT, "contacts": CONTACT, "person": CONTACT, "people": CONTACT}
EXPORTED_AT_KEYS = ("exportedat", "generatedat", "createdat", "exportdate")
CONTACT_STATUSES = {"active": "active", "left": "left"}
MAX_PROBLEMS = 50


_NOT_KEY = re.compile(r"[^a-z0-9]")


@functools.lru_cache(maxsize=4096)
def _key(name) -> str:
    """A column or field name without case, spaces or punctuation (cached: the same few names on every row)."""
    return _NOT_KEY.sub("", str(name).lower())


class ExportError(ValueError):
    """The export cannot be used; `problems` lists each as (where, field, message with the fix)."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        lines = [f"{where}, {fld}: {msg}" if fld else f"{where}: {msg}" for where, fld, msg in problems[:MAX_PROBLEMS]]
        more = len(problems) - MAX_PROBLEMS
        if more > 0:
            lines.append(f"... and {more} more")
        super().__init__("The export has errors:\n" + "\n".join(lines))

    def as_fields(self) -> dict[str, list[str]]:
        """{"<where>.<field>": [message]}: the error body's `errors`."""
        out: dict[str, list[str]] = {}
        for where, fld, msg in self.problems[:MAX_PROBLEMS]:
            out.setdefault(f"{where}.{fld}" if fld else where, []).append(msg)
        return out


@dataclass(slots=True)
class AccountRecord:
    """An account as the export states it; `data` is its `account.upserted` body (JSON-ready)."""

    account_id: str
    data: dict
    modified_at: datetime | None
    where: str


@dataclass(slots=True)
class ContactRecord:
    """A contact as the export states it, in the fields the drift needs, kept small (100,000s of them)."""

    contact_id: str
    email: str
    account_id: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    roles: tuple[str, ...] | None  # None: the export says nothing about roles
    status: str
    modified_at: datetime | None
    where: str
    seen: bool = False  # set while Keycloak's users are read

    def upsert_data(self) -> dict:
        """The `contact.upserted` body (JSON-ready)."""
        data = {"contact_id": self.contact_id, "email": self.email, "status": self.status}
        for name in ("account_id", "first_name", "last_name", "phone"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.roles is not None:
            data["roles"] = list(self.roles)
        return data


@dataclass
class Export:
    """Accounts and contacts by CRM id. `has_accounts` / `has_contacts` say whether the export
    holds that record type at all (a contacts-only export says nothing about organizations)."""

    accounts: dict[str, AccountRecord] = field(default_factory=dict)
    contacts: dict[str, ContactRecord] = field(default_factory=dict)
    exported_at: datetime | None = None
    has_accounts: bool = False
    has_contacts: bool = False
    sources: list[str] = field(default_factory=list)

    def time_of(self, record) -> datetime:
        """The CRM time a record's state is from: its own modification time, else the export's."""
        return record.modified_at or self.exported_at


# -- values ---------------------------------------------------------------------------------


def parse_time(value, end_of_day: bool = False) -> datetime:
    """ISO 8601 with a zone (`Z`, `+00:00`, `+0000`), a date (start, or end, of that day in UTC),
    or Unix seconds/milliseconds; raises ValueError saying how to write it."""
    try:
        return _parse_time(value, end_of_day)
    except (OverflowError, OSError):
        raise ValueError(f"{value!r} is out of range; write it as ISO 8601, e.g. 2026-11-20T10:00:00Z") from None


def _parse_time(value, end_of_day: bool) -> datetime:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a date and time; write it as ISO 8601, e.g. 2026-11-20T10:00:00Z")
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\d{9,13}", value.strip())):
        number = float(value)
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, timezone.utc)
    text = str(value).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return datetime.combine(date.fromisoformat(text), time(23, 59, 59) if end_of_day else time(0), timezone.utc)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date and time; write it as ISO 8601, e.g. 2026-11-20T10:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add one, e.g. {text}Z for UTC")
    return parsed.astimezone(timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _split(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(";") if part.strip()]


def _flatten(record: dict, prefix: str = "", depth: int = 0) -> dict[str, object]:
    """{"contract": {"status": x}} -> {"contractstatus": x}; `properties`/`fields` are merged in.
    Objects nested deeper than three levels hold nothing an export needs and are skipped."""
    flat: dict[str, object] = {}
    for name, value in record.items():
        if isinstance(value, dict):
            if depth < 3:
                inner = "" if _key(name) in ("properties", "fields") and not prefix else prefix + _key(name)
                flat.update(_flatten(value, inner, depth + 1))
        else:
            flat.setdefault(prefix + _key(name), value)
    return flat


def _pick(flat: dict, names: tuple[str, ...]):
    """The first given value among these spellings: (value, spelling) or (None, None)."""
    for name in names:
        value = flat.get(name)
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        return (value.strip() if isinstance(value, str) else value), name
    return None, None


# -- records --------------------------------------------------------------------------------


def _schema_problems(where: str, messages, prefix: str = "") -> list[tuple[str, str, str]]:
    problems = []
    for name, msgs in messages.items():
        if isinstance(msgs, dict):
            if all(isinstance(k, int) or str(k).isdigit() for k in msgs):
                msgs = [m for inner in msgs.values() for m in (inner if isinstance(inner, list) else [inner])]
            else:
                problems.extend(_schema_problems(where, msgs, f"{prefix}{name}."))
                continue
        for msg in msgs if isinstance(msgs, list) else [msgs]:
            problems.append((where, f"{prefix}{name}", _with_fix(f"{prefix}{name}", str(msg))))
    return problems


FIXES = {
    "email": "give the contact's email address, e.g. jane@acme.example",
    "contract.status": "use one of active, suspended, expired, none",
    "status": "use active or left",
    "domains": "give domain names separated by ';', e.g. acme.example;acme.co.uk",
}


def _with_fix(name: str, message: str) -> str:
    if message == "Missing data for required field.":
        return f"missing; add a {name} column (or field) with a value in every record of this type"
    fix = FIXES.get(name)
    return f"{message} Fix: {fix}." if fix else message


def read_account(flat: dict, where: str) -> tuple[AccountRecord | None, list]:
    names = FIELD_NAMES[ACCOUNT]
    problems: list[tuple[str, str, str]] = []
    value = {name: _pick(flat, spellings)[0] for name, spellings in names.items()}
    data: dict = {}
    if value["account_id"] is None:
        problems.append((where, "account_id", "missing; every account needs its CRM id (column account_id or Id)"))
    else:
        data["account_id"] = str(value["account_id"])
    if value["name"] is not None:
        data["name"] = str(value["name"])
    if value["domains"] is not None:
        data["domains"] = [d.lower() for d in _split(value["domains"])]
    if any(value[f"contract_{part}"] is not None for part in ("status", "starts_at", "ends_at")):
        if value["contract_status"] is None:
            problems.append((where, "contract_status", "missing while the contract has dates; use active, suspended, expired or none"))
        contract: dict = {"status": str(value["contract_status"] or "none").lower()}
        for part, end in (("starts_at", False), ("ends_at", True)):
            raw = value[f"contract_{part}"]
            if raw is not None:
                try:
                    contract[part] = iso(parse_time(raw, end_of_day=end))
                except ValueError as exc:
                    problems.append((where, f"contract_{part}", str(exc)))
        data["contract"] = contract
    if value["admin_contact_id"] is not None or value["admin_contact_email"] is not None:
        admin = {"contact_id": value["admin_contact_id"], "email": value["admin_contact_email"]}
        for part in ("first_name", "last_name"):
            if value[f"admin_contact_{part}"] is not None:
                admin[part] = value[f"admin_contact_{part}"]
        data["admin_contact"] = {k: str(v) for k, v in admin.items() if v is not None}
    modified_at = _modified_at(value["modified_at"], where, problems)
    if not problems:
        try:
            AccountUpsertedSchema().load(data)
        except ValidationError as exc:
            problems.extend(_schema_problems(where, exc.messages))
    if problems:
        return None, problems
    return AccountRecord(data["account_id"], data, modified_at, where), []


_CONTACT_SCHEMA = ContactUpsertedSchema()


def read_contact(flat: dict, where: str, roles_column: bool) -> tuple[ContactRecord | None, list]:
    names = FIELD_NAMES[CONTACT]
    problems: list[tuple[str, str, str]] = []
    value = {name: _pick(flat, spellings)[0] for name, spellings in names.items()}
    status = str(value["status"]).strip().lower() if value["status"] is not None else "active"
    if status not in CONTACT_STATUSES:
        problems.append((where, "status", f"{value['status']!r} is not a contact status; use active or left"))
        status = "active"
    roles = tuple(_split(value["roles"])) if value["roles"] is not None else (() if roles_column else None)
    text = {k: (str(value[k]) if value[k] is not None else None)
            for k in ("contact_id", "email", "account_id", "first_name", "last_name", "phone")}
    if text["email"]:
        text["email"] = text["email"].lower()
    data = {k: v for k, v in text.items() if v is not None}
    data["status"] = status
    if roles is not None:
        data["roles"] = list(roles)
    modified_at = _modified_at(value["modified_at"], where, problems)
    try:
        _CONTACT_SCHEMA.load(data)
    except ValidationError as exc:
        problems.extend(_schema_problems(where, exc.messages))
    if problems:
        return None, problems
    return ContactRecord(text["contact_id"], text["email"], text["account_id"], text["first_name"], text["last_name"],
                         text["phone"], roles, status, modified_at, where), []


def _modified_at(raw, where: str, problems: list) -> datetime | None:
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError as exc:
        problems.append((where, "modified_at", str(exc)))
        return None


def record_type(flat: dict, default: str | None, where: str) -> tuple[str | None, list]:
    raw, _ = _pick(flat, RECORD_TYPE_KEYS)
    if raw is None:
        if default:
            return default, []
        return None, [(where, "record_type", "missing; add a record_type column (account or contact), "
                       "or give accounts and contacts in separate files or arrays")]
    kind = RECORD_TYPES.get(_key(raw))
    if kind is None:
        return None, [(where, "record_type", f"{raw!r} is neither an account nor a contact; use account or contact")]
    return kind, []


# -- files ----------------------------------------------------------------------------------


class _Reader:
    """Collects records and problems across the files of one export."""

    def __init__(self):
        self.export = Export()
        self.problems: list[tuple[str, str, str]] = []

    def add(self, kind: str, flat: dict, where: str, roles_column: bool) -> None:
        if kind == ACCOUNT:
            self.export.has_accounts = True
            rec, problems = read_account(flat, where)
            target = self.export.accounts
            key = rec.account_id if rec else None
        else:
            self.export.has_contacts = True
            rec, problems = read_contact(flat, where, roles_column)
            target = self.export.contacts
            key = rec.contact_id if rec else None
        if problems:
            if len(self.problems) < 10 * MAX_PROBLEMS:
                self.problems.extend(problems)
            else:
                self.problems.append(problems[0])
            return
        if key in target:
            self.problems.append((where, f"{kind}_id", f"{key!r} appears twice (first at {target[key].where}); "
                                  "keep one row per CRM record"))
            return
        target[key] = rec

    def file_kind(self, keys: Iterable[str]) -> str | None:
        """For a file without a record-type column: a contact file has an email column."""
        keys = set(keys)
        if keys & set(RECORD_TYPE_KEYS):
            return None
        if keys & set(FIELD_NAMES[CONTACT]["email"]):
            return CONTACT
        return ACCOUNT

    def read_csv(self, text: str, label: str) -> None:
        try:
            self._read_csv(text, label)
        except csv.Error as exc:
            self.problems.append((label, "", f"is not a readable CSV file ({exc}); save it as UTF-8 CSV with a header row"))

    def _read_csv(self, text: str, label: str) -> None:
        reader = csv.reader(io.StringIO(text))
        fieldnames = next(reader, None)
        if not fieldnames:
            self.problems.append((label, "", "empty file; give a header row and one row per record"))
            return
        header = [_key(h) for h in fieldnames]
        default = self.file_kind(header)
        roles_column = any(h in FIELD_NAMES[CONTACT]["roles"] for h in header)
        self.export.sources.append(label)
        columns = [(i, key) for i, key in enumerate(header) if key not in header[:i]]  # the first of a repeated name wins
        for number, row in enumerate(reader, start=2):
            if not row:
                continue  # a blank line, as csv.DictReader skips it
            width = len(row)
            flat = {key: (row[i] if i < width else None) for i, key in columns}  # a short row: the rest is missing
            where = f"{label} row {number}"
            kind, problems = record_type(flat, default, where)
            if problems:
                self.problems.extend(problems)
                continue
            self.add(kind, flat, where, roles_column)

    def read_json(self, text: str, label: str) -> None:
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            self.problems.append((label, "", f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"))
            return
        except RecursionError:
            self.problems.append((label, "", "nested too deeply; records are flat objects or hold one level of objects"))
            return
        self.read_object(body, label)

    def read_object(self, body, label: str) -> None:
        self.export.sources.append(label)
        arrays: list[tuple[str | None, str, list]] = []
        if isinstance(body, list):
            arrays.append((None, "records", body))
        elif isinstance(body, dict):
            flat_top = {_key(k): v for k, v in body.items()}
            exported, _ = _pick(flat_top, EXPORTED_AT_KEYS)
            if exported is not None:
                try:
                    self.export.exported_at = parse_time(exported)
                except ValueError as exc:
                    self.problems.append((label, "exported_at", str(exc)))
            for name, value in body.items():
                kind = RECORD_TYPES.get(_key(name))
                if kind is not None:
                    if not isinstance(value, list):
                        self.problems.append((label, name, "must be an array of records"))
                        continue
                    arrays.append((kind, name, value))
                    self.export.has_accounts |= kind == ACCOUNT
                    self.export.has_contacts |= kind == CONTACT
                elif _key(name) in ("records", "results", "items", "data") and isinstance(value, list):
                    arrays.append((None, name, value))
            if not arrays:
                self.problems.append((label, "", "no records found; give {\"accounts\": [...], \"contacts\": [...]} "
                                      "or an array of records with a record_type"))
        else:
            self.problems.append((label, "", "must be a JSON object or array"))
        for default, name, items in arrays:
            for index, item in enumerate(items):
                where = f"{label} {name}[{index}]"
                items[index] = None  # the raw record is not needed once read: keeps memory flat
                if not isinstance(item, dict):
                    self.problems.append((where, "", "must be an object"))
                    continue
                flat = _flatten(item)
                kind, problems = record_type(flat, default, where)
                if problems:
                    self.problems.extend(problems)
                    continue
                self.add(kind, flat, where, roles_column=any(flat.get(k) is not None for k in FIELD_NAMES[CONTACT]["roles"]))


def read_export(sources: Iterable[tuple[str, str]], exported_at: datetime | None = None,
                fallback_time: datetime | None = None) -> Export:
    """Read an export from (label, text) pairs (CSV or JSON, told apart by content).

    The CRM time of a record is its modification column, else `exported_at` (argument,
    else the JSON's own), else `fallback_time` (a file's modification time). Raises
    ExportError listing every problem (file, row and field, and the fix).
    """
    reader = _Reader()
    for label, text in sources:
        stripped = text.lstrip("\ufeff \t\r\n")
        if stripped.startswith(("{", "[")):
            reader.read_json(stripped, label)
        else:
            reader.read_csv(text.lstrip("\ufeff"), label)
    export = reader.export
    if exported_at is not None:
        export.exported_at = exported_at
    if export.exported_at is None and fallback_time is not None:
        export.exported_at = fallback_time
    if export.exported_at is None and not reader.problems:
        undated = [r.where for r in _records(export) if r.modified_at is None]
        if undated:
            reader.problems.append((undated[0], "modified_at",
                                    f"missing (and {len(undated) - 1} more records): give each record its CRM modification "
                                    "time (modified_at / LastModifiedDate), or the export's exported_at"))
    if not reader.problems and not export.accounts and not export.contacts:
        reader.problems.append((", ".join(export.sources) or "export", "", "holds no accounts and no contacts"))
    if reader.problems:
        raise ExportError(reader.problems)
    return export


def _records(export: Export) -> Iterator:
    yield from export.accounts.values()
    yield from export.contacts.values()


def read_files(paths: Iterable[str], exported_at: datetime | None = None) -> Export:
    """Read export files; a file's modification time stands in for a missing exported_at."""
    paths = list(paths)
    sources = []
    for path in paths:
        try:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                sources.append((os.path.basename(path), handle.read()))
        except UnicodeDecodeError:
            raise ExportError([(path, "", "is not UTF-8 text; save the export as UTF-8 CSV or JSON")]) from None
    newest = max(os.path.getmtime(p) for p in paths) if paths else None
    fallback = datetime.fromtimestamp(newest, timezone.utc) if newest else None
    return read_export(sources, exported_at=exported_at, fallback_time=fallback)
