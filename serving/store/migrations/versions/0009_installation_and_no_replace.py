"""This database's installation id, and the trails refuse SQLite's REPLACE.

``installation`` holds one row, a random UUID made here: the FHIR export names its reports under it, so that two
installations, or one whose database was made again, never give two reviews the same identifier.

SQLite: ``INSERT OR REPLACE`` (and ``REPLACE INTO``) deletes the row in its way without firing a delete trigger,
so it rewrote a review or an identity view in place. A BEFORE INSERT trigger now refuses a row whose id, or (for a
review) whose request key, is taken already: the insert that REPLACE would have made over it. PostgreSQL refuses
``INSERT ... ON CONFLICT DO UPDATE`` already: its update fires the trails' update triggers.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_NO_REPLACE = {
    "reviews": (
        "reviews are an append-only audit trail: add a new review instead of replacing one",
        "id = NEW.id OR (NEW.request_key IS NOT NULL AND request_key = NEW.request_key)",
    ),
    "identity_views": (
        "identity views are an append-only audit trail: they are never replaced",
        "id = NEW.id",
    ),
}


def upgrade() -> None:
    installation = op.create_table("installation", sa.Column("id", sa.String(36), primary_key=True))
    op.bulk_insert(installation, [{"id": str(uuid.uuid4())}])
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, (message, taken) in _NO_REPLACE.items():
        # an id the database is about to assign is -1 here (NEW.id of an INTEGER PRIMARY KEY left out): no row's
        op.execute(
            f"CREATE TRIGGER {table}_append_only_insert BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {taken}) "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in _NO_REPLACE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_insert")
    op.drop_table("installation")
