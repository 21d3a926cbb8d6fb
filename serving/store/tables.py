"""The database tables of cases and reviews (SQLAlchemy 2 declarative). Alembic migrations
(``serving/store/migrations``) create and change them; this module is their Python view.

No column holds a patient identifier: a case keeps its prediction, the de-identified DICOM fields MedLens
shows (modality, view, study year, pixel spacing) inside it, and what its model read, to explain it again: for an
X-ray the pixels (a grayscale PNG, no header), for an ICU stay its record (a 2012 record without its RecordID;
an age over 89 as its challenge's code for 90 or older).
Reviews are the audit trail: rows are only ever inserted (the migrations add triggers that refuse UPDATE and
DELETE on ``reviews``, TRUNCATE on PostgreSQL, and on SQLite an INSERT over a row that exists, as REPLACE makes).
So are the views of a DICOM file's patient identifiers (``identity_views``): who asked to see them, when, and which
file (its SHA-256), never the identifiers themselves.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, LargeBinary, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class CaseRow(Base):
    """One uploaded study or ICU stay; ``id`` is the SHA-256 of the uploaded file's bytes."""

    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # xray | sepsis | mortality
    model: Mapped[str] = mapped_column(String(32))  # catalogue name of the model that predicted
    model_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_format: Mapped[str] = mapped_column(String(16))  # png, jpeg, dicom, psv, csv, txt
    #: the model's score: the X-ray's, the mortality stay's after 48 h, a sepsis stay's highest hourly one
    risk: Mapped[float] = mapped_column(Float)
    #: the calibrated probability beside ``risk`` (a sepsis stay's at its highest-scoring hour); None: the
    #: checkpoint was not calibrated (and for cases stored before 0006 whose prediction carried none)
    calibrated_risk: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)  # the model's, from its prediction
    #: log-odds of ``risk`` minus log-odds of ``threshold``: how far past its own threshold, comparable across
    #: kinds (the risks are not); None (as ``threshold``) only where a prediction carried no threshold
    margin: Mapped[float | None] = mapped_column(Float, nullable=True)
    label: Mapped[str] = mapped_column(String(32))  # the model's label at its threshold
    in_distribution: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None: not assessed
    uncertain: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None: not assessed
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # as 0001 made it
    prediction: Mapped[str] = mapped_column(Text)  # the prediction response as JSON, without images
    image_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    # an ICU stay's record as the model read it, zlib-compressed; None for X-rays and cases stored before 0004
    record: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)

    __table_args__ = (Index("ix_cases_worklist", "kind", "risk"),)


class ReviewRow(Base):
    """One row of the audit trail: a reader's review of a case (``action="review"``) or the tombstone of a
    deleted case (``action="delete"``)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # review | delete
    reviewer: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)  # agree | disagree
    label: Mapped[str | None] = mapped_column(String(32), nullable=True)  # the reader's own label
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(64))  # the version whose prediction the reader saw
    #: the ``Idempotency-Key`` its request carried (a random token the client made; None: none was sent). Unique:
    #: a request sent again after its answer was lost finds its review instead of writing a second one.
    request_key: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_reviews_case", "case_id", "id"),
        Index("ux_reviews_request_key", "request_key", unique=True),
    )


class IdentityViewRow(Base):
    """A reader saw the patient identifiers of a DICOM file (``POST /v1/dicom/identity``): append-only, as the
    reviews (migration 0005's triggers, and 0009's against REPLACE on SQLite)."""

    __tablename__ = "identity_views"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(String(64))  # SHA-256 of the file's bytes: its case id, were it one
    reader: Mapped[str] = mapped_column(String(100))
    viewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_identity_views_image", "image_id", "id"),)


class InstallationRow(Base):
    """This database's installation id: one row, a random UUID that migration 0009 made. The FHIR export names
    its reports under it, so reviews of two installations, or of one database made again, never share one."""

    __tablename__ = "installation"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
