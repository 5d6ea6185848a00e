"""`keybridge reconcile` and POST/GET /api/reconcile: the same reconciliation from the command line and the operator API."""
from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from adapter import cli
from adapter.models import InboundEvent, Job
from tests.unit.fakes import deliver, drain, outbox_events

AUTH = {"Authorization": "Bearer op-token"}
ACTIVE = {"status": "active"}
EXPORT = ("record_type,id,name,contract_status,email,account_id,roles,status,modified_at\n"
          "account,A-1,Acme,active,,,,,2026-11-20T09:00:00Z\n"
          "contact,C-1,,,ann@acme.example,A-1,Buyer,active,2026-11-20T09:00:00Z\n"
          "contact,C-2,,,bob@acme.example,A-1,,left,2026-11-20T09:00:00Z\n")


def seed(client, keycloak, worker) -> dict[str, str]:
    deliver(client, worker, "account.upserted", {"account_id": "A-1", "name": "Acme", "contract": ACTIVE})
    org = next(iter(keycloak.organizations))
    ids = {}
    for contact_id, email in (("C-1", "ann@acme.example"), ("C-2", "bob@acme.example")):
        ids[contact_id] = keycloak.add_user(email, password=True, crm_contact_id=[contact_id])
        keycloak.members[org].add(ids[contact_id])
        keycloak.user_roles[ids[contact_id]] = {"member"}
    return ids


def run(args, kb, monkeypatch):
    monkeypatch.setattr(cli, "_kb", lambda: kb)
    return CliRunner().invoke(cli.main, args, env={"KEYBRIDGE_DATABASE_URL": kb.settings.database_url})


def test_cli_dry_run_prints_the_drift_and_stores_nothing(client, kb, keycloak, worker, tmp_path, monkeypatch):
    ids = seed(client, keycloak, worker)
    path = tmp_path / "crm.csv"
    path.write_text(EXPORT)

    result = run(["reconcile", "--from", str(path), "--dry-run"], kb, monkeypatch)

    assert result.exit_code == 0, result.output
    assert "business roles that differ: 1" in result.output
    assert "contact:C-1 (user " in result.output and "business roles ['member'] -> ['buyer']" in result.output
    assert "people who left but can log in: 1" in result.output
    assert "Dry run: nothing changed." in result.output
    with kb.db.session() as session:
        assert session.scalars(select(InboundEvent).where(InboundEvent.source == "reconcile")).all() == []
    assert keycloak.users[ids["C-2"]]["enabled"] is True


def test_cli_converges_and_waits_for_the_worker(client, kb, keycloak, worker, tmp_path, monkeypatch):
    ids = seed(client, keycloak, worker)
    path = tmp_path / "crm.csv"
    path.write_text(EXPORT)

    result = run(["reconcile", "--from", str(path), "--no-wait"], kb, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "Stored 2 event(s) for the worker" in result.output
    drain(worker)
    assert keycloak.user_roles[ids["C-1"]] == {"buyer"} and keycloak.users[ids["C-2"]]["enabled"] is False

    again = run(["reconcile", "--from", str(path), "--dry-run"], kb, monkeypatch)
    assert "No drift: Keycloak matches the export." in again.output


def test_cli_names_row_field_and_fix_of_a_bad_export(kb, tmp_path, monkeypatch):
    path = tmp_path / "crm.csv"
    path.write_text("contact_id,email,status,modified_at\nC-1,ann@acme.example,retired,2026-11-20T09:00:00Z\n")
    result = run(["reconcile", "--from", str(path), "--dry-run"], kb, monkeypatch)
    assert result.exit_code == 1
    assert "crm.csv row 2, status: 'retired' is not a contact status; use active or left" in result.output


def test_api_queues_a_run_the_worker_executes_and_get_shows_its_result(client, kb, keycloak, worker):
    ids = seed(client, keycloak, worker)

    r = client.post("/api/reconcile?dry_run=false", data=EXPORT, content_type="text/csv", headers=AUTH)
    assert r.status_code == 202, r.json
    run_id = r.json["run_id"]
    assert client.get(f"/api/reconcile/{run_id}", headers=AUTH).json["status"] == "queued"
    drain(worker)

    body = client.get(f"/api/reconcile/{run_id}", headers=AUTH).json
    assert body["status"] == "completed" and body["source"] == "api" and body["dry_run"] is False
    assert body["drift"]["counts"]["roles_differ"] == 1 and body["drift"]["counts"]["left_can_login"] == 1
    assert body["events"] == {"stored": 2, "duplicate": 0}
    assert body["applied"] == {"total": 2, "done": 2, "waiting": 0, "dead": 0}
    assert keycloak.users[ids["C-2"]]["enabled"] is False
    (summary,) = outbox_events(kb, "reconcile.completed")
    assert summary.data["run_id"] == run_id and summary.data["events_stored"] == 2


def test_api_dry_run_with_a_json_export(client, kb, keycloak, worker):
    seed(client, keycloak, worker)
    export = {"exported_at": "2026-11-20T09:00:00Z", "accounts": [{"account_id": "A-1", "name": "Acme", "contract": ACTIVE}],
              "contacts": [{"contact_id": "C-1", "email": "ann@acme.example", "account_id": "A-1", "roles": ["Buyer"]},
                           {"contact_id": "C-2", "email": "bob@acme.example", "account_id": "A-1", "roles": []}]}
    r = client.post("/api/reconcile?dry_run=true", json=export, headers=AUTH)
    assert r.status_code == 202
    drain(worker)
    body = client.get(f"{r.json['url']}?limit=1", headers=AUTH).json
    assert body["status"] == "completed" and body["dry_run"] is True
    assert {k: v for k, v in body["drift"]["counts"].items() if v} == {"roles_differ": 1}
    assert "events" not in body and outbox_events(kb, "reconcile.completed") == []


def test_api_refuses_a_bad_export_naming_row_and_field_and_queues_nothing(client, kb):
    r = client.post("/api/reconcile", data="contact_id,email\nC-1,not-mail\n", content_type="text/csv", headers=AUTH)
    assert r.status_code == 422
    assert r.json["errors"]["csv row 2.email"] == ["Not a valid email address. Fix: give the contact's email address, e.g. jane@acme.example."]
    undated = client.post("/api/reconcile", data="contact_id,email\nC-1,a@acme.example\n", content_type="text/csv", headers=AUTH)
    assert undated.status_code == 422 and "exported_at" in undated.json["errors"]["csv row 2.modified_at"][0]
    dated = client.post("/api/reconcile?exported_at=2026-11-20T09:00:00Z&dry_run=true", data="contact_id,email\nC-1,a@acme.example\n",
                        content_type="text/csv", headers=AUTH)
    assert dated.status_code == 202
    with kb.db.session() as session:
        assert len(session.scalars(select(Job).where(Job.kind == "reconcile")).all()) == 1  # the dated one only


def test_api_needs_the_operator_token_and_knows_its_runs(client):
    assert client.post("/api/reconcile", data=EXPORT, content_type="text/csv").status_code == 401
    assert client.get("/api/reconcile/run_nope", headers=AUTH).status_code == 404
    assert client.post("/api/reconcile?dry_run=maybe", data=EXPORT, content_type="text/csv", headers=AUTH).status_code == 400
