"""Reconciliation against the (fake) Keycloak: each kind of drift is found, a dry run changes nothing, a real run
feeds the drifted records to the real handlers through the inbox and converges, and re-running stores nothing."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from adapter import reconcile
from adapter.db import utcnow
from adapter.errors import RetryableError
from adapter.models import AccessRevocation, InboundEvent
from adapter.reconcile.export import read_export
from adapter.reconcile.realm import RealmReader
from tests.unit.fakes import deliver, drain, outbox_events

EXPORTED_AT = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)  # newer than the webhooks (tests.conftest.envelope)
ACTIVE = {"status": "active", "ends_at": "2027-12-31T23:59:59Z"}

ACCOUNTS = ("record_type,account_id,name,contract_status,contract_ends_at,domains\n"
            "account,A-1,Acme,active,2027-12-31T23:59:59Z,acme.example\n"
            "account,A-2,Beta,suspended,,beta.example\n"
            "account,A-3,Gamma,active,,gamma.example\n")
CONTACTS = ("record_type,contact_id,email,account_id,first_name,last_name,roles,status\n"
            "contact,C-1,ann@acme.example,A-1,Ann,A,Buyer,active\n"          # roles differ
            "contact,C-2,bob@acme.example,A-1,Bob,B,,left\n"                 # left, can still log in
            "contact,C-3,cy@acme.example,A-1,Cy,C,,left\n"                   # left, invitation still pending
            "contact,C-4,di@acme.example,A-1,Di,D,,active\n"                 # no identity, not invited
            "contact,C-5,ed@acme.example,A-1,Ed,E,,active\n"                 # invited, not registered: no drift
            "contact,C-6,flo@acme.example,A-1,Florence,F,,active\n"          # first name differs
            "contact,C-7,gil@acme.example,A-1,Gil,G,,active\n"               # not a member of A-1
            "contact,C-8,hal@beta.example,A-2,Hal,H,,active\n"               # enabled while Beta is suspended: not drift
            "contact,C-10,ivy@acme.example,A-1,Ivy,I,,active\n"              # disabled by Keybridge as a leaver, active again
            "contact,C-11,jo@acme.example,A-1,Jo,J,,active\n"                # disabled by an administrator: not drift
            "contact,C-12,kim@acme.example,A-1,Kim,K,,left\n")               # left; an administrator's invitation pending


def org_of(keycloak, account_id) -> str:
    return next(o["id"] for o in keycloak.organizations.values() if o["attributes"].get("crm_account_id") == [account_id])


def member(keycloak, account_id, email, first, last, contact_id=None, roles=(), enabled=True) -> str:
    attributes = {"crm_contact_id": [contact_id]} if contact_id else {}
    user_id = keycloak.add_user(email, first, last, password=True, **attributes)
    keycloak.users[user_id]["enabled"] = enabled
    if account_id:
        keycloak.members[org_of(keycloak, account_id)].add(user_id)
    keycloak.user_roles[user_id] = set(roles)
    return user_id


@pytest.fixture
def realm(client, kb, keycloak, worker):
    """Keycloak as the CRM's webhooks left it, then drifted (admins, lost events)."""
    deliver(client, worker, "account.upserted", {"account_id": "A-1", "name": "Acme", "domains": ["acme.example"], "contract": ACTIVE})
    deliver(client, worker, "account.upserted", {"account_id": "A-2", "name": "Beta", "domains": ["beta.example"], "contract": ACTIVE})
    deliver(client, worker, "account.upserted", {"account_id": "A-9", "name": "Old Co", "contract": ACTIVE})
    ids = {
        "C-1": member(keycloak, "A-1", "ann@acme.example", "Ann", "A", "C-1", roles={"member"}),
        "C-2": member(keycloak, "A-1", "bob@acme.example", "Bob", "B", "C-2", roles={"member"}),
        "C-6": member(keycloak, "A-1", "flo@acme.example", "Flo", "F", "C-6", roles={"member"}),
        "C-7": member(keycloak, None, "gil@acme.example", "Gil", "G", "C-7", roles={"member"}),
        "C-8": member(keycloak, "A-2", "hal@beta.example", "Hal", "H", "C-8", roles={"member"}),
        "C-10": member(keycloak, "A-1", "ivy@acme.example", "Ivy", "I", "C-10", roles={"member"}, enabled=False),
        "C-11": member(keycloak, "A-1", "jo@acme.example", "Jo", "J", "C-11", roles={"member"}, enabled=False),
        "C-99": member(keycloak, "A-1", "zed@acme.example", "Zed", "Z", "C-99", roles={"member"}),
        "lead": member(keycloak, None, "lee@corp.example", "Lee", "L", roles={"lead"}),
    }
    with kb.db.session() as session:
        session.add(AccessRevocation(user_id=ids["C-10"], reason="left_company", account_id=None, contact_id="C-10",
                                     revoked_at=utcnow()))
    deliver(client, worker, "contact.invite_requested", {"contact_id": "C-3", "email": "cy@acme.example", "account_id": "A-1"})
    keycloak.invite_new_member(org_of(keycloak, "A-1"), "ed@acme.example", "Ed", "E")
    keycloak.invite_new_member(org_of(keycloak, "A-1"), "kim@acme.example", "Kim", "K")  # in Keycloak's console
    # Beta's suspension never reached Keycloak; its organization still says active.
    return ids


