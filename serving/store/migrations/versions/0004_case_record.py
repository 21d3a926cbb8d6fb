"""An ICU stay's case keeps its record (zlib-compressed), so that its model can explain it again from the
worklist. Cases stored before keep none: their files must be uploaded again to be explained.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cases", sa.Column("record", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    op.drop_column("cases", "record")
