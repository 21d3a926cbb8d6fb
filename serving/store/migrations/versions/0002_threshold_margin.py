"""Each case's model threshold, and its risk's margin over it on the log-odds scale (the worklist's order across
kinds).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
import math

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_EPS = 1e-6


def _margin(risk: float, threshold: float) -> float:
    """As serving.store.cases.threshold_margin when this migration was written (a migration keeps its own copy:
    it must do what it did even after the application's code changes)."""

    def logit(p: float) -> float:
        p = min(max(p, _EPS), 1.0 - _EPS)
        return math.log(p / (1.0 - p))

    return logit(risk) - logit(threshold)


def upgrade() -> None:
    op.add_column("cases", sa.Column("threshold", sa.Float, nullable=True))
    op.add_column("cases", sa.Column("margin", sa.Float, nullable=True))
    conn = op.get_bind()
    cases = sa.table("cases", sa.column("id", sa.String), sa.column("risk", sa.Float), sa.column("prediction"))
    rows = conn.execute(sa.select(cases.c.id, cases.c.risk, cases.c.prediction)).all()
    for case_id, risk, prediction in rows:  # every stored prediction carries its model's threshold
        threshold = json.loads(prediction).get("threshold")
        if isinstance(threshold, int | float):
            conn.execute(
                sa.text("UPDATE cases SET threshold = :t, margin = :m WHERE id = :id"),
                {"t": float(threshold), "m": _margin(float(risk), float(threshold)), "id": case_id},
            )


def downgrade() -> None:
    op.drop_column("cases", "margin")
    op.drop_column("cases", "threshold")