def export():
    return read_export([("accounts.csv", ACCOUNTS), ("contacts.csv", CONTACTS)], exported_at=EXPORTED_AT)


def records(result, kind) -> list[str]:
    return sorted(item["record"] for item in result["drift"]["items"].get(kind, []))


WRITES = ("create_organization", "update_organization", "update_user", "set_enabled", "logout", "add_member",
          "remove_member", "ensure_realm_roles", "invite_new_member", "invite_existing_member")


@pytest.mark.parametrize("extension", [True, False], ids=["export", "admin-api"])
def test_a_dry_run_reports_each_kind_of_drift_and_changes_nothing(kb, keycloak, realm, extension, caplog):
    keycloak.has_export = extension  # without Keybridge's extension, the reader falls back to the admin API
    writes_before = {m: len(keycloak.calls_to(m)) for m in WRITES}
    with kb.db.session() as session:
        events_before = len(session.scalars(select(InboundEvent)).all())

    result = reconcile.reconcile(kb, export(), dry_run=True)

    assert result["drift"]["counts"] == {
        "missing_organization": 1, "account_differs": 1, "access_contradicts_contract": 1, "left_can_login": 1,
        "left_pending_invitation": 2, "roles_differ": 1, "membership_differs": 2, "profile_differs": 1,
        "missing_identity": 1, "unknown_identity": 1, "unknown_organization": 1}
    assert records(result, "missing_organization") == ["account:A-3"]
    assert records(result, "account_differs") == ["account:A-2"]
    # Hal, of suspended Beta, keeps his flag: the organization's attributes (account_differs) are the drift.
    assert records(result, "access_contradicts_contract") == ["contact:C-10"]
    assert records(result, "left_can_login") == ["contact:C-2"]
    assert records(result, "left_pending_invitation") == ["contact:C-12", "contact:C-3"]
    assert [i.get("fix") for i in result["drift"]["items"]["left_pending_invitation"]] == [
        None, "delete it in Keycloak: Organizations > A-1 > Invitations"]
    assert records(result, "roles_differ") == ["contact:C-1"]
    assert result["drift"]["items"]["roles_differ"][0]["detail"] == "business roles ['member'] -> ['buyer']"
    assert records(result, "membership_differs") == ["contact:C-2", "contact:C-7"]
    assert records(result, "profile_differs") == ["contact:C-6"]
    assert records(result, "missing_identity") == ["contact:C-4"]
    assert records(result, "unknown_identity") == [f"user:{realm['C-99']}"]
    assert records(result, "unknown_organization") == ["account:A-9"]
    assert result["drift"]["stats"]["invited_not_registered"] == 1
    assert result["drift"]["to_converge"] == {"accounts": 2, "contacts": 6}
    # What only a person can fix says what to do.
    assert "invite" in result["drift"]["items"]["missing_identity"][0]["fix"]

    assert {m: len(keycloak.calls_to(m)) for m in WRITES} == writes_before
    with kb.db.session() as session:
        assert len(session.scalars(select(InboundEvent)).all()) == events_before
    assert outbox_events(kb, "reconcile.completed") == []
    per_user = ("users_page", "organization_members_page", "organization_invitations_page", "user_realm_roles")
    fallback = [r.getMessage() for r in caplog.records if "keybridge-export" in r.getMessage() and r.levelname == "WARNING"]
    if extension:  # the realm in a few pages: no listing per organization, no request per user
        assert [m for m in per_user if keycloak.calls_to(m)] == [] and fallback == []
        assert len(keycloak.calls_to("export_users_page")) == 1 and len(keycloak.calls_to("export_invitations_page")) == 1
    else:
        assert keycloak.calls_to("users_page") and keycloak.calls_to("organization_members_page")
        assert len(fallback) == 1 and "Reading through the admin API instead" in fallback[0]


