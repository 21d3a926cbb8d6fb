"""Routes of cases, the worklist and reviews, served by the ``medlens`` ingress (prefix ``/``).

``POST /v1/cases`` takes one or more files (or zips of them), predicts each new one through the model
deployments (the ingress gives :data:`CASES` its ``predict``), and stores the case; the other routes read
and append to the database (serving/store) in worker threads. The database down: these routes answer 503
and predictions are unaffected.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, File, Header, Path, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from models.catalogue import ModelName
from models.errors import MedLensInputError
from serving._casefiles import CaseFile, Rejected, Unpacked, ZipLimits, classify
from serving._http import AUTH, ERROR_RESPONSES, ApiError, read_upload
from serving._protocol import ItemError, Upload
from serving._settings import CaseArgs
from serving.schemas import (
    Agreement,
    CaseDetail,
    CaseExplanation,
    CaseKind,
    CaseSummary,
    CaseUpload,
    DicomIdentity,
    ErrorResponse,
    IdentityViews,
    MortalityPrediction,
    ReaderName,
    RejectedFile,
    RequestKey,
    Review,
    ReviewIn,
    SepsisPrediction,
    Worklist,
    WorklistQuery,
    XrayPrediction,
    kept_and_id,
)
from serving.store.agreement import agreement
from serving.store.export import reviews_csv, reviews_fhir

if TYPE_CHECKING:  # SQLAlchemy loads in the ingress only (see serving/store/__init__.py)
    from serving.store.cases import CaseSource, CaseStore, NewCase

logger = logging.getLogger("ray.serve")

#: (model name, upload, explain) -> an X-ray, sepsis or mortality prediction (explain: with its attributions)
Predict = Callable[[str, Upload, bool], Awaitable[Any]]


@dataclass
class CaseService:
    store: CaseStore
    predict: Predict
    args: CaseArgs
    max_upload_bytes: int


class _Holder:
    """The replica's case service, set by the ingress's constructor (see serving._http.REPLICA_HTTP for why
    module state: ``@serve.ingress`` serves a copy of the FastAPI app)."""

    service: CaseService | None = None


CASES = _Holder()
router = APIRouter(tags=["cases"])

_CASE_ID = Path(
    description="the case id (SHA-256 of the uploaded file; of an ICU file as its case keeps it: a 2012 record "
    "without its RecordID, an age over 89 as its challenge's code for 90 or older)"
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorResponse, "description": "unknown case id"},
    503: {"model": ErrorResponse, "description": "the case database is unavailable (predictions still work)"},
}


def _service() -> CaseService:
    if CASES.service is None:
        raise ApiError(503, "unavailable", "The case service is starting; retry in a few seconds.")
    return CASES.service


#: The case database's own threads: a database that stalls holds these, never the threads the ingress's other
#: routes (/healthz, /v1/models, an upload's unpacking) run on.
_DB_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="medlens-db")
#: How long a route waits for the database before it answers 503 (PostgreSQL's statement timeout is 30 s, SQLite's
#: busy timeout 30 s: this is their backstop).
DB_WAIT_S = 45.0


async def _db(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from serving.store.cases import StoreError

    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(
            loop.run_in_executor(_DB_THREADS, functools.partial(call, *args, **kwargs)), DB_WAIT_S
        )
    except StoreError as exc:
        raise ApiError(exc.status_code, exc.kind, exc.message) from None
    except TimeoutError:
        raise ApiError(
            503,
            "database_unavailable",
            f"The case database did not answer within {DB_WAIT_S:g} s: reviews and the worklist cannot be read or "
            "saved right now; predictions still work. Retry shortly; operators: the serving log names the database.",
        ) from None


def _check_id(case_id: str) -> str:
    if len(case_id) != 64 or any(c not in "0123456789abcdef" for c in case_id):
        raise ApiError(404, "unknown_case", f"No case {case_id[:80]!r}: a case id is 64 lower-case hex digits.")
    return case_id


def _new_case(case_id: str, file: CaseFile, model: str, prediction: Any, record: bytes) -> NewCase:
    """``record``: what the case keeps of an ICU file (:func:`serving.schemas.kept_and_id`)."""
    from serving.store.cases import NewCase

    if isinstance(prediction, XrayPrediction):
        # a DICOM whose pixels carry burned-in text that may identify the patient: its pixels are not kept
        kept = prediction.preview_png if not prediction.burned_in else None
        image = base64.b64decode(kept) if kept else None
        body = prediction.model_dump(mode="json", exclude={"preview_png", "heatmap_png"})
        return NewCase(
            id=case_id,
            kind="xray",
            model=model,
            model_version=prediction.version,
            source_format=prediction.source_format,
            risk=prediction.probability,
            calibrated_risk=prediction.calibrated_probability,
            label=prediction.label,
            prediction=body,
            image_png=image,
            in_distribution=prediction.in_distribution,
            uncertain=None if prediction.prediction_set is None else len(prediction.prediction_set) != 1,
            synthetic=prediction.synthetic,
        )
    # an ICU record: its attributions are not kept (GET /v1/cases/{id}/explanation computes them from the record)
    if isinstance(prediction, MortalityPrediction):
        kind: CaseKind = "mortality"
        risk, calibrated, label = prediction.probability, prediction.calibrated_probability, str(prediction.label)
        unkept: Any = {"top_features"}  # pydantic's exclude: a set of fields, or a mapping into lists
    else:
        assert isinstance(prediction, SepsisPrediction)
        top = prediction.peak  # a stay's case is its highest-scoring hour: its score and calibrated probability
        kind = "sepsis"
        risk, calibrated = (0.0, None) if top is None else (top.probability, top.calibrated_probability)
        label = prediction.stay_label
        unkept = {"hours": {"__all__": {"top_features"}}}
    return NewCase(
        id=case_id,
        kind=kind,
        model=model,
        model_version=prediction.version,
        source_format=file.upload_name.rsplit(".", 1)[-1],
        risk=risk,
        calibrated_risk=calibrated,
        label=label,
        prediction=prediction.model_dump(mode="json", exclude=unkept),
        # what the model read, to explain the case again: without the RecordID that names a 2012 stay, an age
        # over 89 as its challenge's code
        record=record,
    )


def _about(item: CaseFile, error: ApiError) -> str:
    """A model's refusal of a case file, told of the file by its place in the upload as every rejection is
    ("File 2: line 3: ...", "File 1, member 4 is empty: ..."), not by the name the model read it under."""
    if error.detail.startswith(item.upload_name):
        return item.where.capitalize() + error.detail.removeprefix(item.upload_name)
    return f"{item.where.capitalize()}: {error.detail}"


def _same_as(item: CaseFile, first: CaseFile, refused: RejectedFile) -> RejectedFile:
    """``item``, whose bytes are ``first``'s, refused as ``first`` was (its model read them once)."""
    detail = f"{item.where.capitalize()} holds the same bytes as {first.where}, refused for the same reason."
    return RejectedFile(file=item.where, status=refused.status, error=refused.error, detail=detail)


