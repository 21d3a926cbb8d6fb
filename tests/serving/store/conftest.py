"""The case store's database, once per engine: the embedded SQLite file and a throw-away PostgreSQL
server (tests/postgres.py). Every test of this folder runs against both."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from models.config import REPO_ROOT
from serving.store import CaseStore
from tests.postgres import INSTALL_HINT, postgres_bin, temporary_postgres

ARTIFACTS = REPO_ROOT / "test-artifacts" / "store"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not installed on this CI machine: {INSTALL_HINT}")
        pytest.skip(f"PostgreSQL is not installed: {INSTALL_HINT}")
    with temporary_postgres(ARTIFACTS / "postgres") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty database of each engine for each test."""
    name = f"t{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.db"
        yield f"sqlite:///{path}"
        for f in ARTIFACTS.glob(f"{name}.db*"):
            f.unlink()
        return
    server: str = request.getfixturevalue("postgres_url")
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = server.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[CaseStore]:
    s = CaseStore(db_url)
    yield s
    s.close()


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
