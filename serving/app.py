"""MedLens serving: one Ray Serve deployment per model behind a FastAPI ingress.

``serve run ray_config.yaml`` (repository root) starts it on http://127.0.0.1:8000; OpenAPI at /docs.

* ``XrayModel`` (CNN) and ``SequenceModel`` deployed twice as ``LSTMModel`` / ``TransformerModel``:
  own replicas, autoscaling, queue limits, ``@serve.batch`` dynamic batching of raw uploads that
  are decoded inside the replica (a bad file is a per-item error, never a failed batch).
* ``MedLensIngress``: FastAPI routes, auth, size limits, error mapping, request statistics and
  a replica-count history (``GET /v1/service``).
* :func:`build_app`: the typed application builder named by the YAML's ``import_path``.

This module deliberately has no ``from __future__ import annotations``: Ray Serve validates the
builder's ``args`` against the *runtime* annotation of :func:`build_app`'s parameter.
"""

import asyncio
import contextlib
import logging
import os
from pathlib import Path
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
    INGRESS_DEPLOYMENT,
    LSTM_DEPLOYMENT,
    MODEL_DEPLOYMENT,
    MODEL_NAMES,
    TRANSFORMER_DEPLOYMENT,
    XRAY_DEPLOYMENT,
    BatchConfig,
    ServingArgs,
    check_weights,
)
from serving._stats import ReplicaHistory, RequestStats, RequestStatsMiddleware
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
def _running(replica_states: dict[Any, int]) -> int:
    return sum(n for state, n in replica_states.items() if str(getattr(state, "value", state)) == "RUNNING")


def _unwrap(result: Any) -> Any:
    if isinstance(result, ItemError):
        raise ApiError(result.status, result.error, result.detail)
    return result


# ----------------------------------------------------------------------------------------------------------
# model deployments
# ----------------------------------------------------------------------------------------------------------
class _ModelReplica:
    """What every model replica does the same way: dynamic batching of raw uploads, a separate
    non-batched explanation path, model info / card metrics, and a health check. Subclasses build
    ``self._runner`` (serving._inference) and name the model in ``_what``."""

    _runner: XrayRunner | SequenceRunner
    _what: str

    def __init__(self) -> None:
        self._lock = asyncio.Lock()  # one model computation at a time (Grad-CAM / IG hook the model)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        _apply_batch_config(self.predict, user_config)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # overridden by user_config
    async def predict(self, uploads: list[Upload]) -> list[Any]:
        async with self._lock:
            return await asyncio.to_thread(self._runner.predict_batch, uploads)

    async def explain(self, upload: Upload) -> Any:
        async with self._lock:
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
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 3},
    ray_actor_options={"num_cpus": 0.4},
    health_check_period_s=10,
)
class XrayModel(_ModelReplica):
    """Chest X-ray CNN replica: batched predictions (XrayPrediction | ItemError), Grad-CAM on request."""

    def __init__(self, weights_dir: str, torch_threads: int = 1, bf16: bool = True) -> None:
        super().__init__()
        configure_torch(torch_threads)
        self._runner = XrayRunner(Path(weights_dir), replica_device(ray.get_gpu_ids()), bf16=bf16)
        self._what = "CNN"


@serve.deployment(
    max_ongoing_requests=16,
    max_queued_requests=128,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4},
    ray_actor_options={"num_cpus": 0.25},
    health_check_period_s=10,
)
class SequenceModel(_ModelReplica):
    """ICU sepsis replica (LSTM or Transformer): padded batches of variable-length series
    (SepsisPrediction | ItemError), integrated-gradients attributions on request."""

    def __init__(self, kind: str, weights_dir: str, torch_threads: int = 1, explain_max_hours: int = 400) -> None:
        super().__init__()
        configure_torch(torch_threads)
        device = replica_device(ray.get_gpu_ids())
        self._runner = SequenceRunner(kind, Path(weights_dir), device, explain_max_hours=explain_max_hours)
        self._what = f"{kind} model"


# ----------------------------------------------------------------------------------------------------------
# ingress
# ----------------------------------------------------------------------------------------------------------
fastapi_app = FastAPI(
    title="MedLens serving API",
    version="1.0.0",
    description=(
        "Chest X-ray pneumonia (CNN) and ICU sepsis risk (LSTM, Transformer) models behind Ray Serve. "
        "Every error body is `ErrorResponse {error, detail}`. Research software, not a medical device."
    ),
)
fastapi_app.add_middleware(RequestStatsMiddleware)
install_error_handlers(fastapi_app)


