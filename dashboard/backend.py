"""The dashboard's only way to MedLens serving: the HTTP client, cached where that is safe.

* The client (one connection pool per serving URL) is shared across sessions with
  ``st.cache_resource``: it holds no patient data.
* The model list, model metrics and health are cached with ``st.cache_data`` and a short ttl: they
  are the same for every reviewer.
* Predictions are patient data: they are kept only in the reviewer's own ``st.session_state``
  (:func:`session_store`), never in a cache shared between sessions.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, ParamSpec, TypeVar

import streamlit as st

from serving.client import DEFAULT_URL, TOKEN_ENV, URL_ENV, MedLensClient, ServingError
from serving.schemas import Health, ModelList, ModelMetrics, ServiceStatus

URL_STATE_KEY = "serving_url"
_STORE_PREFIX = "_medlens_store_"
#: Predictions kept per session and per kind (oldest dropped first).
MAX_STORED = 16

#: Busy answers retried by :func:`attempt`: serving's back-pressure, which the client leaves to its caller (a full
#: queue, 503 ``queue_full``; 429). The client itself retries a 503 ``unavailable`` and a lost connection.
BUSY_RETRIES = 2
BUSY_WAIT_S = 2.0


def busy(exc: ServingError) -> bool:
    """Whether ``exc`` is back-pressure that :func:`attempt` retries."""
    return exc.status == 429 or (exc.status == 503 and exc.error == "queue_full")


P = ParamSpec("P")
T = TypeVar("T")


def default_serving_url() -> str:
    return (os.environ.get(URL_ENV) or DEFAULT_URL).strip()


def serving_url() -> str:
    """This session's serving URL (sidebar field), else ``$MEDLENS_SERVING_URL``, else the default."""
    value = st.session_state.get(URL_STATE_KEY)
    return str(value).strip().rstrip("/") if value else default_serving_url().rstrip("/")


def valid_url(url: str) -> bool:
    return url.startswith(("http://", "https://")) and len(url) > len("http://")


#: Seconds the sidebar's health check waits (a wrong URL must not freeze every page): longer than serving's own
#: wait for each deployment (``health_timeout_s``, 5 s), so that serving's 503 naming the model that did not answer
#: arrives, rather than the client's own "did not answer" (the two were both 5 s).
HEALTH_TIMEOUT_S = 8.0


@st.cache_resource(show_spinner=False, max_entries=16)
def _client_for(base_url: str, token: str | None, timeout: float = 120.0) -> MedLensClient:
    return MedLensClient(base_url=base_url, token=token, timeout=timeout)


def token_for(base_url: str) -> str | None:
    """``$MEDLENS_API_TOKEN`` for the configured serving URL (``$MEDLENS_SERVING_URL``) alone: a URL typed into
    the sidebar gets no token, so that nobody who can open the dashboard can send it to a host of their choosing.
    Surrounding whitespace is dropped (a token file's last newline), as the server drops it from its own."""
    token = (os.environ.get(TOKEN_ENV) or "").strip() or None
    return token if base_url.rstrip("/") == default_serving_url().rstrip("/") else None


def client() -> MedLensClient:
    """The shared client for this session's serving URL (with the API token only where it is the configured one:
    :func:`token_for`)."""
    return _client_for(serving_url(), token_for(serving_url()))


@st.cache_data(ttl=10, show_spinner=False, max_entries=8)
def _health(base_url: str) -> Health:
    return _client_for(base_url, token_for(base_url), HEALTH_TIMEOUT_S).health()


@st.cache_data(ttl=30, show_spinner=False, max_entries=8)
def _models(base_url: str) -> ModelList:
    return _client_for(base_url, token_for(base_url)).models()


@st.cache_data(ttl=60, show_spinner=False, max_entries=32)
def _metrics(base_url: str, name: str) -> ModelMetrics:
    return _client_for(base_url, token_for(base_url)).metrics(name)


def health() -> Health:
    return _health(serving_url())


def models() -> ModelList:
    return _models(serving_url())


def models_now() -> ModelList:
    """Not cached: the service page shows it beside the replicas it polls (the cached list lags up to 30 s)."""
    return client().models()


def metrics(name: str) -> ModelMetrics:
    return _metrics(serving_url(), name)


def service() -> ServiceStatus:
    """Not cached: the service page polls it."""
    return client().service()


