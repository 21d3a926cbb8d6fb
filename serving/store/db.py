"""The database behind cases and reviews: its URL, the engine, and migrations at start-up.

``MEDLENS_DB_URL`` names it (SQLAlchemy URL). Unset: an embedded SQLite file, ``.run/medlens.db`` under
the repository (WAL mode), so ``make run`` needs nothing else. Deployments with several users and
nodes: PostgreSQL, ``postgresql+psycopg://user:password@host:5432/medlens`` (docs/deploy.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from models.config import REPO_ROOT

logger = logging.getLogger("ray.serve")

DB_URL_ENV = "MEDLENS_DB_URL"
DEFAULT_SQLITE = REPO_ROOT / ".run" / "medlens.db"
MIGRATIONS = Path(__file__).parent / "migrations"
#: PostgreSQL advisory lock key held while migrating, so two processes never migrate at once.
_MIGRATION_LOCK = 0x4D65644C656E73  # "MedLens"
_MIGRATING = threading.Lock()


def db_url(env: dict[str, str] | Any) -> str:
    """``MEDLENS_DB_URL`` from ``env`` (os.environ), else the embedded SQLite file."""
    return str(env.get(DB_URL_ENV) or f"sqlite:///{DEFAULT_SQLITE}")


def describe(url: str) -> str:
    """The URL without its password, fit for logs and error messages; where SQLAlchemy cannot parse it, its scheme
    alone: never an error, nor anything after the scheme (a password a parser misread may be anywhere in it)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        shown = scheme if scheme.replace("+", "").replace("_", "").isalnum() and len(scheme) <= 40 else "?"
        return f"{shown}://… (unparseable)"


#: PostgreSQL: a statement or lock wait that runs past these fails (503 to the reader) instead of holding one of
#: the ingress's threads for minutes, and TCP keepalives find a connection a failover left dead. Migrations lift
#: the statement and lock limits (:func:`migrate`).
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 5,
    "options": "-c statement_timeout=30000 -c lock_timeout=10000",
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite: WAL, a 30 s busy timeout, writes in ``BEGIN IMMEDIATE`` transactions
    (take ``immediate=True`` as an execution option) so that concurrent writers queue instead of failing."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=8,
            max_overflow=8,
            pool_timeout=10,
            connect_args=POSTGRES_CONNECT_ARGS,
        )
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver's own BEGIN off: _on_begin issues it
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
        yield conn


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default the newest migration); a no-op when it is there already
    (idempotent). Every revision runs in one transaction, begun here: a failure leaves the schema as it was."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's migration context is module state: one migration at a time in a process. Across processes: the
    # transaction begun here, which Alembic takes for an external one and so never commits between revisions,
    # holds SQLite's write lock (BEGIN IMMEDIATE) from the version check to the last revision; PostgreSQL's
    # advisory lock, taken in it, makes another replica's migration wait for this one.
    with _MIGRATING, engine.connect().execution_options(immediate=True) as conn:
        postgres = conn.dialect.name == "postgresql"
        conn.begin()
        try:
            if postgres:
                conn.execute(text("SET LOCAL statement_timeout = 0"))  # this transaction: a migration of many rows
                conn.execute(text("SET LOCAL lock_timeout = 0"))  # may take minutes, and wait for another replica
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.commit()
        except BaseException as exc:
            cause = getattr(exc, "orig", None) or exc  # the driver's own error, e.g. psycopg's DuplicateColumn
            logger.error(
                "migrating the case database %s to %s failed, nothing of it was kept: %s (%s): %s",
                engine.url.render_as_string(hide_password=True),
                revision,
                type(exc).__name__,
                type(cause).__name__,
                str(cause).strip().splitlines()[0] if str(cause).strip() else "",
            )
            raise
        finally:
            _end_migration(conn, postgres)


def _end_migration(conn: Connection, postgres: bool) -> None:
    """Roll back what a failed migration left open, then release PostgreSQL's advisory lock. The lock belongs to
    the session, not the transaction: the rollback keeps it, and an aborted transaction refuses the unlock
    (InFailedSqlTransaction). A connection that cannot do either is invalidated: closing it ends its session, and
    the lock with it, instead of returning it to the pool still holding the lock."""
    try:
        if conn.in_transaction():
            conn.rollback()
        if postgres:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()
    except SQLAlchemyError as exc:
        logger.warning(
            "the case database's migration lock could not be released on its connection (%s): closing the "
            "connection releases it",
            type(exc).__name__,
        )
        conn.invalidate()
