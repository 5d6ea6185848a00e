"""`keybridge db upgrade`: any Keybridge database reaches this version's schema, data kept (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from adapter import migrations
from adapter.cli import main
from adapter.db import Database
from tests.support import stack

HEAD = "0003"  # the newest migration (adapter/migrations/versions): invitation lifecycle


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kb.db'}"
    request.getfixturevalue("postgres_url")
    return stack.create_database()


def _execute(url: str, *statements: str) -> list:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            return [connection.execute(text(s)).all() if s.lstrip().lower().startswith("select") else connection.execute(text(s))
                    for s in statements]
    finally:
        engine.dispose()


def _seed_release_one(url: str) -> None:
    """Rows as the release before migrations wrote them (its columns only)."""
    _execute(url,
             "insert into outbox_events (id, type, data, dedupe_key, status, attempts, next_attempt_at, created_at, "
             "window_started_at) values ('evt_old', 'identity.registered', '{}', 'k-old', 'pending', 0, "
             "'2026-11-01 10:00:00', '2026-11-01 10:00:00', '2026-11-01 10:00:00')",
             "insert into jobs (kind, ref, payload, status, attempts, run_at, created_at) values "
             "('inbound_event', 'msg_old', '{}', 'queued', 0, '2026-11-01 10:00:00', '2026-11-01 10:00:00')")


def test_a_database_from_before_migrations_is_upgraded_in_place_with_its_data(database_url):
    migrations.upgrade(database_url, migrations.BASELINE)   # the schema of the release before migrations ...
    _execute(database_url, "drop table alembic_version")     # ... which create_all made, without a version table
    _seed_release_one(database_url)

    result = CliRunner().invoke(main, ["db", "upgrade"], env={"KEYBRIDGE_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "stamped at 0001" in result.output and f"-> {HEAD}" in result.output
    assert migrations.differences(database_url) == []
    [[outbox], [jobs]] = _execute(database_url, "select id from outbox_events", "select ref from jobs")
    assert outbox == ("evt_old",) and jobs == ("msg_old",)

    again = CliRunner().invoke(main, ["db", "upgrade"], env={"KEYBRIDGE_DATABASE_URL": database_url})
    assert again.exit_code == 0 and f"already at {HEAD}" in again.output


def test_an_empty_database_gets_this_versions_schema(database_url):
    assert f"upgraded an empty database -> {HEAD}" in migrations.upgrade(database_url)
    assert migrations.differences(database_url) == []
    Database(database_url).create_all()  # the processes' own start-up then finds nothing to add
    assert migrations.differences(database_url) == []


def test_a_database_this_version_created_is_stamped_not_changed(database_url):
    Database(database_url).create_all()
    assert "stamped at head" in migrations.upgrade(database_url)
    assert migrations.current(database_url) == HEAD
