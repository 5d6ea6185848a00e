"""Alembic's environment: this version's models as the target, the URL from the config."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from adapter import models  # noqa: F401  (registers the tables)
from adapter.db import Base

target_metadata = Base.metadata
url = context.config.get_main_option("sqlalchemy.url")

if context.is_offline_mode():
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    with engine.connect() as connection:
        # render_as_batch: SQLite changes a table by copying it; PostgreSQL alters in place.
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
