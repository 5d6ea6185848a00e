"""`keybridge invite --csv`: a file of invitations becomes one batch, with errors naming the row."""
from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from adapter.cli import main
from adapter.models import InboundEvent
from tests.unit.fakes import drain


def run(args, settings):
    return CliRunner().invoke(main, args, env={"KEYBRIDGE_DATABASE_URL": settings.database_url})


def test_a_csv_becomes_one_batch_the_worker_handles(settings, kb, keycloak, worker, client, tmp_path):
    from tests.unit.fakes import deliver

    deliver(client, worker, "account.upserted", {"account_id": "A-1", "name": "Acme", "contract": {"status": "active"}})
    path = tmp_path / "invites.csv"
    path.write_text("kind,contact_id,lead_id,email,account_id,roles\n"
                    "contact,C-1,,ann@acme.example,A-1,Buyer;Billing Contact\n"
                    "lead,,L-1,lee@corp.example,,\n")
    result = run(["invite", "--csv", str(path), "--no-wait"], settings)
    assert result.exit_code == 0, result.output
    assert "2 invitation(s) queued" in result.output
    drain(worker)
    assert sorted(m["to"] for m in keycloak.emails) == ["ann@acme.example", "lee@corp.example"]

    again = run(["invite", "--csv", str(path), "--no-wait"], settings)  # the same file: same batch id
    assert again.exit_code == 0
    drain(worker)
    assert len(keycloak.emails) == 2
    with kb.db.session() as s:
        assert len(s.scalars(select(InboundEvent).where(InboundEvent.type == "invitations.batch_requested")).all()) == 2


def test_csv_errors_name_the_row_and_field_and_queue_nothing(settings, kb, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("kind,contact_id,email,account_id\ncontact,C-1,not-an-email,A-1\ncontact,C-2,b@acme.example,\n")
    result = run(["invite", "--csv", str(path), "--no-wait"], settings)
    assert result.exit_code != 0
    assert "row 2" in result.output and "email" in result.output
    assert "row 3" in result.output and "account_id" in result.output
    with kb.db.session() as s:
        assert s.scalars(select(InboundEvent)).all() == []
