"""HTTP plumbing of the ingress: typed errors -> ErrorResponse, the bearer-token dependency (checked before a
route reads its body: :class:`TokenBeforeBody`) and upload reading with a size limit. Everything here is plain
FastAPI, usable without Ray."""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.schemas import ErrorResponse, error_words

logger = logging.getLogger("ray.serve")

#: Documented on every route that can fail.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "the request body cannot be parsed (malformed multipart or JSON)",
        401: "missing or wrong bearer token (only when the server has one configured)",
        413: "upload larger than the configured limit",
        415: "not a PNG, JPEG or DICOM image",
        422: "the file or a parameter is invalid; `detail` names the problem",
        503: "a model's queue is full or it is not ready; retry after the Retry-After header",
    }.items()
}


class ApiError(Exception):
    """Raised anywhere in the ingress; answered as ``ErrorResponse`` with ``status``."""

    def __init__(self, status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, error, detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


def error_response(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=error, detail=detail).model_dump()
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def retry_after_headers(seconds: float | None, default: float = 2.0) -> dict[str, str]:
    value = default if seconds is None or seconds <= 0 else seconds
    return {"Retry-After": str(max(1, math.ceil(value)))}


# -- per-process settings ---------------------------------------------------------------------------------
@dataclass
class ReplicaHttp:
    """What a replica's constructor decides about its HTTP app: the bearer token, where request statistics
    go, CORS. ``@serve.ingress`` serves a *copy* of the FastAPI app frozen when the class was decorated, so
    the constructor cannot reach the served app's ``state``; it sets this process-wide object instead
    (one replica per process). An app's own ``state`` (tests' in-process apps) takes precedence."""

    api_token: str | None = None
    #: the variable the token was read from (``ServingArgs.auth_token_env``), named in the 401's detail
    api_token_env: str = "MEDLENS_API_TOKEN"
    stats: Any = None
    cors: dict[str, Any] = field(default_factory=dict)  # CORSMiddleware keyword arguments; empty: off
    # request bodies above this (+ multipart framing) get 413 (BodyLimit); 0: the routes take no body; None: off
    max_body_bytes: int | None = None
    # exact paths allowed a larger body than max_body_bytes (the ingress's case upload: several files at once)
    route_body_bytes: dict[str, int] = field(default_factory=dict)


REPLICA_HTTP = ReplicaHttp()


def app_setting(app: Any, name: str) -> Any:
    """``app.state.<name>`` when the app has it, else this process's :data:`REPLICA_HTTP` value."""
    state = getattr(app, "state", None)
    if state is not None and hasattr(state, name):
        return getattr(state, name)
    return getattr(REPLICA_HTTP, name)


class ReplicaCors:
    """CORS as :data:`REPLICA_HTTP` says (set by the constructor, after the app was frozen): off while
    ``cors`` is empty, else Starlette's CORSMiddleware with those arguments."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: ASGIApp | None = None
        self._for: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        options = REPLICA_HTTP.cors
        if not options:
            await self.app(scope, receive, send)
            return
        if self._cors is None or self._for != options:
            self._cors, self._for = CORSMiddleware(self.app, **options), dict(options)
        await self._cors(scope, receive, send)


class BodyLimit:
    """Refuse a request body above its limit with 413 before it is parsed: by its Content-Length when it has
    one, else as it streams in (FastAPI parses a multipart body, and spools it to disk, before a route sees it;
    it reads and parses a JSON body whole, on the replica's event loop). A body refused by its Content-Length is
    refused before the token is checked (:class:`TokenBeforeBody` checks it when the route starts reading). The limit:
    :data:`REPLICA_HTTP` ``route_body_bytes`` for its path, else ``max_body_bytes``; a body that is not a
    multipart upload (a review, a query) at most :data:`MAX_PLAIN_BODY_BYTES`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stated = REPLICA_HTTP.max_body_bytes
        if scope["type"] != "http" or stated is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        stated = REPLICA_HTTP.route_body_bytes.get(scope.get("path", ""), stated)
        if not headers.get(b"content-type", b"").lower().startswith(b"multipart/"):
            stated = min(stated, MAX_PLAIN_BODY_BYTES)
        limit = stated + _MULTIPART_SLACK
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large_response(stated)(scope, receive, send)
            return
        seen = 0
        overflow = False
        replaced = False

        async def counted() -> Any:
            nonlocal seen, overflow
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    overflow = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Any) -> None:
            # Whatever the app answers once the body overflowed (the parser's own 400, say) becomes the 413.
            nonlocal replaced
            if not overflow:
                await send(message)
            elif not replaced:
                replaced = True
                await _too_large_response(stated)(scope, receive, send)

        try:
            await self.app(scope, counted, guarded_send)
        except _BodyTooLarge:
            if not replaced:
                await _too_large_response(stated)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


#: Room for the multipart framing around uploads of exactly the stated limit.
_MULTIPART_SLACK = 64 * 1024
#: The largest body that is not a multipart upload: a review, a synthetic-image request (a few hundred bytes).
MAX_PLAIN_BODY_BYTES = 1024 * 1024


def _too_large_response(limit: int) -> JSONResponse:
    if limit <= 0:  # a replica whose routes take their parameters in the query string (the synthetic images)
        return error_response(
            413,
            "payload_too_large",
            "This route takes no request body: send its parameters in the query string and the request without a body.",
        )
    return error_response(
        413,
        "payload_too_large",
        f"The request is too large: the limit is {limit / 1024 / 1024:g} MiB for this request. Downsample or "
        "compress the image (or trim the series), or send fewer files per request.",
    )


# -- authentication ---------------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description="MedLens API token (only when the server sets one)")

#: The variable the MedLens client and dashboard read the token from (serving/client.py ``TOKEN_ENV``).
CLIENT_TOKEN_ENV = "MEDLENS_API_TOKEN"


def _token_matches(supplied: str, expected: str) -> bool:
    return bool(supplied) and hmac.compare_digest(supplied.encode(), expected.encode())


def unauthorized(token_env: str) -> ApiError:
    """The 401 of a request without the right bearer token; ``token_env``: the server's token variable."""
    return ApiError(
        401,
        "unauthorized",
        "This MedLens server requires `Authorization: Bearer <token>` with its API token, the value of "
        f"{token_env} where the server runs. The MedLens client and dashboard send the {CLIENT_TOKEN_ENV} of "
        "their own environment: set it to that token.",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Every /v1 route depends on this. The token (set by the replica from the env var named by
    ``auth_token_env``, see :func:`app_setting`) empty or absent: no authentication. A route that reads a body
    has its token checked before that, by :class:`TokenBeforeBody`. ``async`` although it never awaits: FastAPI
    runs a plain ``def`` dependency in its thread pool, a thread hand-off per request."""
    expected: str | None = app_setting(request.app, "api_token")
    if not expected:
        return
    if not _token_matches(credentials.credentials if credentials is not None else "", expected):
        raise unauthorized(app_setting(request.app, "api_token_env"))


AUTH = [Depends(require_token)]

_NEEDS_TOKEN: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _depends_on_token(dependant: Any) -> bool:
    return any(d.call is require_token or _depends_on_token(d) for d in getattr(dependant, "dependencies", ()))


def needs_token(route: Any) -> bool:
    """Whether a route depends on :func:`require_token` (``dependencies=AUTH``, or a parameter of its own)."""
    try:
        return _NEEDS_TOKEN[route]
    except (KeyError, TypeError):
        pass
    declared = any(getattr(d, "dependency", None) is require_token for d in getattr(route, "dependencies", ()) or ())
    needed = declared or _depends_on_token(getattr(route, "dependant", None))
    with contextlib.suppress(TypeError):  # not weakly referable: asked again next time
        _NEEDS_TOKEN[route] = needed
    return needed


def _bearer_token(scope: Scope) -> str:
    """The credentials of the request's ``Authorization: Bearer ...`` header ("" without one)."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            scheme, credentials = get_authorization_scheme_param(value.decode("latin-1"))
            return credentials if scheme.lower() == "bearer" else ""
    return ""


class TokenBeforeBody:
    """The bearer token of a route that requires one (:func:`require_token`) is checked when the route first reads
    the request body, before FastAPI parses it: FastAPI reads and validates a route's JSON or multipart body
    before it runs the route's dependencies, so a malformed review without a token got 422 and its schema. The
    router has chosen the route (``scope["route"]``) by then. Without the right token the answer is the 401 of
    :func:`require_token`: whatever the app answers after the refused read (FastAPI's 400 for a body it could not
    read) is replaced by it. A route that reads no body is left to :func:`require_token` itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        checked = False
        started = False
        refusal: JSONResponse | None = None

        async def gated() -> Any:
            nonlocal checked, refusal
            if not checked:
                checked = True
                refusal = None if started else self._refusal(scope)
                if refusal is not None:
                    raise _Unauthorized
            return await receive()

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if refusal is None:
                started = started or message["type"] == "http.response.start"
                await send(message)
            elif not started:
                started = True
                await refusal(scope, receive, send)

        try:
            await self.app(scope, gated, guarded_send)
        except _Unauthorized:
            if not started and refusal is not None:
                started = True
                await refusal(scope, receive, send)

    @staticmethod
    def _refusal(scope: Scope) -> JSONResponse | None:
        """The 401 for this request, or None when its route needs no token or it carries the right one."""
        app = scope.get("app")
        expected: str | None = app_setting(app, "api_token")
        if not expected or not needs_token(scope.get("route")) or _token_matches(_bearer_token(scope), expected):
            return None
        exc = unauthorized(app_setting(app, "api_token_env"))
        return error_response(exc.status, exc.error, exc.detail, exc.headers)


class _Unauthorized(Exception):
    pass


# -- uploads ----------------------------------------------------------------------------------------------
async def read_upload(file: UploadFile, limit_bytes: int) -> bytes:
    """The upload's bytes, refusing anything above ``limit_bytes`` with 413 before reading it."""
    size = file.size
    if size is not None and size > limit_bytes:
        raise too_large(size, limit_bytes)
    data = await file.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise too_large(None, limit_bytes)
    return data


def too_large(size: int | None, limit_bytes: int) -> ApiError:
    have = f"is {size / 1024 / 1024:.1f} MiB" if size is not None else "is larger than that"
    return ApiError(
        413,
        "payload_too_large",
        f"The upload {have}; the limit is {limit_bytes / 1024 / 1024:g} MiB. Downsample or compress the image "
        "(or trim the series) and upload again.",
    )


# -- exception handlers -----------------------------------------------------------------------------------
def _describe_location(loc: Sequence[Any]) -> str:
    where, *rest = [str(x) for x in loc] or ["request"]
    name = ".".join(rest)
    kind = {"query": "query parameter", "path": "path parameter", "body": "body field", "header": "header"}
    return f"{kind.get(where, where)} `{name}`" if name else kind.get(where, where)


def validation_detail(errors: Sequence[Any]) -> tuple[str, str]:
    """(error kind, detail) for FastAPI's request validation errors."""
    problems: list[str] = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if loc[:2] == ("body", "file") or (loc == ("body",) and err.get("type") == "missing"):
            return (
                "missing_file",
                "The request has no file: send multipart/form-data with the upload in a field named `file` "
                "(e.g. `curl -F file=@image.png ...`).",
            )
        problems.append(f"{_describe_location(loc)}: {error_words(err)}")
    return "invalid_request", "; ".join(problems) + "." if problems else "The request is invalid."


def _unexpected(method: str, exc: BaseException) -> JSONResponse:
    # Type only: an exception message could quote the upload.
    logger.error("internal error on %s: %s", method, type(exc).__name__)
    return error_response(
        500,
        "internal_error",
        "MedLens serving hit an internal error. Retry; if it persists, report it to the operators "
        "(the server log has the error type and time).",
    )


class ContainUnexpected:
    """An exception no handler answered becomes the generic 500, its type alone logged, and goes no further.
    Starlette's outermost middleware answers the same 500 through ``on_unexpected`` but then raises the
    exception again, and Ray Serve logs its whole traceback and message, which could quote an upload."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            response = _unexpected(scope.get("method", ""), exc)
            if not started:  # else the client sees the answer cut short
                await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Every error answers ``ErrorResponse``; only genuine server bugs answer 500."""

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        kind, detail = validation_detail(exc.errors())
        return error_response(422, kind, detail)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        if status == 404:
            detail = f"No route {request.method} {request.url.path}: see /docs for the API."
        elif status == 405:
            detail = f"{request.method} is not allowed on this route: see /docs for the API."
        else:
            detail = str(exc.detail)
        kind = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return error_response(status, kind, detail, getattr(exc, "headers", None))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _unexpected(request.method, exc)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
