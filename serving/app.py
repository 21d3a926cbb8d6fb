"""MedLens serving: one Ray Serve deployment per model, all behind one HTTP address.

``serve run ray_config.yaml`` (repository root) starts it on http://127.0.0.1:8000 (with the
environment in ``serving/fast_path.env``, as ``make run`` does: HAProxy in front). OpenAPI at
``/docs`` (service routes), ``/v1/xray/docs`` and ``/v1/sepsis/{lstm,transformer}/docs`` (predictions).

* ``XrayModel`` (CNN) and ``SequenceModel`` deployed twice as ``LSTMModel`` / ``TransformerModel``,
  each the HTTP ingress of its own application (route prefixes ``/v1/xray``, ``/v1/sepsis/lstm``,
  ``/v1/sepsis/transformer``): a prediction request goes from the front door straight to a replica
  of its model, which checks it, batches it with concurrent requests (``@serve.batch``) and
  decodes the raw upload inside the batch (a bad file is a per-item error, never a failed batch).
  Own replicas, autoscaling, queue limits (full queue: 503 + Retry-After).
* ``MedLensIngress`` (application ``medlens``, prefix ``/``): health, model list, card metrics and
  ``GET /v1/service`` (replicas per deployment, request statistics of every route, replica history).
* :func:`build_app`, :func:`build_xray_app`, :func:`build_lstm_app`, :func:`build_transformer_app`:
  typed application builders named by the YAML's ``import_path``; all take :class:`ServingArgs`.

This module deliberately has no ``from __future__ import annotations``: Ray Serve validates the
builder's ``args`` against the *runtime* annotation of :func:`build_app`'s parameter.
"""

import asyncio
import contextlib
import logging
import os
from typing import Any, cast

import ray
from fastapi import FastAPI, File, Query, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Application, Deployment
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from serving._http import (
    AUTH,
    ERROR_RESPONSES,
    ApiError,
    install_error_handlers,
    read_upload,
    retry_after_headers,
)
from serving._inference import SequenceRunner, XrayRunner, configure_torch, replica_device
from serving._protocol import SERIES_SUFFIXES, XRAY_SUFFIXES, ItemError, Upload, safe_upload_name
from serving._settings import (
    DEPLOYMENT_MODEL,
    INGRESS_APP,
    INGRESS_DEPLOYMENT,
    LSTM_DEPLOYMENT,
    MODEL_APP,
    MODEL_DEPLOYMENT,
    MODEL_NAMES,
    TRANSFORMER_DEPLOYMENT,
    XRAY_DEPLOYMENT,
    BatchConfig,
    ServingArgs,
    check_weights,
)
from serving._stats import (
    ReplicaHistory,
    RequestStats,
    RequestStatsMiddleware,
    SingleFlight,
    StatsBuffer,
    StatsRecord,
)
from serving.schemas import (
    DeploymentState,
    ErrorResponse,
    Health,
    ModelInfo,
    ModelList,
    ModelMetrics,
    ModelName,
    SepsisPrediction,
    SequenceModelName,
    ServiceStatus,
    XrayPrediction,
)

logger = logging.getLogger("ray.serve")


def _apply_batch_config(method: Any, user_config: dict[str, Any]) -> None:
    """Ray Serve's reconfigure hook: batch size / wait from ``user_config`` (no restart needed)."""
    cfg = BatchConfig.model_validate(user_config or {})
    method.set_max_batch_size(cfg.max_batch_size)
    method.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)


# Helpers used by the deployments live above them: @serve.deployment pickles a class by value when
# it is decorated, so names defined further down this module would be missing in the replicas.
def _in_state(replica_states: dict[Any, int], wanted: str) -> int:
    """Replicas of one deployment in the Serve replica state ``wanted`` (RUNNING, STARTING, ...)."""
    return sum(n for state, n in replica_states.items() if str(getattr(state, "value", state)) == wanted)


def _unwrap(result: Any) -> Any:
    if isinstance(result, ItemError):
        raise ApiError(result.status, result.error, result.detail)
    return result


_API_DESCRIPTION = (
    "Chest X-ray pneumonia (CNN) and ICU sepsis risk (LSTM, Transformer) models behind Ray Serve. "
    "Every error body is `ErrorResponse {error, detail}`. Research software, not a medical device."
)


