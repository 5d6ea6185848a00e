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


# -- progress people can read (issue 11) -----------------------------------------------------

def test_waiting_shows_a_progress_bar_with_rate_and_time_left_and_writes_the_results(settings, kb, keycloak, worker, client,
                                                                                     tmp_path, monkeypatch):
    import csv

    from adapter import batch_progress
    from tests.unit.fakes import deliver

    deliver(client, worker, "account.upserted", {"account_id": "A-1", "name": "Acme", "contract": {"status": "active"}})
    path = tmp_path / "invites.csv"
    path.write_text("kind,contact_id,lead_id,email,account_id\n"
                    "contact,C-1,,ann@acme.example,A-1\n"
                    "contact,C-2,,bea@acme.example,A-1\n"
                    "lead,,L-1,lee@gmail.com,\n"               # public webmail: skipped by the lead policy
                    "lead,,L-2,lou@corp.example,\n")
    passes = []

    def one_worker_pass(seconds):  # the worker runs while the command waits, one pass per poll
        passes.append(seconds)
        worker.run_once()

    monkeypatch.setattr(batch_progress, "_pause", one_worker_pass)
    results = tmp_path / "results.csv"
    result = run(["invite", "--csv", str(path), "--results", str(results)], settings)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    bars = [line for line in lines if line.startswith("[")]
    assert bars[0].startswith("[------------------------] 0/4") and bars[-1].startswith("[########################] 4/4 100%")
    assert all("/s" in line for line in bars) and bars[-1].split("/s")[1].strip().startswith("done")
    assert "completed" in lines[-2] and f"{results}: 4 row(s)" == lines[-1]
    with open(results, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["row"], r["kind"], r["id"], r["email"]) for r in rows] == [
        ("2", "contact", "C-1", "ann@acme.example"), ("3", "contact", "C-2", "bea@acme.example"),
        ("4", "lead", "L-1", "lee@gmail.com"), ("5", "lead", "L-2", "lou@corp.example")]
    outcomes = {r["id"]: (r["outcome"], r["error"]) for r in rows}
    assert (outcomes["C-1"], outcomes["C-2"], outcomes["L-2"]) == (("sent", ""), ("sent", ""), ("sent", ""))
    assert outcomes["L-1"][0] == "skipped"
    assert not (tmp_path / "results.csv.partial").exists()


def test_the_bar_says_rate_time_left_and_outcomes():
    from adapter.batch_progress import Rate, render

    assert render(250, 1000, 25.0, {"sent": 240, "skipped": 10, "waiting": 750}) == \
        "[######------------------] 250/1000  25%   25.0 /s  30 s left  (sent 240, skipped 10)"
    assert "12 min 30 s left" in render(250, 1000, 1.0, {})
    assert "stalled" in render(3, 10, 0.0, {}) and "time left unknown" in render(0, 10, None, {})
    rate = Rate(window=10)
    assert rate.add(0.0, 0) is None
    assert rate.add(5.0, 50) == 10.0
    assert rate.add(20.0, 350) == 20.0  # the last 10 s only: (350 - 50) / 15 s


def test_waiting_stops_with_a_clear_message_when_no_worker_runs(settings, kb, tmp_path, monkeypatch):
    from adapter import batch_progress

    monkeypatch.setattr(batch_progress, "_pause", lambda seconds: None)
    monkeypatch.setattr(batch_progress, "START_GRACE_SECONDS", 0.0)
    path = tmp_path / "invites.csv"
    path.write_text("kind,lead_id,email\nlead,L-1,lou@corp.example\n")
    results = tmp_path / "results.csv"
    result = run(["invite", "--csv", str(path), "--results", str(results)], settings)

    assert result.exit_code == 1
    assert "stopped waiting: no worker has ever run" in result.output
    assert "start one with `keybridge worker`" in result.output and "/api/batches/csv-" in result.output
    assert results.read_text().splitlines() == ["row,kind,id,email,outcome,error"]  # nothing handled yet
    with kb.db.session() as s:
        assert len(s.scalars(select(InboundEvent)).all()) == 1, "the batch stays stored for a worker"


def test_waiting_stops_when_the_worker_stopped_beating(settings, kb, worker, tmp_path, monkeypatch):
    import time

    from adapter import batch_progress, metrics
    from adapter.models import Cursor

    worker.run_once()
    with kb.db.session() as s:  # the worker's last pass was two minutes ago
        for row in s.scalars(select(Cursor).where(Cursor.name.like(metrics.HEARTBEAT_PREFIX + "%"))):
            row.position = {"at": time.time() - 120}
    monkeypatch.setattr(batch_progress, "_pause", lambda seconds: None)
    path = tmp_path / "invites.csv"
    path.write_text("kind,lead_id,email\nlead,L-1,lou@corp.example\n")
    result = run(["invite", "--csv", str(path), "--worker-timeout", "60"], settings)
    assert result.exit_code == 1
    assert "no worker has finished a pass for 120 s" in result.output or "for 121 s" in result.output


def test_results_need_waiting_and_a_writable_place(settings, kb, tmp_path):
    path = tmp_path / "invites.csv"
    path.write_text("kind,lead_id,email\nlead,L-1,lou@corp.example\n")
    result = run(["invite", "--csv", str(path), "--no-wait", "--results", str(tmp_path / "r.csv")], settings)
    assert result.exit_code == 2 and "--results" in result.output and "--no-wait" in result.output
    result = run(["invite", "--csv", str(path), "--results", str(tmp_path / "missing" / "r.csv")], settings)
    assert result.exit_code == 2 and "not a writable directory" in result.output
    with kb.db.session() as s:
        assert s.scalars(select(InboundEvent)).all() == [], "nothing queued"