def _classified(
    where: str, name: str | None, data: bytes, limits: ZipLimits, unpacked: Unpacked
) -> list[CaseFile | Rejected]:
    return list(classify(where, name, data, limits, unpacked))


def _kept_and_ids(found: list[CaseFile]) -> list[tuple[bytes, str]]:
    """What each case file's case keeps, and its id (:func:`serving.schemas.kept_and_id`)."""
    return [kept_and_id(f.kind, f.data) for f in found]


def _rejected(where: str, error: ItemError) -> RejectedFile:
    return RejectedFile(file=where, status=error.status, error=error.error, detail=error.detail)


@router.post(
    "/v1/cases",
    status_code=201,
    response_model=CaseUpload,
    dependencies=AUTH,
    responses={**_ERRORS, 413: {"model": ErrorResponse, "description": "upload, zip or file over its limit"}},
)
async def create_cases(
    file: list[UploadFile] = File(
        ..., description="one or more PNG, JPEG, DICOM, PSV, CSV or PhysioNet 2012 .txt files, or .zip of them"
    ),
) -> CaseUpload:
    """Make a case of each file: the case id is the SHA-256 of its bytes (of an ICU file, as its case keeps it:
    a PhysioNet 2012 record without its RecordID rows, an age over 89 as its challenge's code for 90 or older;
    the same file again is the same case, not predicted twice); its prediction is stored with
    the model version that made it. Files that cannot be read are listed in `rejected`; when none made a case,
    the first problem is the answer."""
    service = _service()
    args = service.args
    limits = ZipLimits(
        max_members=args.max_zip_members,
        max_unzipped_bytes=int(args.max_unzipped_mb * 1024 * 1024),
        max_member_bytes=service.max_upload_bytes,
    )
    found: list[CaseFile] = []
    rejected: list[RejectedFile] = []
    unpacked = Unpacked()  # one budget for all the upload's zips
    for index, upload in enumerate(file, start=1):
        data = await read_upload(
            upload,
            service.max_upload_bytes
            if not (upload.filename or "").lower().endswith(".zip")
            else int(args.max_request_mb * 1024 * 1024),
        )
        # unpacking and hashing off the event loop: the ingress's other routes answer meanwhile
        items = await asyncio.to_thread(_classified, f"file {index}", upload.filename, data, limits, unpacked)
        for item in items:
            if isinstance(item, Rejected):
                rejected.append(_rejected(item.where, item.error))
            else:
                found.append(item)
        if len(found) > args.max_files:
            raise ApiError(
                413, "too_many_files", f"More than {args.max_files} files in one case upload: send them in several."
            )
    kept_ids = await asyncio.to_thread(_kept_and_ids, found)
    ids = [case_id for _, case_id in kept_ids]
    records = {case_id: record for record, case_id in kept_ids}
    existing: dict[str, CaseSummary] = await _db(service.store.existing, list(set(ids)))
    gate = asyncio.Semaphore(args.concurrency)

    async def make(case_id: str, item: CaseFile) -> tuple[CaseSummary, bool] | RejectedFile:
        if case_id in existing:
            return existing[case_id], False
        model = args.models()[item.kind]
        include = frozenset({"xray": {"preview"}, "sepsis": {"vitals"}, "mortality": set()}[item.kind])
        async with gate:
            try:
                prediction = await service.predict(model, Upload(item.data, item.upload_name, include), False)
            except ApiError as exc:
                return RejectedFile(file=item.where, status=exc.status, error=exc.error, detail=_about(item, exc))
        new_case = _new_case(case_id, item, model, prediction, records[case_id])
        made: tuple[CaseSummary, bool] = await _db(service.store.add, new_case)
        return made

    firsts: dict[str, CaseFile] = {}
    for case_id, item in zip(ids, found, strict=True):
        firsts.setdefault(case_id, item)  # the same bytes twice in one upload (a zip and a file, say): one case
    results = await asyncio.gather(*(make(i, f) for i, f in firsts.items()))
    by_id = dict(zip(firsts, results, strict=True))
    cases: dict[str, CaseSummary] = {}
    created = 0
    for case_id, item in zip(ids, found, strict=True):
        result, first = by_id[case_id], firsts[case_id]
        if isinstance(result, RejectedFile):
            rejected.append(result if item is first else _same_as(item, first, result))
        elif case_id not in cases:
            summary, new = result
            created += int(new)
            cases[case_id] = summary
    if not cases:
        if not rejected:
            raise ApiError(422, "no_files", "The upload holds no file MedLens reads (an empty zip?).")
        problem = rejected[0]
        more = f" ({len(rejected) - 1} more problem(s))" if len(rejected) > 1 else ""
        raise ApiError(problem.status, problem.error, f"{problem.detail}{more}")
    logger.info("case upload: %d case(s), %d new, %d rejected", len(cases), created, len(rejected))
    return CaseUpload(cases=list(cases.values()), created=created, rejected=rejected)


