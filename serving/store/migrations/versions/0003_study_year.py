"""A stored X-ray prediction's DICOM fields keep the study's year, not its date (a date of service is an
identifier under HIPAA's Safe Harbor; the loader keeps only ``StudyYear`` since).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _year(value: object) -> str | None:
    """As models.xray_io.study_year when this migration was written (a migration keeps its own copy)."""
    text = str(value or "").strip()
    return text[:4] if len(text) >= 4 and text[:4].isdigit() and 1800 <= int(text[:4]) <= 2200 else None


def upgrade() -> None:
    conn = op.get_bind()
    cases = sa.table("cases", sa.column("id", sa.String), sa.column("kind", sa.String), sa.column("prediction"))
    rows = conn.execute(sa.select(cases.c.id, cases.c.prediction).where(cases.c.kind == "xray")).all()
    for case_id, prediction in rows:
        body = json.loads(prediction)
        fields = body.get("dicom")
        if not isinstance(fields, dict) or "StudyDate" not in fields:
            continue
        year = _year(fields.pop("StudyDate"))
        if year is not None:
            fields["StudyYear"] = year
        conn.execute(sa.text("UPDATE cases SET prediction = :p WHERE id = :id"), {"p": json.dumps(body), "id": case_id})


def downgrade() -> None:
    """The dates removed are not kept anywhere: nothing to restore."""