def test_a_real_run_feeds_the_drifted_records_to_the_handlers_and_a_second_run_finds_nothing_to_do(kb, keycloak, worker, realm):
    result = reconcile.reconcile(kb, export(), dry_run=False)

    assert result["events"] == {"stored": 8, "duplicate": 0}
    with kb.db.session() as session:
        stored = session.scalars(select(InboundEvent).where(InboundEvent.source == "reconcile")).all()
    assert sorted((e.type, e.payload["data"].get("account_id") if e.type == "account.upserted" else e.payload["data"]["contact_id"])
                  for e in stored) == [("account.upserted", "A-2"), ("account.upserted", "A-3"),
                                       ("contact.upserted", "C-1"), ("contact.upserted", "C-10"), ("contact.upserted", "C-2"),
                                       ("contact.upserted", "C-3"), ("contact.upserted", "C-6"), ("contact.upserted", "C-7")]
    assert {e.payload["timestamp"] for e in stored} == {"2026-11-25T10:00:00Z"}  # the export's time, for "newest wins"
    drain(worker)

    hal, ivy, jo, bob = (keycloak.users[realm[c]] for c in ("C-8", "C-10", "C-11", "C-2"))
    assert hal["enabled"] is True and not keycloak.can_log_in(realm["C-8"]), "Beta's attributes refuse Hal"
    assert ivy["enabled"] is True and jo["enabled"] is False and bob["enabled"] is False
    assert keycloak.user_roles[realm["C-1"]] == {"buyer"}
    assert keycloak.users[realm["C-6"]]["firstName"] == "Florence"
    assert realm["C-7"] in keycloak.members[org_of(keycloak, "A-1")]
    assert org_of(keycloak, "A-3")
    assert keycloak.organizations[org_of(keycloak, "A-2")]["attributes"]["contract_status"] == ["suspended"]

    (summary,) = [e.data for e in outbox_events(kb, "reconcile.completed")]
    assert summary["run_id"] == result["run_id"] and summary["events_stored"] == 8 and summary["total_drift"] == 13
    assert summary["drift"]["left_can_login"] == 1 and summary["records"] == {"accounts": 3, "contacts": 11}

    again = reconcile.reconcile(kb, export(), dry_run=False)
    left = {kind: n for kind, n in again["drift"]["counts"].items() if n}
    assert again["events"] == {"stored": 0, "duplicate": 0}
    # What a reconcile run cannot do on its own stays reported: whom to invite, and what the CRM does not know.
    assert left == {"missing_identity": 1, "unknown_identity": 1, "unknown_organization": 1, "left_pending_invitation": 1}
    assert again["drift"]["items"]["left_pending_invitation"][0]["record"] == "contact:C-12"  # the administrator's


def test_the_same_export_stored_twice_is_one_set_of_events(kb, keycloak, worker, realm):
    first = reconcile.reconcile(kb, export(), dry_run=False)
    second = reconcile.reconcile(kb, export(), dry_run=False)  # before the worker ran: same drift, same records

    assert first["events"]["stored"] == 8
    assert second["events"] == {"stored": 0, "duplicate": 8}