@router.post(
    "/v1/dicom/identity",
    response_model=DicomIdentity,
    dependencies=AUTH,
    responses={
        **ERROR_RESPONSES,
        415: {"model": ErrorResponse, "description": "not a DICOM file whose header can be read"},
        503: _ERRORS[503],
    },
)
async def dicom_identity_of(
    reader: Annotated[ReaderName, Query(description="who asks (recorded, as a review's reviewer is)")],
    file: UploadFile = File(..., description="a DICOM file (any file name, extension optional)"),
) -> DicomIdentity:
    """The patient identifiers in a DICOM file's header, for a reader who asks to check whom an image belongs
    to (the X-ray page's "Show patient identifiers"). Predictions and cases never carry them. Read from the
    header alone (the pixels are not read); the identifiers are neither stored nor logged, but the view is:
    who, when and which file (its SHA-256), in an append-only trail (`GET /v1/dicom/identity/views`). No view
    is answered that could not be recorded (503)."""
    from models.xray_io import dicom_identity

    service = _service()
    data = await read_upload(file, service.max_upload_bytes)
    try:  # a file past the header's bounds (too many elements, a deflate bomb) is told what is wrong with it
        fields = await asyncio.to_thread(functools.partial(dicom_identity, data, refusals=True))
    except MedLensInputError as exc:
        raise ApiError(exc.status_code, exc.kind, exc.message) from None
    if fields is None:
        raise ApiError(
            415,
            "not_dicom",
            "The file is not a DICOM whose header can be read: patient identifiers are read from DICOM files "
            "only (a PNG or JPEG carries none that MedLens reads).",
        )
    view = await _db(service.store.record_identity_view, hashlib.sha256(data).hexdigest(), reader)
    return DicomIdentity(fields=fields, view=view)