def _http_api(title: str, description: str) -> FastAPI:
    """A FastAPI app with what every MedLens HTTP ingress shares: request statistics, error mapping."""
    api = FastAPI(title=title, version="1.0.0", description=f"{description} {_API_DESCRIPTION}")
    api.add_middleware(RequestStatsMiddleware)
    install_error_handlers(api)
    return api


def _configure_api(api: FastAPI, args: ServingArgs, stats: RequestStats | StatsBuffer) -> None:
    """Per-replica state of an HTTP ingress: where statistics go, the bearer token, CORS."""
    api.state.stats = stats
    api.state.api_token = os.environ.get(args.auth_token_env, "").strip() or None
    if args.cors.allow_origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=args.cors.allow_origins,
            allow_methods=args.cors.allow_methods,
            allow_headers=args.cors.allow_headers,
        )


xray_api = _http_api("MedLens chest X-ray API", "`POST /v1/xray/predict`: pneumonia probability of one image.")
sequence_api = _http_api(
    "MedLens sepsis API", "`POST /v1/sepsis/{lstm,transformer}/predict`: hourly sepsis risk of one ICU stay."
)


# ----------------------------------------------------------------------------------------------------------
# model deployments
# ----------------------------------------------------------------------------------------------------------
class _ModelReplica:
    """What every model replica does the same way: dynamic batching of raw uploads, a separate
    non-batched explanation path, model info / card metrics, and a health check. Subclasses build
    ``self._runner`` (serving._inference) and name the model in ``_what``."""

    _runner: XrayRunner | SequenceRunner
    _what: str

    def __init__(self, api: FastAPI, args: ServingArgs) -> None:
        self._args = args
        # One batch at a time on the predicting copy, one explanation at a time on the explaining copy
        # (Grad-CAM / IG hook their model); the two run side by side.
        self._predict_lock = asyncio.Lock()
        self._explain_lock = asyncio.Lock()
        self._stats = StatsBuffer()
        _configure_api(api, args, self._stats)
        # The constructor runs on the replica's event loop: ship request statistics in the background.
        self._flusher = asyncio.get_running_loop().create_task(self._flush_stats_forever())

    async def _answer(self, file: UploadFile, suffixes: frozenset[str], explain: bool) -> Any:
        """One HTTP request's prediction: the upload (size-limited, its name reduced to a known suffix)
        batched with concurrent ones, or a separate explanation."""
        data = await read_upload(file, self._args.max_upload_bytes)
        upload = Upload(data, safe_upload_name(file.filename, suffixes, "upload"))
        return _unwrap(await (self.explain(upload) if explain else self.predict(upload)))

    async def _flush_stats_forever(self) -> None:
        """Send this replica's request statistics to the ``medlens`` ingress (GET /v1/service)."""
        ingress: DeploymentHandle | None = None
        while True:
            await asyncio.sleep(self._args.stats_flush_s)
            records = self._stats.drain()
            if not records:
                continue
            try:
                if ingress is None:
                    ingress = serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name=INGRESS_APP)
                await asyncio.wait_for(ingress.ingest_stats.remote(records), 10.0)
            except Exception as exc:  # the ingress is restarting or absent: these records are lost
                logger.warning("request statistics not delivered (%d records): %s", len(records), type(exc).__name__)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        _apply_batch_config(self.predict, user_config)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # overridden by user_config
    async def predict(self, uploads: list[Upload]) -> list[Any]:
        async with self._predict_lock:
            return await asyncio.to_thread(self._runner.predict_batch, uploads)

    async def explain(self, upload: Upload) -> Any:
        async with self._explain_lock:
            return await asyncio.to_thread(self._runner.explain_one, upload)

    async def info(self) -> ModelInfo:
        return self._runner.info()

    async def metrics(self) -> ModelMetrics | None:
        return self._runner.metrics()

    async def ping(self) -> str:
        return "ok"

    def check_health(self) -> None:
        if not self._runner.healthy:
            failures = self._runner.consecutive_failures
            raise RuntimeError(f"the {self._what} failed {failures} batches in a row")


