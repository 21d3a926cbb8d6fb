"""Each case's calibrated probability beside its score (``risk``), for the worklist and the exports.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _calibrated(kind: str, prediction: dict[str, Any]) -> float | None:
    """The calibrated probability beside a stored case's ``risk``, read from its stored prediction as serving read
    it when this migration was written: the X-ray's and the mortality stay's ``calibrated_probability``, a sepsis
    stay's at its highest-scoring hour (the first of equals). A migration keeps its own copy: it must do what it
    did even after the application's code changes."""
    if kind == "sepsis":
        hours = [h for h in prediction.get("hours") or [] if isinstance(h.get("probability"), int | float)]
        value = max(hours, key=lambda h: h["probability"]).get("calibrated_probability") if hours else None
    else:
        value = prediction.get("calibrated_probability")
    return float(value) if isinstance(value, int | float) else None


def upgrade() -> None:
    op.add_column("cases", sa.Column("calibrated_risk", sa.Float, nullable=True))
    conn = op.get_bind()
    cases = sa.table("cases", sa.column("id", sa.String), sa.column("kind", sa.String), sa.column("prediction"))
    rows = conn.execute(sa.select(cases.c.id, cases.c.kind, cases.c.prediction)).all()
    for case_id, kind, prediction in rows:
        value = _calibrated(kind, json.loads(prediction))
        if value is not None:
            conn.execute(sa.text("UPDATE cases SET calibrated_risk = :c WHERE id = :id"), {"c": value, "id": case_id})


def downgrade() -> None:
    op.drop_column("cases", "calibrated_risk")
