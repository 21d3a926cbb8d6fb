"""The trails refuse TRUNCATE too (PostgreSQL): row triggers never fire for it, so ``TRUNCATE reviews`` emptied the
review trail, and ``TRUNCATE identity_views`` the record of who saw patient identifiers. SQLite has no TRUNCATE.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TRAILS = ("reviews", "identity_views")
_NO_CHANGE = "append-only audit trail: rows are never truncated"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION trail_no_truncate() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{_NO_CHANGE}'; END $$"
    )
    for table in _TRAILS:
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION trail_no_truncate()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TRAILS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS trail_no_truncate()")
