"""What an operator sees of contracts and access: the account view and the audit trail,
through the reports, the `keybridge` CLI and the operator API."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from adapter import cli, reports
from adapter.db import utcnow
from adapter.models import Account
from tests.unit.fakes import deliver, drain

AUTH = {"Authorization": "Bearer op-token"}
ACCOUNT = {"account_id": "A-1", "name": "Acme Corporation", "domains": ["acme.example"],
           "contract": {"status": "active", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-12-31T23:59:59Z"}}
SUSPENDED = {**ACCOUNT, "contract": {"status": "suspended"}}


def add_member(keycloak, account_id, contact_id, enabled=True) -> str:
    (org,) = [o for o in keycloak.organizations.values() if o["attributes"].get("crm_account_id") == [account_id]]
    user_id = keycloak.add_user(f"{contact_id.lower()}@acme.example", password=True, crm_contact_id=[contact_id])
    keycloak.users[user_id]["enabled"] = enabled
    keycloak.members[org["id"]].add(user_id)
    return user_id


@pytest.fixture
def members(client, keycloak, worker):
    """A-1 with an active contract: two members with access, one disabled by an administrator."""
    deliver(client, worker, "account.upserted", ACCOUNT, webhook_id="msg_create")
    return [add_member(keycloak, "A-1", "C-ANN"), add_member(keycloak, "A-1", "C-BOB"),
            add_member(keycloak, "A-1", "C-EVE", enabled=False)]


@pytest.fixture
def cli_env(settings, keycloak, monkeypatch) -> dict:
    """The CLI builds its own Keybridge from the environment: same database, the fake as its Keycloak."""
    monkeypatch.setattr("adapter.runtime.KeycloakGateway.from_settings", staticmethod(lambda settings: keycloak))
    return {"KEYBRIDGE_DATABASE_URL": settings.database_url}


def counts(status: dict) -> tuple:
    return status["members"], status["members_with_access"], status["members_cut_off_by_contract"]


# -- account_status --------------------------------------------------------------------

def test_an_active_account_shows_its_contract_and_who_has_access(kb, members):
    status = reports.account_status(kb, "A-1")

    assert counts(status) == (3, 2, 0)
    assert status["contract_status"] == "active" and status["contract_active"] is True
    assert status["contract_ends_at"] == "2027-12-31T23:59:59Z"
    assert (status["name"], status["access"]) == ("Acme Corporation", "active")


def test_a_suspended_account_counts_the_members_cut_off_by_its_contract(client, kb, worker, members):
    deliver(client, worker, "account.upserted", SUSPENDED)

    status = reports.account_status(kb, "A-1")
    assert counts(status) == (3, 0, 2)  # the administrator's own cut is not the contract's
    assert (status["contract_status"], status["contract_active"], status["access"]) == ("suspended", False, "inactive")


def test_after_a_renewal_nobody_is_counted_as_cut_off(client, kb, worker, members):
    deliver(client, worker, "account.upserted", SUSPENDED)
    deliver(client, worker, "account.upserted", ACCOUNT)
    assert counts(reports.account_status(kb, "A-1")) == (3, 2, 0)


def test_an_account_keybridge_never_saw_has_no_status(kb):
    assert reports.account_status(kb, "A-404") is None


# -- audit_trail -----------------------------------------------------------------------

def test_the_audit_trail_names_the_webhook_that_cut_and_restored_access(client, kb, worker, members):
    deliver(client, worker, "account.upserted", SUSPENDED, webhook_id="msg_suspend")
    deliver(client, worker, "account.upserted", ACCOUNT, webhook_id="msg_renew")

    trail = [e for e in reports.audit_trail(kb, "account:A-1") if e["action"].startswith(("access.", "contract."))]
    assert [(e["action"], e["subject"], e["cause"]) for e in trail] == [
        ("access.contract_restored", "account:A-1", "webhook msg_renew (account.upserted)"),
        ("contract.access_restored", "account:A-1", "webhook msg_renew (account.upserted)"),
        ("access.contract_ended", "account:A-1", "webhook msg_suspend (account.upserted)"),
        ("contract.access_ended", "account:A-1", "webhook msg_suspend (account.upserted)"),
    ]
    assert trail[3]["details"]["contract_status"] == "suspended", "the switch: the organization's attributes"
    assert sorted(trail[2]["details"]["users"]) == sorted(members[:2]) and trail[2]["details"]["sessions_ended"] is True
    assert sorted(trail[0]["details"]["users"]) == sorted(members[:2])


def test_the_audit_trail_names_the_schedule_when_an_end_date_cut_access(client, kb, worker, members):
    with kb.db.session() as session:
        session.get(Account, "A-1").contract_ends_at = ends = utcnow().replace(microsecond=0) - timedelta(hours=1)
    drain(worker)

    (ended,) = [e for e in reports.audit_trail(kb, "account:A-1") if e["action"] == "contract.access_ended"]
    assert ended["cause"] == f"schedule: contract ended at {ends.isoformat()}Z"


def test_the_audit_trail_of_one_account_holds_only_its_entries(client, kb, worker, members):
    deliver(client, worker, "account.upserted", {**ACCOUNT, "account_id": "B-1", "name": "Other", "domains": []})
    trail = reports.audit_trail(kb, "account:A-1")
    assert trail and {e["subject"] for e in trail} == {"account:A-1"}


# -- the CLI ---------------------------------------------------------------------------

def test_keybridge_accounts_show_prints_the_account_status(client, kb, worker, members, cli_env):
    deliver(client, worker, "account.upserted", SUSPENDED)

    result = CliRunner().invoke(cli.main, ["accounts", "show", "A-1"], env=cli_env)

    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown == reports.account_status(kb, "A-1")
    assert counts(shown) == (3, 0, 2) and shown["contract_status"] == "suspended"


def test_keybridge_accounts_show_of_an_unknown_account_fails_and_says_why(kb, cli_env):
    result = CliRunner().invoke(cli.main, ["accounts", "show", "A-404"], env=cli_env)
    assert result.exit_code != 0
    assert "No account A-404" in result.output and "account.upserted" in result.output


def test_keybridge_audit_lists_an_accounts_access_changes_with_their_cause(client, kb, worker, members, cli_env):
    deliver(client, worker, "account.upserted", SUSPENDED, webhook_id="msg_suspend")

    result = CliRunner().invoke(cli.main, ["audit", "--subject", "account:A-1"], env=cli_env)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    (revoked,) = [line for line in lines if "access.contract_ended" in line]
    assert "account:A-1" in revoked and "webhook msg_suspend (account.upserted)" in revoked
    assert members[0] in revoked and members[2] not in revoked
    assert any("organization.created" in line and "msg_create" in line for line in lines)


# -- the operator API ------------------------------------------------------------------

def test_the_operator_api_shows_an_account(client, kb, worker, members):
    deliver(client, worker, "account.upserted", SUSPENDED)

    r = client.get("/api/accounts/A-1", headers=AUTH)

    assert r.status_code == 200
    assert r.json == reports.account_status(kb, "A-1")
    assert counts(r.json) == (3, 0, 2)


def test_the_operator_api_answers_404_for_an_unknown_account(client, kb):
    r = client.get("/api/accounts/A-404", headers=AUTH)
    assert r.status_code == 404
    assert set(r.json) == {"code", "status", "message", "errors"} and r.json["code"] == 404
    assert "A-404" in r.json["message"]


def test_the_operator_api_account_view_needs_the_operator_token(client, kb, members):
    r = client.get("/api/accounts/A-1")
    assert r.status_code == 401


def test_the_operator_api_lists_the_audit_trail_of_an_account(client, kb, worker, members):
    deliver(client, worker, "account.upserted", SUSPENDED, webhook_id="msg_suspend")

    r = client.get("/api/audit?subject=account:A-1", headers=AUTH)

    assert r.status_code == 200
    (revoked,) = [e for e in r.json["entries"] if e["action"] == "access.contract_ended"]
    assert revoked["cause"] == "webhook msg_suspend (account.upserted)"
