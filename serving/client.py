"""Small synchronous client for MedLens serving (used by the dashboard, the tests and scripts).

>>> client = MedLensClient.from_env()          # MEDLENS_SERVING_URL / MEDLENS_API_TOKEN
>>> client.health().models
['cnn', 'lstm', 'transformer']

Every failure is a :class:`ServingError` with the HTTP status (0 when the server cannot be
reached), the machine-readable ``error`` kind and a ``detail`` that says what to do.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from models.catalogue import entry, generator_entry, models_for
from models.synthetic_mark import SyntheticMark
from serving.schemas import (
    Agreement,
    CaseDetail,
    CaseExplanation,
    CaseUpload,
    DicomIdentity,
    ErrorResponse,
    Health,
    IdentityViews,
    ModelList,
    ModelMetrics,
    MortalityPrediction,
    Review,
    ReviewIn,
    SepsisPrediction,
    ServiceStatus,
    Worklist,
    WorklistQuery,
    XrayPrediction,
)

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "MEDLENS_SERVING_URL"
TOKEN_ENV = "MEDLENS_API_TOKEN"

_T = TypeVar("_T", bound=BaseModel)


@dataclass(frozen=True)
class SyntheticImage:
    """A synthetic radiograph from ``POST /v1/synthetic/xray``: PNG bytes (band + text chunk) and its mark."""

    png: bytes
    mark: SyntheticMark


class ServingError(Exception):
    """A request to MedLens serving failed.

    ``status``: HTTP status code, 0 when the server was not reachable or answered garbage.
    ``error``: machine-readable kind (``invalid_image``, ``queue_full``, ``unreachable``, ...).
    ``detail``: what went wrong and what to do, fit to show a person.
    """

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(status, error, detail)
        self.status = status
        self.error = error
        self.detail = detail

    @property
    def input_refused(self) -> bool:
        """Serving refused the file itself (400, 413, 415, 422): any model sent the same file refuses it too."""
        return self.status in (400, 413, 415, 422)

    def __str__(self) -> str:
        prefix = f"HTTP {self.status} " if self.status else ""
        return f"{prefix}{self.error}: {self.detail}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> ServingError:
        """Turn a non-2xx response into an error, whatever its body looks like."""
        status = response.status_code
        try:
            body: Any = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            body = None
        if isinstance(body, dict):
            try:
                parsed = ErrorResponse.model_validate(body)
                return cls(status, parsed.error, parsed.detail)
            except ValidationError:
                pass
            # A FastAPI/Starlette default body ({"detail": ...}) from something in front of us.
            if "detail" in body:
                detail = body["detail"]
                text = detail if isinstance(detail, str) else json.dumps(detail)[:500]
                return cls(status, str(body.get("error", _kind_for(status))), text)
        text = response.text.strip()[:500] if response.content else ""
        if status == 503 and "backpressure" in text.lower():
            # Ray Serve's replica refused the request before MedLens code ran: its queue is full.
            wait = response.headers.get("Retry-After", "a few")
            return cls(
                status,
                "queue_full",
                f"The model is at capacity (its request queue is full). Retry after {wait} s; if this persists, "
                "the operators should raise its max_replicas or max_queued_requests.",
            )
        reason = response.reason_phrase or "error"
        return cls(status, _kind_for(status), text or f"the server answered {status} {reason}")


def new_request_key() -> str:
    """A new ``Idempotency-Key`` for one review: 32 URL-safe characters, 192 random bits."""
    return secrets.token_urlsafe(24)


def _kind_for(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        413: "payload_too_large",
        415: "unsupported_media_type",
        422: "invalid_input",
        429: "too_many_requests",
        503: "unavailable",
        504: "timeout",
    }.get(status, "server_error" if status >= 500 else "http_error")


class MedLensClient:
    """Synchronous HTTP client for the MedLens serving API. Reuses one connection pool; close it
    with :meth:`close` or use it as a context manager."""

    def __init__(
        self, base_url: str = DEFAULT_URL, token: str | None = None, timeout: float = 120.0, retry_s: float = 20.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # without surrounding whitespace, as the server reads its own (a token file's last newline is no part of it)
        self.token = (token or "").strip() or None
        self.timeout = timeout
        #: How long an idempotent request (every GET, predictions, case uploads, a review sent with its key) is retried
        #: when a replica dies under it: a dropped connection, 502 / 504 / 503 ``unavailable``, a plain-text
        #: 404 (a restarted front door without its routes yet) or plain-text 500 (HAProxy's answer when the
        #: replica died under the request) from the front door, or a refused connection from a server that
        #: answered before (its front door restarting). Not MedLens's own JSON errors, a full queue (503
        #: ``queue_full``: the caller decides), nor a server that never answered.
        self.retry_s = retry_s
        self._answered = False  # a server that never answered is not waited for (a wrong URL fails fast)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    @classmethod
    def from_env(cls, timeout: float = 120.0) -> MedLensClient:
        """``$MEDLENS_SERVING_URL`` (default http://127.0.0.1:8000) and ``$MEDLENS_API_TOKEN`` (surrounding
        whitespace dropped; empty: no token)."""
        return cls(os.environ.get(URL_ENV) or DEFAULT_URL, os.environ.get(TOKEN_ENV), timeout)

    # -- endpoints -------------------------------------------------------------------------------------
    def health(self) -> Health:
        return self._request("GET", "/healthz", Health, retry=False)  # reports the state now; never waits

    def models(self) -> ModelList:
        return self._request("GET", "/v1/models", ModelList)

    def metrics(self, name: str) -> ModelMetrics:
        return self._request("GET", f"/v1/models/{name}/metrics", ModelMetrics)

    def predict_xray(
        self, data: bytes, filename: str, explain: bool = False, preview: bool = False, model: str = "cnn"
    ) -> XrayPrediction:
        """``preview``: also the image as the model read it (``preview_png``), for display."""
        return self._predict(model, data, filename, XrayPrediction, explain=explain, preview=preview)

    def predict_sepsis(
        self,
        data: bytes,
        filename: str,
        model: str,
        explain: bool = False,
        vitals: bool = False,
        explain_hour: int | None = None,
    ) -> SepsisPrediction:
        """``vitals``: also the vital signs as the model read them (``vitals``, ``sepsis_label``), for display;
        ``explain_hour``: the attributions of that hour alone (``explain``: of every hour)."""
        hour = {} if explain_hour is None else {"explain_hour": str(explain_hour)}
        return self._predict(model, data, filename, SepsisPrediction, hour, explain=explain, vitals=vitals)

    def predict_mortality(
        self, data: bytes, filename: str, model: str = "mortality-lstm", explain: bool = False
    ) -> MortalityPrediction:
        """In-hospital mortality from a PhysioNet 2012 record (``Time,Parameter,Value``, the first 48 hours):
        the 48th hour's risk and the risk after each hour; ``explain``: also the variables that drove it. The
        model may be scaled to zero: its first prediction waits for a replica to start (seconds)."""
        choices = [e.name for e in models_for(task="mortality")]
        if model not in choices:
            raise ServingError(
                404, "unknown_model", f"{model!r} is not a mortality model: choose one of {', '.join(choices)}."
            )
        return self._predict(model, data, filename, MortalityPrediction, explain=explain)

    def _predict(
        self,
        model: str,
        data: bytes,
        filename: str,
        schema: type[_T],
        params: dict[str, str] | None = None,
        **flags: bool,
    ) -> _T:
        try:
            target = entry(model)
        except ValueError as exc:
            raise ServingError(404, "unknown_model", str(exc)) from None
        fallback = _FALLBACK_NAMES[target.task.input_kind]
        return self._request(
            "POST",
            target.predict_route,
            schema,
            params={name: _flag(value) for name, value in flags.items() if value or name == "explain"} | (params or {}),
            files={"file": (_upload_name(filename, fallback), data, "application/octet-stream")},
        )

    def synthetic_xray(self, label: str, seed: int | None = None, generator: str = "gan") -> SyntheticImage:
        """One synthetic chest radiograph (PNG bytes, marked as synthetic) of class ``label``; the same seed
        gives the same image, no seed a random one. Retried like a prediction (it changes nothing)."""
        try:
            target = generator_entry(generator)
        except ValueError as exc:
            raise ServingError(404, "unknown_model", str(exc)) from None
        params: dict[str, Any] = {"label": label}
        if seed is not None:
            params["seed"] = seed
        response = self._send("POST", target.route, params=params)
        mark = SyntheticMark.parse(response.headers.get("X-MedLens-Synthetic", ""))
        if response.headers.get("content-type", "") != "image/png" or mark is None:
            raise ServingError(
                0,
                "bad_response",
                f"MedLens serving at {self.base_url} answered POST {target.route} without a marked PNG: client "
                "and server versions differ?",
            )
        return SyntheticImage(png=response.content, mark=mark)

    def service(self) -> ServiceStatus:
        return self._request("GET", "/v1/service", ServiceStatus)

    # -- cases, the worklist, reviews ------------------------------------------------------------------
    def dicom_identity(self, data: bytes, filename: str, reader: str) -> DicomIdentity:
        """The patient identifiers in a DICOM file's header, for ``reader``, who asks (the view is recorded; 415
        for a file that is not a readable DICOM); only the name's extension is sent."""
        files = {"file": (_upload_name(filename, "upload"), data, "application/octet-stream")}
        # not retried: each call adds a view to the append-only trail, which a retry would record twice
        return self._request(
            "POST", "/v1/dicom/identity", DicomIdentity, params={"reader": reader}, files=files, retry=False
        )

    def identity_views(self, image_id: str | None = None, limit: int = 500) -> IdentityViews:
        """Who saw which DICOM file's patient identifiers, newest first; of one file (its SHA-256) if given."""
        params: dict[str, str | int] = {"limit": limit} | ({} if image_id is None else {"image_id": image_id})
        return self._request("GET", "/v1/dicom/identity/views", IdentityViews, params=params)

    def upload_cases(self, files: list[tuple[str, bytes]]) -> CaseUpload:
        """``files``: (file name, bytes) pairs; only each name's extension is sent."""
        parts = [("file", (_upload_name(name, "upload"), data, "application/octet-stream")) for name, data in files]
        return self._request("POST", "/v1/cases", CaseUpload, files=parts)

    def worklist(self, query: WorklistQuery | None = None) -> Worklist:
        """The cases ``query`` leaves (by default, the first page of the unreviewed ones), most urgent first."""
        # what differs from the schema's defaults, which serving shares: a field added later is not sent to an
        # older server while it keeps its default
        params = (query or WorklistQuery()).model_dump(exclude_none=True, exclude_defaults=True)
        return self._request("GET", "/v1/worklist", Worklist, params=params)

    def case(self, case_id: str) -> CaseDetail:
        return self._request("GET", f"/v1/cases/{case_id}", CaseDetail)

    def case_explanation(self, case_id: str, hour: int | None = None) -> CaseExplanation:
        """The case's model explains it again from what the case keeps (409 when it keeps nothing); ``hour``: a
        sepsis case's that hour alone."""
        params = {} if hour is None else {"hour": hour}
        return self._request("GET", f"/v1/cases/{case_id}/explanation", CaseExplanation, params=params)

    def review(self, case_id: str, review: ReviewIn, key: str | None = None) -> Review:
        """Append ``review``. With ``key`` (:func:`new_request_key`, one per review, the same for every send of
        it) the request is retried as an idempotent one and serving writes it once; without, it is sent once,
        since a retry after a lost answer could add the review twice."""
        headers = {} if key is None else {"Idempotency-Key": key}
        return self._request(
            "POST",
            f"/v1/cases/{case_id}/reviews",
            Review,
            retry=key is not None,
            json=review.model_dump(),
            headers=headers,
        )

    def delete_case(self, case_id: str, reviewer: str) -> Review:
        return self._request("DELETE", f"/v1/cases/{case_id}", Review, params={"reviewer": reviewer})

    def agreement(self, kind: str = "xray", model: str | None = None) -> Agreement:
        """Agreement on the reviewed cases of ``kind`` (``model``: only the cases that model scored)."""
        params = {"kind": kind} if model is None else {"kind": kind, "model": model}
        return self._request("GET", "/v1/reviews/agreement", Agreement, params=params)

    def export_reviews(self, format: str = "csv", include_synthetic: bool = False) -> bytes:
        """Every review as CSV, or (``format="fhir"``) a FHIR R4B Bundle as JSON bytes, which leaves the reviews of
        synthetic cases out unless ``include_synthetic`` (then marked as test data)."""
        params = {"format": format} | ({"include_synthetic": "true"} if include_synthetic else {})
        response = self._send("GET", "/v1/reviews/export", params=params)
        return response.content

    # -- plumbing --------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, schema: type[_T], retry: bool = True, **kwargs: Any) -> _T:
        response = self._send(method, path, retry=retry, **kwargs)
        try:
            return schema.model_validate_json(response.content)
        except ValidationError as exc:
            raise ServingError(
                0,
                "bad_response",
                f"MedLens serving at {self.base_url} answered {method} {path} with a body that is not a "
                f"{schema.__name__} ({exc.error_count()} problem(s)): client and server versions differ?",
            ) from exc

    def _send(self, method: str, path: str, retry: bool = True, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + (self.retry_s if retry and method in ("GET", "POST") else 0.0)
        attempt = 0
        while True:
            try:
                return self._send_once(method, path, **kwargs)
            except _Retryable as retryable:
                wait = min(retryable.after_s if retryable.after_s is not None else 0.25 * 2**attempt, 4.0)
                if time.monotonic() + wait > deadline:
                    raise retryable.error from None
                time.sleep(wait)
                attempt += 1

    def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServingError(
                0,
                "timeout",
                f"MedLens serving at {self.base_url} did not answer {method} {path} within "
                f"{self.timeout:g} s: it may be overloaded; retry, or raise the client timeout.",
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:  # dropped mid-request
            raise _Retryable(
                ServingError(0, "connection_dropped", f"MedLens serving at {self.base_url} dropped {method} {path}."),
                None,
            ) from exc
        except httpx.TransportError as exc:
            error = ServingError(
                0,
                "unreachable",
                f"MedLens serving at {self.base_url} is not reachable: start it with `serve run ray_config.yaml`",
            )
            if self._answered and isinstance(exc, httpx.ConnectError):  # it was up: its front door restarts
                raise _Retryable(error, None) from exc
            raise error from exc
        self._answered = True
        if response.is_error:
            error = ServingError.from_response(response)
            if response.status_code in (502, 504) or (response.status_code == 503 and error.error != "queue_full"):
                after = response.headers.get("Retry-After", "")
                raise _Retryable(error, float(after) if after.isdigit() else None)
            if response.status_code in (404, 500) and not response.headers.get("content-type", "").startswith(
                "application/json"
            ):
                # Not MedLens's own 404 / 500 (always JSON), but the front door's: a restarted HAProxy that has
                # no routes yet answers every path with a plain-text 404 until the controller sends them
                # (seconds, measured), and HAProxy turns a replica that died under the request (its 502 /
                # 503 / 504) into a plain-text 500 "Internal Server Error".
                raise _Retryable(error, None)
            raise error
        return response

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Retryable(Exception):
    """A failure worth retrying (the replica died or is restarting); ``error`` is what the caller sees if
    the retries run out."""

    def __init__(self, error: ServingError, after_s: float | None) -> None:
        super().__init__(error)
        self.error = error
        self.after_s = after_s


#: The upload name sent when the caller's file name has no usable extension, by input kind.
_FALLBACK_NAMES = {"image": "upload.png", "series": "upload.psv", "events": "upload.txt"}


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _upload_name(filename: str, fallback: str) -> str:
    """Only the extension travels: the server never needs (and must never log) a patient's file name."""
    suffix = os.path.splitext(os.path.basename(filename or ""))[1].lower()
    if not suffix or len(suffix) > 8 or not suffix[1:].isalnum():
        return fallback
    return "upload" + suffix


__all__ = ["DEFAULT_URL", "TOKEN_ENV", "URL_ENV", "MedLensClient", "ServingError", "SyntheticImage"]
