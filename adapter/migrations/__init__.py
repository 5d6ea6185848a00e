"""Schema migrations (Alembic): `keybridge db upgrade` brings any Keybridge database to this version.

The revisions live in versions/; env.py runs them against the URL given in the Alembic
config (set by `upgrade()` from KEYBRIDGE_DATABASE_URL). A database made before
migrations existed (tables, but no `alembic_version`) is recognised: a database with
the schema of the first migrated release is stamped at that revision and upgraded; one
whose schema already matches this version (made by this version's create_all) is stamped
at head.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

HERE = Path(__file__).resolve().parent
BASELINE = "0001"  # the schema of the release before migrations (create_all + added columns)


def config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def differences(database_url: str) -> list:
    """What differs between the database and this version's models (empty when they match)."""
    from ..db import Base
    from .. import models  # noqa: F401  (registers the tables)

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


def current(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> str:
    """Bring the database to `revision`; returns what was done (for the CLI to print)."""
    cfg = config(database_url)
    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    note = ""
    if tables and "alembic_version" not in tables:
        if not differences(database_url):
            command.stamp(cfg, "head")
            return "the schema already matched this version: stamped at head"
        command.stamp(cfg, BASELINE)
        note = f"a database from before migrations: stamped at {BASELINE}, then "
    before = current(database_url)
    command.upgrade(cfg, revision)
    after = current(database_url)
    return note + (f"upgraded {before or 'an empty database'} -> {after}" if before != after else f"already at {after}")