@router.get("/v1/dicom/identity/views", response_model=IdentityViews, dependencies=AUTH, responses=_ERRORS)
async def identity_views(
    image_id: str | None = Query(
        None, pattern=r"^[0-9a-f]{64}$", description="only the views of this file (SHA-256, its case id)"
    ),
    limit: int = Query(500, ge=1, le=5000),
) -> IdentityViews:
    """Who saw which file's patient identifiers, and when, newest first (never the identifiers)."""
    return IdentityViews(views=await _db(_service().store.identity_views, image_id, limit))


@router.get("/v1/worklist", response_model=Worklist, dependencies=AUTH, responses=_ERRORS)
async def worklist(query: Annotated[WorklistQuery, Query()]) -> Worklist:
    """Cases to read, most urgent first: out of distribution, then uncertain, then the model's positive answers,
    then by how far past its own model's threshold (``threshold_margin``)."""
    result: Worklist = await _db(_service().store.worklist, query)
    return result


@router.get("/v1/cases/{case_id}", response_model=CaseDetail, dependencies=AUTH, responses=_ERRORS)
async def get_case(case_id: str = _CASE_ID) -> CaseDetail:
    """The case, its stored prediction (with the image as the model read it) and every review, oldest first."""
    result: CaseDetail = await _db(_service().store.get, _check_id(case_id))
    return result


@router.get(
    "/v1/cases/{case_id}/explanation",
    response_model=CaseExplanation,
    dependencies=AUTH,
    responses={**_ERRORS, 409: {"model": ErrorResponse, "description": "the case keeps nothing to explain"}},
)
async def explain_case(
    case_id: str = _CASE_ID,
    hour: int | None = Query(
        None,
        ge=0,
        le=1_000_000,
        description="a sepsis case: explain this hour alone (0-based row), in about a second whatever the stay's "
        "length; without it, every hour (its cost grows with the square of the stay's length)",
    ),
) -> CaseExplanation:
    """The case's model explains it again from what the case keeps of its input: an X-ray's Grad-CAM heatmap (on
    the stored image), a sepsis stay's top features at every hour (or at `hour`), a mortality record's at the 48th.
    Computed on each call, not stored."""
    service = _service()
    source: CaseSource = await _db(service.store.source, _check_id(case_id))
    if hour is not None and source.kind != "sepsis":
        raise ApiError(
            422, "invalid_request", f"query parameter `hour` applies to sepsis cases; this is {source.kind}."
        )
    if source.data is None:
        why = (
            "keeps no image (its DICOM does not rule out text burned into the pixels)"
            if source.kind == "xray"
            else "was stored before MedLens kept each case's record"
        )
        raise ApiError(
            409, "not_explainable", f"Case {case_id[:16]} {why}: upload the file again, on its page, to see why."
        )
    prediction = await service.predict(source.model, Upload(source.data, source.upload_name, explain_hour=hour), True)
    return CaseExplanation(case_id=case_id, prediction=prediction)