def test_the_events_carry_each_records_own_crm_time_and_older_state_is_not_newer(kb, keycloak, realm):
    text = ("contact_id,email,account_id,first_name,roles,status,LastModifiedDate\n"
            "C-1,ann@acme.example,A-1,Ann,Buyer,active,2026-11-18T07:30:00Z\n")
    reconcile.reconcile(kb, read_export([("contacts.csv", text)]), dry_run=False)
    with kb.db.session() as session:
        (event,) = session.scalars(select(InboundEvent).where(InboundEvent.source == "reconcile")).all()
    assert event.payload["timestamp"] == "2026-11-18T07:30:00Z"
    assert event.payload["data"] == {"contact_id": "C-1", "email": "ann@acme.example", "account_id": "A-1",
                                     "first_name": "Ann", "roles": ["Buyer"], "status": "active"}


def test_the_export_is_read_in_keyset_pages_each_user_once_with_roles_and_accounts(kb, keycloak, realm):
    for i in range(20):
        keycloak.add_user(f"u{i:02d}@x.example")
    reader = RealmReader(kb, export_page=4)
    reader.facts()
    users = {u["email"]: u for u in reader.users()}

    assert len(users) == len(keycloak.users) == 29
    pages = keycloak.calls_to("export_users_page")
    assert [args[0] for args, _ in pages][:2] == [None, sorted(keycloak.users)[3]]  # each page after the last id of the one before
    assert len(pages) == 8 and all(args[1] == 4 and args[2] == ("crm_contact_id", "phone") for args, _ in pages)
    ann = users["ann@acme.example"]
    assert ann["crm_accounts"] == ["A-1"] and ann["realm_roles"] == ["member"]
    assert ann["attributes"] == {"crm_contact_id": ["C-1"]} and users["gil@acme.example"]["crm_accounts"] == []


def test_users_are_read_in_pages_each_once(kb, keycloak):
    keycloak.has_export = False
    for i in range(23):
        keycloak.add_user(f"u{i:02d}@x.example")
    reader = RealmReader(kb, concurrency=3, user_page=5)
    reader.facts()
    users = list(reader.users())
    assert sorted(u["email"] for u in users) == [f"u{i:02d}@x.example" for i in range(23)]
    pages = keycloak.calls_to("users_page")
    assert all(args[1] == 5 for args, _ in pages) and len(pages) == 6  # 5 pages of users and one past the count


def test_a_page_that_fails_for_a_moment_is_read_again_instead_of_failing_the_run(kb, keycloak, monkeypatch):
    monkeypatch.setattr("adapter.reconcile.realm.time.sleep", lambda seconds: None)
    for i in range(7):
        keycloak.add_user(f"u{i}@x.example")
    def read(method: str, failures: int, concurrency: int = 2, **pages) -> int:
        keycloak.fail_next(method, times=failures)
        reader = RealmReader(kb, concurrency=concurrency, **pages)
        reader.facts()
        return len(list(reader.users()))

    assert read("export_users_page", 2, export_page=5) == 7  # a timeout, then Keycloak busy
    with pytest.raises(RetryableError, match="export_users_page"):  # down for good: the run fails, saying why
        read("export_users_page", 4, concurrency=1, export_page=5)
    keycloak.has_export = False
    assert read("users_page", 2, user_page=5) == 7
    with pytest.raises(RetryableError, match="users_page"):
        read("users_page", 4, concurrency=1, user_page=5)  # one page at a time: all four failures hit it


def test_members_of_a_suspended_account_are_not_drift_whatever_their_flag(kb, keycloak, realm):
    """Access follows the organization's attributes (Keycloak's extension): an enabled member of a suspended
    account, or one an administrator enabled, is as it should be once the organization says suspended."""
    from adapter.models import AdminAccessDecision

    keycloak.update_organization_attributes(org_of(keycloak, "A-2"), {"contract_status": ["suspended"], "contract_ends_at": []})
    with kb.db.session() as session:
        session.add(AdminAccessDecision(user_id=realm["C-8"], enabled=True, actor="admin@corp.example", event_id="adm-1",
                                        decided_at=EXPORTED_AT.replace(tzinfo=None)))
    result = reconcile.reconcile(kb, export(), dry_run=True)
    assert records(result, "access_contradicts_contract") == ["contact:C-10"]
    assert records(result, "account_differs") == []
