"""Cases, the worklist and the review trail, on the database of :mod:`serving.store.db`.

Synchronous (SQLAlchemy sessions on a connection pool): the serving ingress calls it from worker
threads. Every database failure becomes :class:`StoreUnavailable` (HTTP 503), every unknown case
:class:`CaseNotFound` (404), every review that does not fit its case :class:`InvalidReview` (422).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import Engine, and_, case, func, select
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from models.risk_smoothing import logit
from serving.schemas import (
    POSITIVE_LABELS,
    REVIEW_LABELS,
    CaseDetail,
    CaseKind,
    CaseSummary,
    IdentityView,
    MortalityPrediction,
    Review,
    ReviewIn,
    SepsisPrediction,
    Worklist,
    WorklistQuery,
    XrayPrediction,
    as_reader_label,
    contradicted_verdict,
    label_withheld,
)
from serving.store.db import DB_URL_ENV, describe, make_engine, migrate, write_transaction
from serving.store.tables import CaseRow, IdentityViewRow, InstallationRow, ReviewRow

logger = logging.getLogger(__name__)


class StoreError(Exception):
    status_code = 500
    kind = "store_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StoreUnavailable(StoreError):
    status_code = 503
    kind = "database_unavailable"


class CaseNotFound(StoreError):
    status_code = 404
    kind = "unknown_case"


class InvalidReview(StoreError):
    status_code = 422
    kind = "invalid_review"


class ReusedRequestKey(StoreError):
    status_code = 422
    kind = "idempotency_key_reused"


_REUSED_KEY = (
    "Header `Idempotency-Key`: this key was sent before with another review. A key names one review: send the "
    "same review again with it, or a new review with a new key."
)


def _replayed(earlier: ReviewRow, case_id: str, review: ReviewIn) -> Review:
    """The review ``earlier``, written under the key of a request for ``review`` of ``case_id``: the same
    request sent again, or :class:`ReusedRequestKey`."""
    same = (
        earlier.action == "review"
        and earlier.case_id == case_id
        and earlier.reviewer == review.reviewer
        and earlier.verdict == review.verdict
        and earlier.label == review.label
        and earlier.comment == (review.comment or None)
    )
    if not same:
        raise ReusedRequestKey(_REUSED_KEY)
    return _review(earlier)


def _check_consistent(review: ReviewIn, model_label: str, allowed: tuple[str, ...], withheld: bool) -> None:
    """:class:`InvalidReview` for a review that contradicts itself: a verdict on a label readers were not shown,
    "agree" with a label other than the model's, "disagree" with the model's own label. ``model_label``: the case's
    label as the model says it (a sepsis model's SEPSIS_ALERT is a reader's SEPSIS)."""
    if review.verdict is None:
        return
    if withheld:
        raise InvalidReview(
            f"Field `verdict`: this case's model label is withheld from readers (its input is out of distribution), "
            f"so there is nothing to agree or disagree with. Leave `verdict` out and send your own `label`, one of "
            f"{', '.join(allowed)}."
        )
    said = as_reader_label(model_label)
    contradicted = contradicted_verdict(review, model_label)
    if contradicted == "agree":
        raise InvalidReview(
            f"Fields `verdict` and `label` contradict each other: `agree` is with the model's label, {said}, but "
            f"`label` is {review.label}. Send `verdict` `disagree` with `label` {review.label}, or `agree` without "
            "`label`."
        )
    if contradicted == "disagree":
        others = ", ".join(lab for lab in allowed if lab != said)
        raise InvalidReview(
            f"Fields `verdict` and `label` contradict each other: `disagree` is with the model's label, {said}, but "
            f"`label` is that label. Send `verdict` `agree` without `label`, or `disagree` with your own label "
            f"({others}) or without one."
        )


@dataclass(frozen=True)
class NewCase:
    """What a prediction leaves in the database (no patient identifier: see serving/store/tables.py)."""

    id: str
    kind: CaseKind
    model: str
    model_version: str
    source_format: str
    risk: float  # the model's score: the X-ray's or stay's, a sepsis stay's at its highest-scoring hour
    label: str
    prediction: dict[str, Any]  # the prediction response as JSON, without images
    calibrated_risk: float | None = None  # the calibrated probability beside ``risk`` (None: not calibrated)
    image_png: bytes | None = None
    record: bytes | None = None  # an ICU stay's record as its model read it (no identifier: see tables.py)
    in_distribution: bool | None = None
    uncertain: bool | None = None
    synthetic: bool = False


@dataclass(frozen=True)
class CaseSource:
    """What a case's model read: an X-ray's stored image, an ICU stay's record (``data`` None: not kept)."""

    kind: CaseKind
    model: str
    upload_name: str  # "upload." and the format, as a prediction's upload is named
    data: bytes | None


