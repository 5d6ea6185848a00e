"""An existing database from an older Keybridge gets the nullable columns a newer one added."""
from __future__ import annotations

import sqlite3

from adapter.db import Database


def test_missing_nullable_columns_are_added_in_place(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as c:
        c.execute("create table jobs (id integer primary key, kind varchar(40), ref varchar(200), payload json, "
                  "status varchar(20), attempts int, run_at datetime, locked_until datetime, created_at datetime, "
                  "finished_at datetime, last_error text)")
        c.execute("insert into jobs (kind, ref, payload, status, attempts) values ('inbound_event', 'm1', '{}', 'queued', 0)")
    db = Database(f"sqlite:///{path}")
    db.create_all()
    with sqlite3.connect(path) as c:
        columns = [row[1] for row in c.execute("pragma table_info(jobs)")]
        assert "ordering_key" in columns
        assert c.execute("select ref from jobs").fetchall() == [("m1",)], "existing rows are kept"
    db.dispose()
