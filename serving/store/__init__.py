"""Cases, the worklist and the append-only review trail in a real database (SQLAlchemy + Alembic):
SQLite embedded by default, PostgreSQL for deployments (``MEDLENS_DB_URL``). Exports as CSV and FHIR R4B."""

from serving.store.cases import CaseNotFound, CaseStore, InvalidReview, NewCase, StoreError, StoreUnavailable
from serving.store.db import DB_URL_ENV, db_url, describe

__all__ = [
    "DB_URL_ENV",
    "CaseNotFound",
    "CaseStore",
    "InvalidReview",
    "NewCase",
    "StoreError",
    "StoreUnavailable",
    "db_url",
    "describe",
]