@router.post(
    "/v1/cases/{case_id}/reviews",
    status_code=201,
    response_model=Review,
    dependencies=AUTH,
    responses={
        **_ERRORS,
        201: {
            "description": "the review, as the trail keeps it (also when a request with its key wrote it before)",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when an earlier request with this `Idempotency-Key` wrote the review",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
    },
)
async def add_review(
    review: ReviewIn,
    response: Response,
    case_id: Annotated[str, _CASE_ID],
    idempotency_key: Annotated[
        RequestKey | None,
        Header(
            alias="Idempotency-Key",
            description="a new random token for each review (a UUID, say), sent again unchanged when the same "
            "review is sent again: a review that an earlier request with this key wrote is answered, not written "
            "twice; the key with another review is refused (422)",
        ),
    ] = None,
) -> Review:
    """Append a review. Reviews are never changed or deleted: a change of mind is a new review."""
    saved: tuple[Review, bool] = await _db(_service().store.add_review, _check_id(case_id), review, idempotency_key)
    if saved[1]:
        response.headers["Idempotent-Replayed"] = "true"
    return saved[0]


@router.delete("/v1/cases/{case_id}", response_model=Review, dependencies=AUTH, responses=_ERRORS)
async def delete_case(
    case_id: Annotated[str, _CASE_ID],
    reviewer: Annotated[ReaderName, Query(description="who deletes it")],
) -> Review:
    """Remove the case, its prediction and its pixels; the review trail keeps its reviews and gains a
    tombstone (returned)."""
    result: Review = await _db(_service().store.delete, _check_id(case_id), reviewer.strip())
    return result


@router.get(
    "/v1/reviews/export",
    dependencies=AUTH,
    responses={
        **_ERRORS,
        200: {
            "content": {"text/csv": {}, "application/fhir+json": {}},
            "description": "CSV, one row per trail row; or a FHIR R4B Bundle of DiagnosticReports",
        },
    },
)
async def export_reviews(
    format: Annotated[Literal["csv", "fhir"], Query()] = "csv",
    include_synthetic: Annotated[
        bool,
        Query(
            description="FHIR: add the reviews of synthetic cases (generated images), each report marked test data "
            "(`meta.security` HTEST), its conclusion saying it is no patient, without `conclusionCode`. The CSV "
            "has every review, and a `synthetic` column"
        ),
    ] = False,
) -> Response:
    """Every review: CSV (tombstones included; a `synthetic` column), or a FHIR R4B `Bundle` of one
    `DiagnosticReport` per review of a case that still exists, synthetic cases' only with `include_synthetic`."""
    store = _service().store
    trail = list(await _db(lambda: list(store.trail())))
    # built, validated and encoded on a worker thread: seconds for a long trail, which on the event loop held every
    # other route of the ingress
    if format == "csv":
        return await asyncio.to_thread(_csv_response, trail)
    installation: str = await _db(store.installation)
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return await asyncio.to_thread(_fhir_response, trail, stamp, installation, include_synthetic)


def _csv_response(trail: list[tuple[Review, CaseSummary | None]]) -> Response:
    return Response(
        reviews_csv(trail),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="medlens-reviews.csv"'},
    )


def _fhir_response(
    trail: list[tuple[Review, CaseSummary | None]], stamp: str, installation: str, include_synthetic: bool
) -> Response:
    return JSONResponse(reviews_fhir(trail, stamp, installation, include_synthetic), media_type="application/fhir+json")


@router.get("/v1/reviews/agreement", response_model=Agreement, dependencies=AUTH, responses=_ERRORS)
async def review_agreement(
    kind: CaseKind = Query("xray"),
    model: ModelName | None = Query(
        None,
        description="only the cases this model scored (a review agrees or disagrees with its case's model's "
        "label); default: every model's cases of the kind",
    ),
) -> Agreement:
    """Model vs reader agreement (Cohen's kappa, confusion against the readers' labels) and between readers
    (Scott's pi over pooled pairs) on the reviewed cases of one kind, from each reader's latest review.
    Synthetic cases are left out: a metric of real data never counts a generated image."""
    trail = list(await _db(lambda: list(_service().store.trail())))
    result: Agreement = await asyncio.to_thread(agreement, kind, trail, model)  # off the event loop, as the export
    return result
