"""Reading CRM exports for `keybridge reconcile`: the shapes CRMs export, and errors that name row, field and fix."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest

from adapter.reconcile.export import ExportError, read_export, read_files

T = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def test_one_csv_with_a_record_type_column():
    text = ("record_type,id,name,contract_status,contract_ends_at,domains,email,account_id,first_name,roles,status,modified_at\n"
            "Account,A-1,Acme,active,2027-12-31,acme.example;acme.co.uk,,,,,,2026-11-19T08:00:00Z\n"
            "Contact,C-1,,,,,Ann@Acme.example,A-1,Ann,Buyer;Billing Contact,active,2026-11-19T09:00:00+0000\n"
            "contact,C-2,,,,,bob@acme.example,A-1,,,left,\n")
    export = read_export([("crm.csv", text)], exported_at=T)
    account = export.accounts["A-1"]
    assert account.data == {"account_id": "A-1", "name": "Acme", "domains": ["acme.example", "acme.co.uk"],
                            "contract": {"status": "active", "ends_at": "2027-12-31T23:59:59Z"}}
    assert account.modified_at == datetime(2026, 11, 19, 8, 0, tzinfo=timezone.utc)
    ann, bob = export.contacts["C-1"], export.contacts["C-2"]
    assert ann.upsert_data() == {"contact_id": "C-1", "email": "ann@acme.example", "status": "active", "account_id": "A-1",
                                 "first_name": "Ann", "roles": ["Buyer", "Billing Contact"]}
    assert export.time_of(ann) == datetime(2026, 11, 19, 9, 0, tzinfo=timezone.utc)
    # An empty roles cell says "no CRM roles"; an empty modified_at falls back to the export's time.
    assert bob.roles == () and bob.status == "left" and export.time_of(bob) == T


def test_two_files_salesforce_columns_told_apart_by_their_header():
    accounts = "Id,Name,Contract Status,LastModifiedDate\n001A,Acme,suspended,2026-11-19T08:00:00.000+0000\n"
    contacts = "Id,AccountId,Email,FirstName,LastName,Phone,LastModifiedDate\n003C,001A,jo@acme.example,Jo,Smith,+1 555,2026-11-19T08:00:00.000+0000\n"
    export = read_export([("accounts.csv", accounts), ("contacts.csv", contacts)])
    assert export.accounts["001A"].data["contract"] == {"status": "suspended"}
    jo = export.contacts["003C"]
    assert (jo.account_id, jo.first_name, jo.last_name, jo.phone, jo.roles) == ("001A", "Jo", "Smith", "+1 555", None)
    assert export.has_accounts and export.has_contacts


def test_json_object_with_accounts_and_contacts_in_the_contracts_own_shape():
    body = {"exported_at": "2026-11-20T10:00:00Z",
            "accounts": [{"account_id": "A-1", "name": "Acme", "contract": {"status": "active", "ends_at": "2027-01-01T00:00:00Z"},
                          "admin_contact": {"contact_id": "C-9", "email": "boss@acme.example"}}],
            "contacts": [{"contact_id": "C-1", "email": "ann@acme.example", "roles": ["Buyer"], "status": "left"}]}
    export = read_export([("export.json", json.dumps(body))])
    assert export.exported_at == T
    assert export.accounts["A-1"].data["admin_contact"] == {"contact_id": "C-9", "email": "boss@acme.example"}
    assert export.contacts["C-1"].roles == ("Buyer",)


def test_json_array_of_typed_records_salesforce_and_hubspot_style():
    records = [{"attributes": {"type": "Account"}, "Id": "001A", "Name": "Acme", "LastModifiedDate": "2026-11-19T08:00:00Z"},
               {"type": "contact", "id": "51", "properties": {"email": "x@acme.example", "firstname": "X",
                                                               "associatedcompanyid": "001A", "lastmodifieddate": "1763542800000"}}]
    export = read_export([("records.json", json.dumps({"records": records}))])
    assert export.accounts["001A"].data == {"account_id": "001A", "name": "Acme"}
    contact = export.contacts["51"]
    assert (contact.email, contact.first_name, contact.account_id) == ("x@acme.example", "X", "001A")
    assert contact.modified_at == datetime.fromtimestamp(1763542800, timezone.utc)


def test_every_problem_names_the_row_the_field_and_the_fix():
    text = ("record_type,id,name,contract_status,email,status,modified_at\n"
            "account,A-1,,active,,,2026-11-19T08:00:00Z\n"
            "account,A-2,Beta,paused,,,2026-11-19T08:00:00Z\n"
            "contact,C-1,,,not-an-email,active,2026-11-19T08:00:00Z\n"
            "contact,C-2,,,c2@acme.example,gone,2026-11-19T08:00:00Z\n"
            "contact,C-3,,,c3@acme.example,active,2026-11-19 08:00\n"
            "vendor,V-1,,,,,\n"
            "contact,C-1,,,c1@acme.example,active,2026-11-19T08:00:00Z\n")
    with pytest.raises(ExportError) as caught:
        read_export([("crm.csv", text)])
    message = str(caught.value)
    assert "crm.csv row 2, name: missing; add a name column" in message
    assert "crm.csv row 3, contract.status: Must be one of" in message and "use one of active, suspended, expired, none" in message
    assert "crm.csv row 4, email: Not a valid email address" in message
    assert "crm.csv row 5, status: 'gone' is not a contact status; use active or left" in message
    assert "crm.csv row 6, modified_at: '2026-11-19 08:00' has no time zone" in message
    assert "crm.csv row 7, record_type: 'vendor' is neither an account nor a contact" in message
    assert "row 8" not in message  # C-1 of row 4 was refused, so this C-1 is the first good one
    assert caught.value.as_fields()["crm.csv row 4.email"]


def test_a_duplicate_record_is_refused():
    text = "contact_id,email\nC-1,a@acme.example\nC-1,b@acme.example\n"
    with pytest.raises(ExportError, match=r"contacts.csv row 3, contact_id: 'C-1' appears twice \(first at contacts.csv row 2\)"):
        read_export([("contacts.csv", text)], exported_at=T)


def test_without_any_time_the_export_is_refused_naming_the_field():
    with pytest.raises(ExportError, match=r"modified_at: missing .*exported_at"):
        read_export([("contacts.csv", "contact_id,email\nC-1,a@acme.example\n")])


def test_a_record_without_type_in_a_mixed_json_array_is_refused():
    with pytest.raises(ExportError, match=r"records\[0\], record_type: missing"):
        read_export([("x.json", json.dumps([{"id": "1", "email": "a@acme.example"}]))], exported_at=T)


def test_files_fall_back_to_their_modification_time(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text("contact_id,email\nC-1,a@acme.example\n")
    os.utime(path, (1763630000, 1763630000))
    export = read_files([str(path)])
    assert export.time_of(export.contacts["C-1"]) == datetime.fromtimestamp(1763630000, timezone.utc)


@pytest.mark.parametrize("text, message", [
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ('{"contacts": [{"contact_id": "C-1", "email": "a@b.example", "x": ' + '{"y": ' * 50 + "1" + "}" * 50 + "}]}", None),
    ("contact_id,email\n" + "C-1," + "a" * 200_000 + "\n", "not a readable CSV file"),
    ("contact_id,email\nC-1,a@b.example\0\n", "row 2, email: Not a valid email address"),
    ('{"exported_at": "0001-01-01T00:00:00+14:00", "contacts": []}', "out of range"),
    ('{"exported_at": true, "contacts": []}', "not a date and time"),
])
def test_hostile_exports_are_refused_with_a_reason_never_a_crash(text, message):
    if message is None:  # deep but irrelevant nesting inside a record is ignored
        assert read_export([("x.json", text)], exported_at=T).contacts["C-1"].email == "a@b.example"
        return
    with pytest.raises(ExportError, match=message):
        read_export([("x", text)], exported_at=T if "exported_at" not in text else None)
