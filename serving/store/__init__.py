"""Cases, the worklist and the append-only review trail in a real database (SQLAlchemy + Alembic):
SQLite embedded by default, PostgreSQL for deployments (``MEDLENS_DB_URL``). Exports as CSV and FHIR R4B.

The names below load their modules on first use (PEP 562): the model replicas import serving.app, which
names this package, and must not pay for SQLAlchemy, Alembic and fhir.resources they never use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.store.cases import (
        CaseNotFound,
        CaseStore,
        InvalidReview,
        NewCase,
        ReusedRequestKey,
        StoreError,
        StoreUnavailable,
    )
    from serving.store.db import DB_URL_ENV, db_url, describe

_WHERE = {
    "CaseNotFound": "serving.store.cases",
    "CaseStore": "serving.store.cases",
    "InvalidReview": "serving.store.cases",
    "NewCase": "serving.store.cases",
    "ReusedRequestKey": "serving.store.cases",
    "StoreError": "serving.store.cases",
    "StoreUnavailable": "serving.store.cases",
    "DB_URL_ENV": "serving.store.db",
    "db_url": "serving.store.db",
    "describe": "serving.store.db",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DB_URL_ENV",
    "CaseNotFound",
    "CaseStore",
    "InvalidReview",
    "NewCase",
    "ReusedRequestKey",
    "StoreError",
    "StoreUnavailable",
    "db_url",
    "describe",
]
