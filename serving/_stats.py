"""Per-endpoint request statistics (rolling window) and the replica-count history of the ingress.

Every HTTP ingress (the ``medlens`` application and each model application) times its requests
with :class:`RequestStatsMiddleware`. The ``medlens`` ingress keeps them in :class:`RequestStats`;
model replicas collect theirs in a :class:`StatsBuffer` and send it to the ingress every second,
so ``GET /v1/service`` covers every route and every replica.

The middleware logs one line per request: method, route template, status, latency and model.
Never the raw path's free text, file names, headers or bodies (no patient identifiers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.catalogue import CATALOGUE
from serving._http import app_setting
from serving.schemas import EndpointStats, ReplicaSample

logger = logging.getLogger("ray.serve")

UNMATCHED = "(unmatched)"


#: (unix time, "METHOD /route/template", HTTP status, latency ms): what a replica sends the ingress.
StatsRecord = tuple[float, str, int, float]


@dataclass(frozen=True, slots=True)
class _Record:
    t: float
    endpoint: str
    status: int
    latency_ms: float


class RequestStats:
    """Latency and status of recent requests, per endpoint, over a rolling window."""

    def __init__(self, window_s: float = 60.0, max_records: int = 200_000) -> None:
        self.window_s = window_s
        self._records: deque[_Record] = deque(maxlen=max_records)

    def record(self, endpoint: str, status: int, latency_ms: float, now: float | None = None) -> None:
        self._records.append(_Record(time.time() if now is None else now, endpoint, status, latency_ms))

    def add(self, records: list[StatsRecord]) -> None:
        """Records timed elsewhere (a model replica's :class:`StatsBuffer`)."""
        for t, endpoint, status, latency_ms in records:
            self.record(endpoint, status, latency_ms, now=t)

    def _trim(self, now: float) -> None:
        cutoff = now - self.window_s
        while self._records and self._records[0].t < cutoff:
            self._records.popleft()

    def summary(self, now: float | None = None) -> list[EndpointStats]:
        now = time.time() if now is None else now
        self._trim(now)
        cutoff = now - self.window_s
        by_endpoint: dict[str, list[_Record]] = {}
        for rec in self._records:
            if rec.t >= cutoff:  # records are appended in time order, but be exact anyway
                by_endpoint.setdefault(rec.endpoint, []).append(rec)
        out: list[EndpointStats] = []
        for endpoint in sorted(by_endpoint):
            recs = by_endpoint[endpoint]
            latency = np.array([r.latency_ms for r in recs], dtype=np.float64)  # (n,)
            p50, p95, p99 = (float(v) for v in np.percentile(latency, [50, 95, 99]))
            out.append(
                EndpointStats(
                    endpoint=endpoint,
                    requests=len(recs),
                    errors=sum(r.status >= 500 for r in recs),
                    rejected=sum(400 <= r.status < 500 for r in recs),
                    rate_per_s=len(recs) / self.window_s,
                    p50_ms=round(p50, 2),
                    p95_ms=round(p95, 2),
                    p99_ms=round(p99, 2),
                )
            )
        return out


class StatsBuffer:
    """A model replica's requests since the last :meth:`drain` (bounded: if the ingress is away,
    the oldest records go first)."""

    def __init__(self, max_records: int = 20_000) -> None:
        self._records: deque[StatsRecord] = deque(maxlen=max_records)

    def record(self, endpoint: str, status: int, latency_ms: float) -> None:
        self._records.append((time.time(), endpoint, status, latency_ms))

    def drain(self) -> list[StatsRecord]:
        out = list(self._records)
        self._records.clear()
        return out


class ReplicaHistory:
    """Replica counts per deployment, sampled every ``interval_s``, the last ``keep_s`` seconds."""

    def __init__(self, interval_s: float = 5.0, keep_s: float = 900.0) -> None:
        self.interval_s = interval_s
        self._samples: deque[ReplicaSample] = deque(maxlen=max(2, int(keep_s / interval_s) + 1))

    def add(self, replicas: dict[str, int], now: float | None = None) -> None:
        self._samples.append(ReplicaSample(t=time.time() if now is None else now, replicas=dict(replicas)))

    def samples(self) -> list[ReplicaSample]:
        return list(self._samples)


T = TypeVar("T")


class SingleFlight(Generic[T]):
    """An async call made by one caller at a time, its answer shared with every caller that arrives while
    it runs and for ``ttl_s`` after it.

    - ``serve.status()`` (run in a thread) is not thread-safe: two calls at once race in Ray's pickling of the
      autoscaling policy (``ValueError: ... is not registered for pickle by value``, seen under 64 users when
      ``GET /v1/service`` requests overlapped the replica sampler).
    - Health pings: each ``GET /healthz`` pings every model deployment; callers share the ping in flight, so
      a polling client never piles pings up in a replica that is still starting (which made autoscaling
      add a second replica of every model right after start-up)."""

    def __init__(self, call: Callable[[], Awaitable[T]], ttl_s: float = 1.0) -> None:
        self._call = call
        self._ttl_s = ttl_s
        self._task: asyncio.Future[T] | None = None
        self._at = float("-inf")

    async def get(self) -> T:
        if self._task is None or (self._task.done() and time.monotonic() - self._at >= self._ttl_s):
            self._task = asyncio.ensure_future(self._call())
            self._at = time.monotonic()
        return await asyncio.shield(self._task)


def route_template(scope: Scope) -> str:
    """``GET /v1/models/{name}/metrics``: the matched route's template (the router stores the route in
    the scope) under the application's route prefix (``root_path``), never the raw path, which is
    free text."""
    route: Any = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return f"{scope.get('method', 'GET')} {UNMATCHED}"
    root = str(scope.get("root_path") or "").rstrip("/")
    return f"{scope.get('method', 'GET')} {root}{template}"


def _model_of(scope: Scope, template: str) -> str:
    route = template.partition(" ")[2]
    for model in CATALOGUE.values():
        if route.startswith(f"{model.route_prefix}/"):
            return model.name
    if "{name}" in template:
        parts = str(scope.get("path", "")).strip("/").split("/")
        name = parts[2] if len(parts) > 2 else ""
        return name if name in CATALOGUE else "invalid"
    return "-"


class RequestStatsMiddleware:
    """Pure ASGI middleware: times every HTTP request, records it in the replica's statistics (a
    :class:`RequestStats` or :class:`StatsBuffer`, see ``serving._http.app_setting``) and logs it without
    patient data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_capture)
        finally:
            latency_ms = (time.perf_counter() - start) * 1000.0
            template = route_template(scope)
            stats = app_setting(scope.get("app"), "stats")
            if isinstance(stats, RequestStats | StatsBuffer):
                stats.record(template, status, latency_ms)
            logger.info("%s %d %.1fms model=%s", template, status, latency_ms, _model_of(scope, template))