@serve.deployment(
    name=INGRESS_DEPLOYMENT,
    num_replicas=1,
    max_ongoing_requests=128,
    ray_actor_options={"num_cpus": 0.1},
)
@serve.ingress(fastapi_app)
class MedLensIngress:
    """HTTP front door: validates requests, forwards raw uploads to the model deployments."""

    def __init__(
        self,
        xray: DeploymentHandle,
        lstm: DeploymentHandle,
        transformer: DeploymentHandle,
        args: ServingArgs,
    ) -> None:
        self._args = args
        self._handles: dict[ModelName, DeploymentHandle] = {"cnn": xray, "lstm": lstm, "transformer": transformer}
        self._devices: dict[ModelName, str] = {}
        self._stats = RequestStats(window_s=args.stats_window_s)
        self._history = ReplicaHistory(interval_s=args.history_interval_s, keep_s=args.history_keep_s)
        self._app_name = serve.get_replica_context().app_name
        fastapi_app.state.stats = self._stats
        fastapi_app.state.api_token = os.environ.get(args.auth_token_env, "").strip() or None
        if args.cors.allow_origins:
            fastapi_app.add_middleware(
                CORSMiddleware,
                allow_origins=args.cors.allow_origins,
                allow_methods=args.cors.allow_methods,
                allow_headers=args.cors.allow_headers,
            )
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
                await asyncio.wait_for(self._handles[model].ping.remote(), self._args.health_timeout_s)
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
        "/v1/xray/predict",
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
        data = await read_upload(file, self._args.max_upload_bytes)
        upload = Upload(data, safe_upload_name(file.filename, XRAY_SUFFIXES, "upload"))
        result: XrayPrediction | ItemError = await self._call("cnn", "explain" if explain else "predict", upload)
        return _unwrap(result)

    @fastapi_app.post(
        "/v1/sepsis/predict",
        response_model=SepsisPrediction,
        dependencies=AUTH,
        responses=ERROR_RESPONSES,
        tags=["predict"],
    )
    async def predict_sepsis(
        self,
        file: UploadFile = File(..., description="PhysioNet 2019 .psv or a CSV with the same column names"),
        model: SequenceModelName = Query("lstm", description="which sequence model"),
        explain: bool = Query(False, description="add each hour's top 5 features by |integrated gradients|"),
    ) -> SepsisPrediction:
        """Hourly sepsis risk for one ICU stay (one row per hour, at least 2 rows)."""
        data = await read_upload(file, self._args.max_upload_bytes)
        upload = Upload(data, safe_upload_name(file.filename, SERIES_SUFFIXES, "upload"))
        result: SepsisPrediction | ItemError = await self._call(model, "explain" if explain else "predict", upload)
        return _unwrap(result)

    @fastapi_app.get("/v1/service", response_model=ServiceStatus, dependencies=AUTH, tags=["service"])
    async def service(self) -> ServiceStatus:
        """Replicas per deployment now, request stats per endpoint, and the replica-count history."""
        deployments = await self._deployment_states()
        return ServiceStatus(
            window_s=self._stats.window_s,
            deployments=deployments,
            endpoints=self._stats.summary(),
            history=self._history.samples(),
        )

    # -- helpers -----------------------------------------------------------------------------------------
    async def _call(self, model: ModelName, method: str, *args: Any) -> Any:
        """Call a model deployment; Ray's back-pressure and unavailability become 503 + Retry-After."""
        try:
            return await getattr(self._handles[model], method).remote(*args)
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

    async def _deployment_states(self) -> list[DeploymentState]:
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(self._app_name)
        if app is None:
            return []
        if len(self._devices) < len(MODEL_NAMES):
            await self._refresh_devices()
        states: list[DeploymentState] = []
        for name, dep in sorted(app.deployments.items()):
            model = DEPLOYMENT_MODEL.get(name)
            states.append(
                DeploymentState(
                    name=name,
                    model=model,
                    status=str(getattr(dep.status, "value", dep.status)),
                    replicas=_running(dep.replica_states),
                    device=self._devices.get(model) if model else None,
                )
            )
        return states

    async def _refresh_devices(self) -> None:
        for model in MODEL_NAMES:
            if model not in self._devices:
                with contextlib.suppress(Exception):
                    info: ModelInfo = await asyncio.wait_for(self._handles[model].info.remote(), 2.0)
                    self._devices[model] = info.device

    async def _sample_forever(self) -> None:
        while True:
            try:
                status = await asyncio.to_thread(serve.status)
                app = status.applications.get(self._app_name)
                if app is not None:
                    counts = {name: _running(dep.replica_states) for name, dep in app.deployments.items()}
                    self._history.add(counts)
            except Exception as exc:  # never let the sampler die; the next tick retries
                logger.warning("replica sampler: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self._args.history_interval_s)


# ----------------------------------------------------------------------------------------------------------
# application builder
# ----------------------------------------------------------------------------------------------------------
def build_app(args: ServingArgs) -> Application:
    """Typed application builder: Ray Serve validates the YAML ``args`` into :class:`ServingArgs`
    (unknown keys are refused) before calling this."""
    weights = args.weights_dirs()
    check_weights(weights)
    # @serve.deployment turns each class into a Deployment; mypy only sees the class.
    xray_model, sequence_model, ingress = (cast(Deployment, d) for d in (XrayModel, SequenceModel, MedLensIngress))
    xray = xray_model.bind(str(weights["cnn"]), args.torch_threads, args.xray_bf16)
    lstm = sequence_model.options(name=LSTM_DEPLOYMENT).bind(
        "lstm", str(weights["lstm"]), args.torch_threads, args.explain_max_hours
    )
    transformer = sequence_model.options(name=TRANSFORMER_DEPLOYMENT).bind(
        "transformer", str(weights["transformer"]), args.torch_threads, args.explain_max_hours
    )
    return ingress.bind(xray, lstm, transformer, args)


__all__ = ["MedLensIngress", "SequenceModel", "ServingArgs", "XrayModel", "build_app", "fastapi_app"]