def threshold_margin(risk: float, threshold: float) -> float:
    """How far ``risk`` is past its model's ``threshold``: the difference of their log-odds (> 0: past it; 1.0:
    e times the threshold's odds). Unlike the risks, it is comparable across kinds."""
    both = logit(np.array([risk, threshold]))  # (2,)
    return float(both[0] - both[1])


#: ids per statement where a caller gives a list of them: each is a bound parameter, and PostgreSQL takes at most
#: 65,535 in one statement (SQLite 32,766)
_BATCH = 10_000


def _batches(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _BATCH):
        yield ids[start : start + _BATCH]


def _iso(t: datetime) -> str:
    if t.tzinfo is None:  # SQLite returns naive datetimes; every stored time is UTC
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _identity_view(row: IdentityViewRow) -> IdentityView:
    return IdentityView(id=row.id, image_id=row.image_id, reader=row.reader, viewed_at=_iso(row.viewed_at))


def _review(row: ReviewRow) -> Review:
    return Review(
        id=row.id,
        case_id=row.case_id,
        action=row.action,
        reviewer=row.reviewer,
        created_at=_iso(row.created_at),
        verdict=row.verdict,
        label=row.label,
        comment=row.comment,
        model=row.model,
        model_version=row.model_version,
    )


class CaseStore:
    """Cases and reviews. The engine is made, and migrations run, on first use (and again after a failure),
    so a database that is down at start-up does not stop predictions from being served."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._installation: str | None = None
        self._lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                try:
                    engine = make_engine(self.url)
                except ValueError as exc:  # make_url's int() of a port that is not a number: the URL is malformed
                    raise ArgumentError(f"the database URL cannot be parsed ({type(exc).__name__})") from None
                try:
                    migrate(engine)
                except Exception:
                    engine.dispose()
                    raise
                self._engine = engine
            return self._engine

    def ready(self) -> None:
        """Connect and migrate now; :class:`StoreUnavailable` when the database cannot be reached."""
        with self._guard():
            self.engine  # noqa: B018

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
            self._installation = None

    def _guard(self) -> Any:
        return _Guard(self.url)

    # -- cases -------------------------------------------------------------------------------------------
    def existing(self, ids: list[str]) -> dict[str, CaseSummary]:
        """The cases among ``ids`` that exist already (a re-upload needs no new prediction)."""
        if not ids:
            return {}
        found: dict[str, CaseSummary] = {}
        with self._guard(), Session(self.engine) as session:
            for some in _batches(ids):
                rows = session.execute(self._summary_query().where(CaseRow.id.in_(some))).all()
                found.update({r.id: self._summary(r) for r in rows})
        return found

    def add(self, new: NewCase) -> tuple[CaseSummary, bool]:
        """Store ``new``; when a case with its id exists already, keep that one. -> (the case, created?)"""
        stated = new.prediction.get("threshold")  # every model's prediction states its threshold
        threshold = float(stated) if isinstance(stated, int | float) else None
        row = CaseRow(
            id=new.id,
            kind=new.kind,
            model=new.model,
            model_version=new.model_version,
            created_at=datetime.now(UTC),
            source_format=new.source_format,
            risk=float(new.risk),
            threshold=threshold,
            margin=None if threshold is None else threshold_margin(float(new.risk), threshold),
            calibrated_risk=new.calibrated_risk,
            label=new.label,
            in_distribution=new.in_distribution,
            uncertain=new.uncertain,
            synthetic=new.synthetic,
            prediction=json.dumps(new.prediction, separators=(",", ":")),
            image_png=new.image_png,
            record=None if new.record is None else zlib.compress(new.record, 6),
        )
        created = True
        with self._guard():
            try:
                with write_transaction(self.engine) as conn, Session(bind=conn) as session:
                    session.add(row)
                    session.flush()
            except IntegrityError:
                created = False  # uploaded concurrently, or before: the first one stands
            found = self.existing([new.id]).get(new.id)
        if found is None:
            raise StoreUnavailable(f"case {new.id[:12]} was stored but cannot be read back; retry")
        return found, created

    def worklist(self, query: WorklistQuery | None = None) -> Worklist:
        """The cases ``query`` leaves (by default, the first page of the unreviewed ones), most urgent first;
        its ``not_reviewed_by`` (in its one spelling, :data:`serving.schemas.ReaderName`) is compared with the
        reviewer's name as reviews store it, and with its decomposed form (NFD), which names stored before API 1.15
        may have."""
        query = query or WorklistQuery()
        select_summary, status_expr = self._summary_and_status()
        if query.id_prefix is not None:
            select_summary = select_summary.where(CaseRow.id.startswith(query.id_prefix, autoescape=True))
        if query.status != "all":
            select_summary = select_summary.where(status_expr == query.status)
        if query.kind is not None:
            select_summary = select_summary.where(CaseRow.kind == query.kind)
        if query.synthetic != "include":
            select_summary = select_summary.where(CaseRow.synthetic.is_(query.synthetic == "only"))
        if query.not_reviewed_by is not None:
            mine, gone = aliased(ReviewRow, name="mine"), aliased(ReviewRow, name="gone")
            deleted_since = select(gone.id).where(
                gone.case_id == mine.case_id, gone.action == "delete", gone.id > mine.id
            )
            read = select(mine.id).where(
                mine.case_id == CaseRow.id,
                mine.action == "review",
                mine.reviewer.in_({query.not_reviewed_by, unicodedata.normalize("NFD", query.not_reviewed_by)}),
                ~deleted_since.exists(),  # a review of the case before it was deleted is not a read of this one
            )
            select_summary = select_summary.where(~read.exists())
        with self._guard(), Session(self.engine) as session:
            total = session.execute(select(func.count()).select_from(select_summary.subquery())).scalar_one()
            ordered = select_summary.order_by(
                case((CaseRow.in_distribution.is_(False), 0), else_=1),
                case((CaseRow.uncertain.is_(True), 0), else_=1),
                # the kinds' risks are not on one scale: a positive label is past its own model's threshold, and
                # the margin says how far
                case((CaseRow.label.in_(POSITIVE_LABELS), 0), else_=1),
                CaseRow.margin.desc().nulls_last(),
                CaseRow.risk.desc(),
                CaseRow.created_at,
                CaseRow.id,
            )
            rows = session.execute(ordered.limit(query.limit).offset(query.offset)).all()
            return Worklist(cases=[self._summary(r) for r in rows], total=int(total))

    def get(self, case_id: str) -> CaseDetail:
        with self._guard(), Session(self.engine) as session:
            summary_row = session.execute(self._summary_query().where(CaseRow.id == case_id)).first()
            if summary_row is None:
                raise CaseNotFound(f"No case {case_id!r}: it was never uploaded, or it was deleted.")
            stored = session.execute(
                select(CaseRow.prediction, CaseRow.image_png, CaseRow.record.is_not(None).label("has_record")).where(
                    CaseRow.id == case_id
                )
            ).one()
            history = session.scalars(select(ReviewRow).where(ReviewRow.case_id == case_id).order_by(ReviewRow.id))
            summary = self._summary(summary_row)
            prediction = json.loads(stored.prediction)
            parsed: XrayPrediction | SepsisPrediction | MortalityPrediction
            if summary.kind == "xray":
                if stored.image_png is not None:
                    prediction["preview_png"] = base64.b64encode(stored.image_png).decode("ascii")
                parsed = XrayPrediction.model_validate(prediction)
            elif summary.kind == "mortality":
                parsed = MortalityPrediction.model_validate(prediction)
            else:
                parsed = SepsisPrediction.model_validate(prediction)
            explainable = stored.image_png is not None if summary.kind == "xray" else bool(stored.has_record)
            return CaseDetail(
                **summary.model_dump(),
                prediction=parsed,
                explainable=explainable,
                history=[_review(r) for r in history],
            )

    def source(self, case_id: str) -> CaseSource:
        """What the case's model read, to explain it again (``data`` None: the case keeps none)."""
        with self._guard(), Session(self.engine) as session:
            row = session.execute(
                select(CaseRow.kind, CaseRow.model, CaseRow.source_format, CaseRow.image_png, CaseRow.record).where(
                    CaseRow.id == case_id
                )
            ).first()
        if row is None:
            raise CaseNotFound(f"No case {case_id!r}: it was never uploaded, or it was deleted.")
        if row.kind == "xray":
            return CaseSource(row.kind, row.model, "upload.png", row.image_png)
        data = None if row.record is None else zlib.decompress(row.record)
        return CaseSource(row.kind, row.model, f"upload.{row.source_format}", data)

    def delete(self, case_id: str, reviewer: str) -> Review:
        """Remove the case (its prediction, image and record) and write a tombstone into the review trail."""
        with self._guard(), write_transaction(self.engine) as conn, Session(bind=conn) as session:
            row = session.get(CaseRow, case_id, with_for_update=True)  # a review or delete in flight waits
            if row is None:
                raise CaseNotFound(f"No case {case_id!r}: it was never uploaded, or it was deleted already.")
            tombstone = ReviewRow(
                case_id=case_id,
                action="delete",
                reviewer=reviewer,
                created_at=datetime.now(UTC),
                model=row.model,
                model_version=row.model_version,
            )
            session.add(tombstone)
            session.delete(row)
            session.flush()
            return _review(tombstone)

    # -- reviews -----------------------------------------------------------------------------------------
    def add_review(self, case_id: str, review: ReviewIn, key: str | None = None) -> tuple[Review, bool]:
        """Append ``review`` to ``case_id``'s trail. ``key``: the request's idempotency key; a review already
        written under it is answered instead of a new one (a request sent again after its answer was lost).
        -> (the review, whether it was written before)."""
        with self._guard(), write_transaction(self.engine) as conn, Session(bind=conn) as session:
            # locked until the review is written: a delete in flight cannot slip in between, nor a second request
            # with the same key (PostgreSQL; SQLite's write transaction is exclusive already)
            row = session.get(CaseRow, case_id, with_for_update=True)
            if key is not None:
                earlier = session.scalars(select(ReviewRow).where(ReviewRow.request_key == key)).first()
                if earlier is not None:
                    return _replayed(earlier, case_id, review), True
            if row is None:
                raise CaseNotFound(f"No case {case_id!r}: it was never uploaded, or it was deleted.")
            allowed = REVIEW_LABELS[row.kind]
            if review.label is not None and review.label not in allowed:
                raise InvalidReview(
                    f"Field `label`: {review.label!r} is not a label of a {row.kind} case; use one of "
                    f"{', '.join(allowed)}, or leave it out."
                )
            if review.verdict is None and not label_withheld(row.in_distribution):
                raise InvalidReview(
                    "Field `verdict` is required: readers see this case's label, so a review agrees or disagrees "
                    "with it (and may add `label`)."
                )
            if review.verdict is None and review.label is None:
                raise InvalidReview(
                    "Field `label` is required without `verdict`: give the reader's own label, one of "
                    f"{', '.join(allowed)}."
                )
            _check_consistent(review, row.label, allowed, label_withheld(row.in_distribution))
            new = ReviewRow(
                case_id=case_id,
                action="review",
                reviewer=review.reviewer,  # in its one spelling (ReaderName)
                created_at=datetime.now(UTC),
                verdict=review.verdict,
                label=review.label,
                comment=review.comment or None,
                model=row.model,
                model_version=row.model_version,
                request_key=key,
            )
            session.add(new)
            try:
                session.flush()
            except IntegrityError:
                # the key's other use is another case's review, written since the look-up above (its case was
                # locked, not this one)
                raise ReusedRequestKey(_REUSED_KEY) from None
            return _review(new), False

    # -- who saw a DICOM file's patient identifiers ------------------------------------------------------
    def record_identity_view(self, image_id: str, reader: str) -> IdentityView:
        """Add a view to the trail; the caller answers the identifiers only once it is recorded."""
        with self._guard(), write_transaction(self.engine) as conn, Session(bind=conn) as session:
            row = IdentityViewRow(image_id=image_id, reader=reader.strip(), viewed_at=datetime.now(UTC))
            session.add(row)
            session.flush()
            return _identity_view(row)

    def identity_views(self, image_id: str | None = None, limit: int = 500) -> list[IdentityView]:
        """The views, newest first; of one file when ``image_id`` is given."""
        query = select(IdentityViewRow).order_by(IdentityViewRow.id.desc()).limit(limit)
        if image_id is not None:
            query = query.where(IdentityViewRow.image_id == image_id)
        with self._guard(), Session(self.engine) as session:
            return [_identity_view(r) for r in session.scalars(query)]

    def trail(self) -> Iterator[tuple[Review, CaseSummary | None]]:
        """Every row of the review trail, oldest first, with its case: None once deleted, and for the rows up to
        its latest tombstone when the same file was uploaded again (they were of the case deleted)."""
        with self._guard(), Session(self.engine) as session:
            rows = list(session.scalars(select(ReviewRow).order_by(ReviewRow.id)))
            # the cases that have a trail, chosen in SQL: a list of their ids would be one bound parameter each,
            # and PostgreSQL's protocol takes at most 65,535 in a statement
            reviewed = select(ReviewRow.case_id).distinct()
            cases = {
                r.id: self._summary(r)
                for r in session.execute(self._summary_query().where(CaseRow.id.in_(reviewed))).all()
            }
        reset = {row.case_id: row.id for row in rows if row.action == "delete"}  # oldest first: the latest stays
        for row in rows:
            yield _review(row), cases.get(row.case_id) if row.id > reset.get(row.case_id, 0) else None

    def predictions(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        """The stored prediction JSON of each case in ``ids`` (for exports)."""
        found: dict[str, dict[str, Any]] = {}
        with self._guard(), Session(self.engine) as session:
            for some in _batches(sorted(ids)):
                rows = session.execute(select(CaseRow.id, CaseRow.prediction).where(CaseRow.id.in_(some))).all()
                found.update({r.id: json.loads(r.prediction) for r in rows})
        return found

    def installation(self) -> str:
        """This database's installation id (a UUID, made by migration 0009): the FHIR export's namespace."""
        with self._lock:
            if self._installation is not None:
                return self._installation
        with self._guard(), Session(self.engine) as session:
            ids = list(session.scalars(select(InstallationRow.id)))
        if len(ids) != 1:
            raise StoreError(
                f"The case database holds {len(ids)} installation ids (table `installation`), not one: the FHIR "
                "export names its reports under it. Operators: restore the row it had (a database made again "
                "gets a new one from its migrations)."
            )
        with self._lock:
            self._installation = ids[0]
        return ids[0]

    # -- queries -----------------------------------------------------------------------------------------
    @staticmethod
    def _latest() -> Any:
        """Per case: the newest trail row (any action) and the number of reviews since its latest tombstone (a
        case deleted and uploaded again is a new case: the reviews of the one deleted stay in the trail, and
        count for it alone)."""
        resets = (
            select(ReviewRow.case_id.label("case_id"), func.max(ReviewRow.id).label("reset_id"))
            .where(ReviewRow.action == "delete")
            .group_by(ReviewRow.case_id)
            .subquery("resets")
        )
        since_reset = ReviewRow.id > func.coalesce(resets.c.reset_id, 0)
        return (
            select(
                ReviewRow.case_id.label("case_id"),
                func.max(ReviewRow.id).label("last_id"),
                func.sum(case((and_(ReviewRow.action == "review", since_reset), 1), else_=0)).label("n"),
            )
            .outerjoin(resets, resets.c.case_id == ReviewRow.case_id)
            .group_by(ReviewRow.case_id)
            .subquery("latest")
        )

    def _summary_query(self) -> Any:
        return self._summary_and_status()[0]

    def _summary_and_status(self) -> tuple[Any, Any]:
        """The worklist's columns per case, and its status as an SQL expression over the same aliases."""
        latest = self._latest()
        last = aliased(ReviewRow, name="last_review")
        status = case(
            (last.action != "review", "unreviewed"),
            (last.verdict == "agree", "reviewed"),
            (last.verdict == "disagree", "disagreed"),
            (last.action == "review", "reviewed"),  # the reader's own label of a case whose label is withheld
            else_="unreviewed",
        )
        query = (
            select(
                CaseRow.id,
                CaseRow.kind,
                CaseRow.model,
                CaseRow.model_version,
                CaseRow.created_at,
                CaseRow.source_format,
                CaseRow.risk,
                CaseRow.calibrated_risk,
                CaseRow.threshold,
                CaseRow.margin,
                CaseRow.label,
                CaseRow.in_distribution,
                CaseRow.uncertain,
                CaseRow.synthetic,
                func.coalesce(latest.c.n, 0).label("n_reviews"),
                last.action.label("last_action"),
                last.verdict.label("last_verdict"),
                status.label("status"),
            )
            .outerjoin(latest, latest.c.case_id == CaseRow.id)
            .outerjoin(last, and_(last.id == latest.c.last_id))
        )
        return query, status

    @staticmethod
    def _summary(row: Any) -> CaseSummary:
        return CaseSummary(
            id=row.id,
            kind=row.kind,
            model=row.model,
            model_version=row.model_version,
            created_at=_iso(row.created_at),
            source_format=row.source_format,
            risk=row.risk,
            calibrated_risk=row.calibrated_risk,
            threshold=row.threshold,
            threshold_margin=row.margin,
            label=row.label,
            in_distribution=row.in_distribution,
            uncertain=row.uncertain,
            synthetic=bool(row.synthetic),
            status=row.status,
            reviews=int(row.n_reviews or 0),
            last_verdict=row.last_verdict if row.last_action == "review" else None,
        )


class _Guard:
    """Database failures -> StoreUnavailable (503) naming the database without its password: a database URL that
    no engine can be made of (malformed; its dialect or driver not installed) tells operators to check the URL's
    setting; any other failure, that the database is not available."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, StoreError):
            return False
        if isinstance(exc, ArgumentError | ImportError):
            # a module's name says which driver is missing; a parser's words are left out: they may quote the URL
            said = f": {exc}" if isinstance(exc, ImportError | NoSuchModuleError) else ""
            logger.warning(
                "the case database URL %s (%s) cannot be used: %s%s",
                describe(self.url),
                DB_URL_ENV,
                type(exc).__name__,
                said,
            )
            raise StoreUnavailable(
                f"The case database cannot be opened: its URL is malformed or names a driver that is not installed "
                f"({type(exc).__name__}). Reviews and the worklist cannot be read or saved; predictions still work. "
                f"Operators: check the database URL setting, {DB_URL_ENV} (or the variable the serving config's "
                "`cases.db_url_env` names): a SQLAlchemy URL such as "
                "postgresql+psycopg://user:password@host:5432/medlens; the serving log says what is wrong."
            ) from exc
        if isinstance(exc, SQLAlchemyError | OSError):
            # where the database is goes to the operators' log, not to every reader who meets the error
            logger.warning("the case database %s is not available: %s", describe(self.url), type(exc).__name__)
            raise StoreUnavailable(
                f"The case database is not available ({type(exc).__name__}): reviews and the worklist cannot be "
                "read or saved right now; predictions still work. Retry shortly; operators: the serving log names "
                f"the database, check {DB_URL_ENV} and that the database is up."
            ) from exc
        return False