#: A case upload's files per request, and their bytes together: under serving's request limit (``max_request_mb``,
#: 100 MiB by default, with room for the multipart envelope), so that twenty large DICOMs are sent in several
#: requests rather than refused together with 413.
UPLOAD_FILES_PER_REQUEST = 20
UPLOAD_BYTES_PER_REQUEST = 64 * 1024 * 1024


def upload_batches(files: list[tuple[str, bytes]]) -> list[tuple[int, list[tuple[str, bytes]]]]:
    """``files`` in requests of at most :data:`UPLOAD_FILES_PER_REQUEST` files and
    :data:`UPLOAD_BYTES_PER_REQUEST` bytes (a larger file alone), each with the place of its first file."""
    batches: list[tuple[int, list[tuple[str, bytes]]]] = []
    size = 0
    for index, item in enumerate(files):
        fits = batches and len(batches[-1][1]) < UPLOAD_FILES_PER_REQUEST
        if not fits or size + len(item[1]) > UPLOAD_BYTES_PER_REQUEST:
            batches.append((index, []))
            size = 0
        batches[-1][1].append(item)
        size += len(item[1])
    return batches


def attempt(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a serving call, retrying a busy answer (:func:`busy`) :data:`BUSY_RETRIES` times after
    :data:`BUSY_WAIT_S` seconds. Other failures are the client's to retry, once: raises the last
    :class:`ServingError`."""
    for n in range(BUSY_RETRIES):
        try:
            return fn(*args, **kwargs)
        except ServingError as exc:
            if not busy(exc):
                raise
            time.sleep(BUSY_WAIT_S * (n + 1))
    return fn(*args, **kwargs)


def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """:func:`attempt` a serving call under a spinner (drawn once it takes half a second); on
    :class:`ServingError` show its detail with ``st.error`` and return None."""
    try:
        with st.spinner("Waiting for MedLens serving…"):
            return attempt(fn, *args, **kwargs)
    except ServingError as exc:
        show_error(exc)
        return None


def show_error(exc: ServingError) -> None:
    if exc.status == 0 and exc.error == "unreachable":
        st.error(
            f"MedLens serving at {serving_url()} is not reachable. Check the serving URL in the sidebar; if it is "
            "right, serving is down or restarting: retry in a minute, and tell whoever runs MedLens if it stays "
            "down (operators: `make run`, or `serve run ray_config.yaml`).",
            icon=":material/cloud_off:",
        )
    elif exc.status:
        st.error(f"{exc.detail} (HTTP {exc.status}, {exc.error})", icon=":material/error:")
    else:
        st.error(exc.detail, icon=":material/error:")


def case_id(data: bytes) -> str:
    """Case id for reviews: a hash of the file's bytes (never its name or content)."""
    return hashlib.sha256(data).hexdigest()[:16]


def safe_name(filename: str | None, fallback: str) -> str:
    """``upload.<ext>``: only the extension of a patient's file name is ever used or shown."""
    suffix = PurePath(filename or "").suffix.lower()
    if not suffix or len(suffix) > 8 or not suffix[1:].isalnum():
        return fallback
    return "upload" + suffix


def session_store(kind: str) -> dict[str, Any]:
    """This session's private store for ``kind`` (``xray``, ``sepsis``...) in st.session_state."""
    key = _STORE_PREFIX + kind
    store = st.session_state.get(key)
    if not isinstance(store, dict):
        store = {}
        st.session_state[key] = store
    return store


def remember(store: dict[str, Any], key: str, value: Any) -> None:
    """Put ``value`` in a session store, dropping the oldest entries beyond :data:`MAX_STORED`."""
    store.pop(key, None)
    store[key] = value
    while len(store) > MAX_STORED:
        store.pop(next(iter(store)))


def session_cached(kind: str, key: str, spinner: str, fetch: Callable[[], T | None]) -> T | None:
    """What this session kept for ``key`` in its ``kind`` store, else ``fetch()`` under ``spinner``, kept when it
    is not None (None: serving's error was shown, and the next run asks again)."""
    store = session_store(kind)
    if key in store:
        kept: T = store[key]
        return kept
    with st.spinner(spinner):
        value = fetch()
    if value is not None:
        remember(store, key, value)
    return value


__all__ = [
    "URL_STATE_KEY",
    "ServingError",
    "attempt",
    "call",
    "case_id",
    "client",
    "default_serving_url",
    "health",
    "metrics",
    "models",
    "remember",
    "safe_name",
    "service",
    "serving_url",
    "session_cached",
    "session_store",
    "show_error",
    "valid_url",
]
