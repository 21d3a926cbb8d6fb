"""Who saw a DICOM file's patient identifiers, when, and which file: an append-only trail, as the reviews.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_NO_CHANGE = "identity views are an append-only audit trail: they are never changed or deleted"


def upgrade() -> None:
    op.create_table(
        "identity_views",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("image_id", sa.String(64), nullable=False),
        sa.Column("reader", sa.String(100), nullable=False),
        sa.Column("viewed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_identity_views_image", "identity_views", ["image_id", "id"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER identity_views_append_only_{event.lower()} BEFORE {event} ON identity_views "
                f"BEGIN SELECT RAISE(ABORT, '{_NO_CHANGE}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION identity_views_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_NO_CHANGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER identity_views_append_only BEFORE UPDATE OR DELETE ON identity_views "
            "FOR EACH ROW EXECUTE FUNCTION identity_views_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS identity_views_append_only ON identity_views")
        op.execute("DROP FUNCTION IF EXISTS identity_views_append_only()")
    op.drop_table("identity_views")