@serve.deployment(
    name=XRAY_DEPLOYMENT,
    max_ongoing_requests=8,
    max_queued_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1},
    ray_actor_options={"num_cpus": 0.4},
    health_check_period_s=10,
)
@serve.ingress(xray_api)
class XrayModel(_ModelReplica):
    """Chest X-ray CNN replica and HTTP ingress of the ``xray`` application (prefix ``/v1/xray``):
    batched predictions, Grad-CAM on request."""

    def __init__(self, args: ServingArgs) -> None:
        super().__init__(xray_api, args)
        configure_torch(args.torch_threads)
        weights = args.weights.resolve("cnn")
        self._runner = XrayRunner(weights, replica_device(ray.get_gpu_ids()), bf16=args.xray_bf16)
        self._what = "CNN"

    @xray_api.post(
        "/predict",
        response_model=XrayPrediction,
        response_model_exclude_none=False,
        dependencies=AUTH,
        responses=ERROR_RESPONSES,
        tags=["predict"],
    )
    async def predict_xray(
        self,
        file: UploadFile = File(..., description="PNG, JPEG or single-frame image DICOM"),
        explain: bool = Query(False, description="add a Grad-CAM heatmap (base64 PNG at the image's size)"),
    ) -> XrayPrediction:
        """Probability of pneumonia for one chest X-ray."""
        result: XrayPrediction = await self._answer(file, XRAY_SUFFIXES, explain)
        return result


@serve.deployment(
    max_ongoing_requests=16,
    max_queued_requests=128,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1},
    ray_actor_options={"num_cpus": 0.25},
    health_check_period_s=10,
)
@serve.ingress(sequence_api)
class SequenceModel(_ModelReplica):
    """ICU sepsis replica (LSTM or Transformer) and HTTP ingress of its application (prefix
    ``/v1/sepsis/<kind>``): padded batches of variable-length series, integrated-gradients
    attributions on request."""

    def __init__(self, kind: SequenceModelName, args: ServingArgs) -> None:
        super().__init__(sequence_api, args)
        configure_torch(args.torch_threads)
        device = replica_device(ray.get_gpu_ids())
        weights = args.weights.resolve(kind)
        self._runner = SequenceRunner(kind, weights, device, explain_max_hours=args.explain_max_hours)
        self._what = f"{kind} model"

    @sequence_api.post(
        "/predict",
        response_model=SepsisPrediction,
        dependencies=AUTH,
        responses=ERROR_RESPONSES,
        tags=["predict"],
    )
    async def predict_sepsis(
        self,
        file: UploadFile = File(..., description="PhysioNet 2019 .psv or a CSV with the same column names"),
        explain: bool = Query(False, description="add each hour's top 5 features by |integrated gradients|"),
    ) -> SepsisPrediction:
        """Hourly sepsis risk for one ICU stay (one row per hour, at least 2 rows)."""
        result: SepsisPrediction = await self._answer(file, SERIES_SUFFIXES, explain)
        return result


# ----------------------------------------------------------------------------------------------------------
# ingress of the service routes
# ----------------------------------------------------------------------------------------------------------
fastapi_app = _http_api(
    "MedLens serving API",
    "Service routes. Predictions: `POST /v1/xray/predict` and `POST /v1/sepsis/{lstm,transformer}/predict` "
    "(OpenAPI at /v1/xray/docs and /v1/sepsis/lstm/docs).",
)


