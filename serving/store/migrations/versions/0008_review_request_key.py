"""A review's request key (the ``Idempotency-Key`` header of its POST), unique: a retried review is written once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Adding a nullable column writes no row, so the trail's append-only triggers are not fired.
    op.add_column("reviews", sa.Column("request_key", sa.String(64), nullable=True))
    op.create_index("ux_reviews_request_key", "reviews", ["request_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_reviews_request_key", table_name="reviews")
    op.drop_column("reviews", "request_key")
