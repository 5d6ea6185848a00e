"""Storage: one SQLAlchemy engine per process, SQLite by default, PostgreSQL in production.

The schema is created on start (`create_all`); every table lives in models.py.
"""
from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    """The declarative base every table in models.py derives from."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Database:
    """The engine and a session factory; `session()` is a commit-or-rollback scope."""

    def __init__(self, url: str):
        self.url = url
        kwargs: dict = {"future": True}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    @functools.cached_property
    def autocommit_engine(self) -> Engine:
        """PostgreSQL: a second, small pool whose connections commit each statement as it runs and
        are not pinged before use, for the webhook hot path (inbox.store_event: one statement, one
        round trip). Its caller retries once when a connection turns out to be dead. Nothing is reset
        when a connection goes back (no transaction is ever open on it: a rollback would be a wasted call)."""
        return create_engine(self.url, future=True, isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=8,
                             pool_reset_on_return=None)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def create_all(self) -> None:
        """Create missing tables. Several processes starting together may race: the loser retries."""
        from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

        from . import models  # noqa: F401  (registers the tables)

        for attempt in range(5):
            try:
                Base.metadata.create_all(self.engine)
                self._add_missing_columns()
                return
            except (OperationalError, ProgrammingError, IntegrityError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _add_missing_columns(self) -> None:
        """Additive schema changes only: a nullable column a newer Keybridge added is created
        in place. Anything else (a type change, a removed column) needs a real migration."""
        from sqlalchemy import inspect, text

        inspector = inspect(self.engine)
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                if not column.nullable:
                    raise RuntimeError(f"Table {table.name} lacks column {column.name}, which cannot be added in place; "
                                       "back up the database and recreate it, or migrate it by hand.")
                kind = column.type.compile(dialect=self.engine.dialect)
                with self.engine.begin() as connection:
                    connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}'))

    @contextmanager
    def session(self):
        session: Session = self.Session()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if "autocommit_engine" in self.__dict__:
            self.autocommit_engine.dispose()


def insert_new(bind, table):
    """`INSERT ... ON CONFLICT DO NOTHING` into `table` (a model or Table) in the dialect of `bind`
    (a Session, Connection, Engine or dialect name; PostgreSQL or SQLite): a row whose key exists
    already is skipped inside the statement, with no error to catch and no savepoint around it.
    Add `.returning(...)` to learn which rows were new."""
    if isinstance(bind, str):
        dialect = bind
    else:
        dialect = (bind.get_bind() if isinstance(bind, Session) else bind).dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()


def _sqlite_pragmas(dbapi_connection, _record):
    # WAL lets the web process write while the worker reads; synchronous=FULL
    # makes a commit durable before the webhook is acknowledged.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