@serve.deployment(
    name=INGRESS_DEPLOYMENT,
    num_replicas=1,
    max_ongoing_requests=128,
    ray_actor_options={"num_cpus": 0.1},
)
@serve.ingress(fastapi_app)
class MedLensIngress:
    """Service routes (health, models, metrics, statistics) of the ``medlens`` application (prefix ``/``);
    collects every replica's request statistics."""

    def __init__(self, args: ServingArgs) -> None:
        self._args = args
        self._handles: dict[ModelName, DeploymentHandle] = {}
        self._devices: dict[ModelName, str] = {}
        self._stats = RequestStats(window_s=args.stats_window_s)
        self._history = ReplicaHistory(interval_s=args.history_interval_s, keep_s=args.history_keep_s)
        self._status = SingleFlight(serve.status, ttl_s=1.0)
        _configure_api(fastapi_app, args, self._stats)
        logger.info(
            "MedLens ingress ready: auth %s, upload limit %g MiB",
            "on" if fastapi_app.state.api_token else "off",
            args.max_upload_mb,
        )
        # The constructor runs on the replica's event loop: sample replica counts in the background.
        self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())

    # -- routes ------------------------------------------------------------------------------------------
    @fastapi_app.get("/healthz", response_model=Health, responses={503: ERROR_RESPONSES[503]}, tags=["service"])
    async def healthz(self) -> Health:
        """200 once every model deployment answers a ping; 503 (ErrorResponse) otherwise. No auth."""

        async def ping(model: ModelName) -> str | None:
            try:
                await asyncio.wait_for(self._handle(model).ping.remote(), self._args.health_timeout_s)
                return None
            except Exception as exc:
                return f"{MODEL_DEPLOYMENT[model]} ({type(exc).__name__})"

        failures = [f for f in await asyncio.gather(*(ping(m) for m in MODEL_NAMES)) if f]
        if failures:
            raise ApiError(
                503,
                "unavailable",
                f"Not ready: {', '.join(failures)} did not answer a health ping (timeout "
                f"{self._args.health_timeout_s:g} s). The service is starting, restarting or overloaded; "
                "retry shortly.",
                retry_after_headers(5),
            )
        return Health(status="ok", models=list(MODEL_NAMES))

    @fastapi_app.get("/v1/models", response_model=ModelList, dependencies=AUTH, tags=["models"])
    async def list_models(self) -> ModelList:
        """Each model's version, task, device, threshold, labels and headline metrics (from its card)."""
        infos: list[ModelInfo] = await asyncio.gather(*(self._call(m, "info") for m in MODEL_NAMES))
        for info in infos:
            self._devices[info.name] = info.device
        return ModelList(models=infos)

    @fastapi_app.get(
        "/v1/models/{name}/metrics",
        response_model=ModelMetrics,
        dependencies=AUTH,
        responses={404: {"model": ErrorResponse, "description": "unknown model, or no model card"}},
        tags=["models"],
    )
    async def model_metrics(self, name: str) -> ModelMetrics:
        """The model card's held-out evaluation: scalars, ROC / PR / calibration points, confusion matrix."""
        if name not in MODEL_NAMES:
            raise ApiError(404, "unknown_model", f"Unknown model {name!r}: choose cnn, lstm or transformer.")
        model = cast(ModelName, name)
        metrics: ModelMetrics | None = await self._call(model, "metrics")
        if metrics is None:
            raise ApiError(
                404,
                "no_model_card",
                f"The {name} checkpoint has no card.json beside it: re-run its training, which writes the card.",
            )
        return metrics

    @fastapi_app.post(
        "/v1/sepsis/{name}/predict",
        responses={404: {"model": ErrorResponse, "description": "unknown sequence model"}},
        tags=["predict"],
    )
    async def unknown_sequence_model(self, name: str) -> None:
        """Only reached for a name that is not a sequence model: lstm and transformer have their own routes."""
        raise ApiError(
            404,
            "unknown_model",
            f"Unknown sequence model {name!r}: POST to /v1/sepsis/lstm/predict or /v1/sepsis/transformer/predict.",
        )

    @fastapi_app.get("/v1/service", response_model=ServiceStatus, dependencies=AUTH, tags=["service"])
    async def service(self) -> ServiceStatus:
        """Replicas per deployment now, request stats per route (every replica's), replica-count history."""
        deployments = await self._deployment_states()
        return ServiceStatus(
            window_s=self._stats.window_s,
            deployments=deployments,
            endpoints=self._stats.summary(),
            history=self._history.samples(),
        )

    # -- called by the model replicas --------------------------------------------------------------------
    async def ingest_stats(self, records: list[StatsRecord]) -> None:
        self._stats.add(records)

    # -- helpers -----------------------------------------------------------------------------------------
    def _handle(self, model: ModelName) -> DeploymentHandle:
        if model not in self._handles:
            self._handles[model] = serve.get_deployment_handle(MODEL_DEPLOYMENT[model], app_name=MODEL_APP[model])
        return self._handles[model]

    async def _call(self, model: ModelName, method: str, *args: Any) -> Any:
        """Call a model deployment; Ray's back-pressure and unavailability become 503 + Retry-After."""
        try:
            return await getattr(self._handle(model), method).remote(*args)
        except BackPressureError as exc:
            raise ApiError(
                503,
                "queue_full",
                f"The {model} model is at capacity (its request queue is full). Retry after the Retry-After "
                "delay; if this persists, raise its max_replicas or max_queued_requests.",
                retry_after_headers(exc.retry_after_s),
            ) from None
        except (DeploymentUnavailableError, RayActorError) as exc:
            raise ApiError(
                503,
                "unavailable",
                f"The {model} model is not available right now ({type(exc).__name__}); it may be restarting. "
                "Retry in a few seconds.",
                retry_after_headers(5),
            ) from None

    @staticmethod
    def _our_deployments(status: Any) -> dict[str, Any]:
        """Deployment name -> its status, over the MedLens applications (the others on the cluster are skipped)."""
        out: dict[str, Any] = {}
        for app_name in (INGRESS_APP, *MODEL_APP.values()):
            app = status.applications.get(app_name)
            if app is not None:
                out.update(app.deployments)
        return out

    async def _deployment_states(self) -> list[DeploymentState]:
        deployments = self._our_deployments(await self._status.get())
        if len(self._devices) < len(MODEL_NAMES):
            await self._refresh_devices()
        states: list[DeploymentState] = []
        for name, dep in sorted(deployments.items()):
            model = DEPLOYMENT_MODEL.get(name)
            states.append(
                DeploymentState(
                    name=name,
                    model=model,
                    status=str(getattr(dep.status, "value", dep.status)),
                    replicas=_in_state(dep.replica_states, "RUNNING"),
                    starting=_in_state(dep.replica_states, "STARTING"),
                    device=self._devices.get(model) if model else None,
                )
            )
        return states

    async def _refresh_devices(self) -> None:
        for model in MODEL_NAMES:
            if model not in self._devices:
                with contextlib.suppress(Exception):
                    info: ModelInfo = await asyncio.wait_for(self._handle(model).info.remote(), 2.0)
                    self._devices[model] = info.device

    async def _sample_forever(self) -> None:
        while True:
            try:
                deployments = self._our_deployments(await self._status.get())
                if deployments:
                    self._history.add(
                        {name: _in_state(dep.replica_states, "RUNNING") for name, dep in deployments.items()}
                    )
            except Exception as exc:  # never let the sampler die; the next tick retries
                logger.warning("replica sampler: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self._args.history_interval_s)


# ----------------------------------------------------------------------------------------------------------
# application builders (one per application in ray_config.yaml; all take the same typed args)
# ----------------------------------------------------------------------------------------------------------
def _deployment(cls: type) -> Deployment:
    return cast(Deployment, cls)  # @serve.deployment turned the class into a Deployment; mypy sees the class


def build_app(args: ServingArgs) -> Application:
    """The ``medlens`` application (prefix ``/``): health, models, metrics, service statistics.
    Ray Serve validates the YAML ``args`` into :class:`ServingArgs` (unknown keys are refused)."""
    check_weights(args.weights_dirs())
    return _deployment(MedLensIngress).bind(args)


def build_xray_app(args: ServingArgs) -> Application:
    """The ``xray`` application (prefix ``/v1/xray``): the chest X-ray CNN."""
    check_weights({"cnn": args.weights.resolve("cnn")})
    return _deployment(XrayModel).bind(args)


def _sequence_app(kind: SequenceModelName, deployment_name: str, args: ServingArgs) -> Application:
    check_weights({kind: args.weights.resolve(kind)})
    return _deployment(SequenceModel).options(name=deployment_name).bind(kind, args)


def build_lstm_app(args: ServingArgs) -> Application:
    """The ``lstm`` application (prefix ``/v1/sepsis/lstm``)."""
    return _sequence_app("lstm", LSTM_DEPLOYMENT, args)


def build_transformer_app(args: ServingArgs) -> Application:
    """The ``transformer`` application (prefix ``/v1/sepsis/transformer``)."""
    return _sequence_app("transformer", TRANSFORMER_DEPLOYMENT, args)


__all__ = [
    "MedLensIngress",
    "SequenceModel",
    "ServingArgs",
    "XrayModel",
    "build_app",
    "build_lstm_app",
    "build_transformer_app",
    "build_xray_app",
    "fastapi_app",
]
