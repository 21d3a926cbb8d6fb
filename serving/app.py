"""MedLens serving: one Ray Serve application per catalogue model, all behind one HTTP address.

``serve run ray_config.yaml`` (repository root) starts it on http://127.0.0.1:8000 (with the environment
in ``serving/fast_path.env``, as ``make run`` does: HAProxy in front). One API document for every route:
``/openapi.json`` and ``/docs``.

* Each model of ``models/catalogue.py`` is its own application, built by :func:`build_model_app` from the
  YAML's ``args.model``: an :class:`ImageModelServer`, :class:`SeriesModelServer` or :class:`EventsModelServer`
  deployment (by the task's input kind) named ``<task>-<architecture>`` that is the HTTP ingress of the
  model's route prefix (``/v1/xray``, ``/v1/sepsis/lstm``, ``/v1/mortality/lstm``, ...). A prediction goes
  from the front door straight to a replica, which checks it, batches it with concurrent requests
  (``@serve.batch``) and decodes the raw upload inside the batch (serving/_inference.py). Own replicas,
  autoscaling and queue limits (full queue: 503 + Retry-After), all set in the YAML. A model whose
  deployment scales to zero (``min_replicas: 0``) is never woken by the service routes: health does not
  wait for it, and the model list and card metrics describe it from its model card meanwhile. The model
  and generator deployments live in serving/_model_servers.py, which their replicas import instead of this
  module.
* :class:`MedLensIngress` (application ``medlens``, prefix ``/``, built by :func:`build_app`): health,
  model list, card metrics, ``GET /v1/service`` (replicas per deployment, request statistics of every
  route, replica history), the merged API document and the deprecated ``POST /v1/sepsis/predict``.

This module deliberately has no ``from __future__ import annotations``: Ray Serve validates the
builder's ``args`` against the *runtime* annotation of the builders' parameter.
"""

import asyncio
import contextlib
import functools
import logging
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from fastapi import File, Query, Response, UploadFile
from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Application, Deployment
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

import serving._cases_api as cases_api
from models.catalogue import (
    CATALOGUE,
    GENERATORS,
    MODEL_NAMES,
    by_serving_name,
    generator_entry,
    models_for,
)
from models.catalogue import entry as catalogue_entry
from models.errors import MedLensInputError
from serving._http import (
    AUTH,
    ERROR_RESPONSES,
    REPLICA_HTTP,
    ApiError,
    read_upload,
    retry_after_headers,
)
from serving._model_servers import (
    APIS,
    SERVERS,
    EventsModelServer,
    ImageModelServer,
    SeriesModelServer,
    SyntheticImageServer,
    configure_replica,
    http_api,
    synthetic_api,
    unwrap,
)
from serving._openapi import serve_merged_openapi
from serving._protocol import Upload, safe_upload_name
from serving._settings import INGRESS_APP, ServingArgs, check_weights
from serving._stats import (
    ReplicaHistory,
    RequestStats,
    SingleFlight,
    StatsRecord,
)
from serving.schemas import (
    CardSummary,
    DeploymentState,
    ErrorResponse,
    HeadlineMetrics,
    Health,
    ModelInfo,
    ModelList,
    ModelMetrics,
    SepsisPrediction,
    ServiceStatus,
)

logger = logging.getLogger("ray.serve")


# Helpers used by the deployments live above them: @serve.deployment pickles a class by value when
# it is decorated, so names defined further down this module would be missing in the replicas.
def _in_state(replica_states: dict[Any, int], wanted: str) -> int:
    """Replicas of one deployment in the Serve replica state ``wanted`` (RUNNING, STARTING, ...)."""
    return sum(n for state, n in replica_states.items() if str(getattr(state, "value", state)) == wanted)


@dataclass(frozen=True)
class DeploymentView:
    """One deployment as Serve's controller reports it, with what ``serve.status()`` leaves out: its
    ``min_replicas`` (None: a fixed replica count)."""

    status: str
    replica_states: dict[str, int]  # replica state (RUNNING, STARTING, ...) -> replicas
    min_replicas: int | None = None

    @property
    def running(self) -> int:
        return _in_state(self.replica_states, "RUNNING")

    @property
    def starting(self) -> int:
        return _in_state(self.replica_states, "STARTING")

    @property
    def stopping(self) -> int:
        return _in_state(self.replica_states, "STOPPING")

    @property
    def on_demand(self) -> bool:
        """It scales to zero when idle: nothing waits for it, nothing wakes it but a prediction."""
        return self.min_replicas == 0

    @property
    def at_zero(self) -> bool:
        """On demand with no replica serving now (maybe one starting for the request that woke it)."""
        return self.on_demand and self.running == 0


def _min_replicas(config: Any) -> int | None:
    auto = getattr(config, "autoscaling_config", None)
    value = auto.get("min_replicas") if isinstance(auto, dict) else getattr(auto, "min_replicas", None)
    return int(value) if isinstance(value, int | float) else None


def serve_view() -> dict[str, dict[str, DeploymentView]]:
    """Application -> deployment -> :class:`DeploymentView`, from Serve's controller (what ``serve.status()``
    reads, keeping each deployment's ``min_replicas``: the ingress tells a model scaled to zero from one that
    is not up yet by it). Blocking: run it in a thread."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeInstanceDetails

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return {}
    details = ServeInstanceDetails(**client.get_serve_details())
    return {
        app_name: {
            name: DeploymentView(
                status=str(getattr(dep.status, "value", dep.status)),
                replica_states=dict(Counter(str(getattr(r.state, "value", r.state)) for r in dep.replicas)),
                min_replicas=_min_replicas(dep.deployment_config),
            )
            for name, dep in app.deployments.items()
        }
        for app_name, app in details.applications.items()
    }


_SERIES_NAMES = tuple(e.name for e in models_for("series", task="sepsis"))


# ----------------------------------------------------------------------------------------------------------
# ingress of the service routes
# ----------------------------------------------------------------------------------------------------------
fastapi_app = http_api(
    "MedLens serving API",
    "Service routes and every model's predictions ("
    + ", ".join(f"`POST {e.predict_route}`" for e in CATALOGUE.values())
    + ").",
    docs=True,
)
fastapi_app.include_router(cases_api.router)
serve_merged_openapi(
    fastapi_app,
    [(e.route_prefix, APIS[e.task.input_kind]) for e in CATALOGUE.values()]
    + [(g.route_prefix, synthetic_api) for g in GENERATORS.values()],
)


@serve.deployment
@serve.ingress(fastapi_app)
class MedLensIngress:
    """Service routes (health, models, metrics, statistics) of the ``medlens`` application (prefix ``/``);
    collects every replica's request statistics."""

    def __init__(self, args: ServingArgs) -> None:
        self._args = args
        self._handles: dict[str, DeploymentHandle] = {}
        self._infos: dict[str, ModelInfo] = {}  # each model's info as its replica last gave it
        self._stats = RequestStats(window_s=args.stats_window_s)
        self._history = ReplicaHistory(interval_s=args.history_interval_s, keep_s=args.history_keep_s)
        self._status = SingleFlight(lambda: asyncio.to_thread(serve_view), ttl_s=1.0)
        self._pings = {m: SingleFlight(functools.partial(self._ping, m), ttl_s=1.0) for m in MODEL_NAMES}
        # one file per request (the identity route, the deprecated sepsis route) at the upload limit; the case
        # upload, several files at once, at the request limit
        configure_replica(
            args,
            self._stats,
            args.max_upload_bytes,
            {"/v1/cases": int(args.cases.max_request_mb * 1024 * 1024)},
        )
        from serving.store.cases import CaseStore  # the ingress alone needs SQLAlchemy
        from serving.store.db import DB_URL_ENV, db_url

        store = CaseStore(db_url({DB_URL_ENV: args.cases.db_url(os.environ) or ""}))
        # Through the module, not a name imported from it: Serve ships this class by value, and the routes
        # read the module's own holder in this process.
        cases_api.CASES.service = cases_api.CaseService(store, self._predict_case, args.cases, args.max_upload_bytes)
        self._store = store
        logger.info(
            "MedLens ingress ready: auth %s, upload limit %g MiB",
            "on" if REPLICA_HTTP.api_token else "off",
            args.max_upload_mb,
        )
        # The constructor runs on the replica's event loop: sample replica counts in the background, and
        # connect to the case database (migrating it) without holding up start-up or predictions.
        loop = asyncio.get_running_loop()
        self._sampler = loop.create_task(self._sample_forever())
        self._store_ready = loop.create_task(self._open_store())

    # -- routes ------------------------------------------------------------------------------------------
    @fastapi_app.get("/healthz", response_model=Health, responses={503: ERROR_RESPONSES[503]}, tags=["service"])
    async def healthz(self) -> Health:
        """200 once every model deployment answers a ping; 503 (ErrorResponse) otherwise. No auth. Concurrent
        health checks share the ping in flight to each deployment (at most one per second each). A model whose
        deployment scales to zero is not pinged (a ping would start a replica): its first prediction does."""
        states = await self._model_states()
        pinged = [m for m in MODEL_NAMES if not (m in states and states[m].on_demand)]
        failures = [f for f in await asyncio.gather(*(self._pings[m].get() for m in pinged)) if f]
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

    @fastapi_app.get(
        "/v1/models",
        response_model=ModelList,
        dependencies=AUTH,
        responses={401: ERROR_RESPONSES[401]},
        tags=["models"],
    )
    async def list_models(self) -> ModelList:
        """Each model's version, task, device, threshold, labels and headline metrics (from its card). A model
        scaled to zero is described without starting a replica (`scaled_to_zero`)."""
        states = await self._model_states()
        infos: list[ModelInfo] = await asyncio.gather(*(self._info(m, states.get(m)) for m in MODEL_NAMES))
        return ModelList(models=infos, case_models=self._args.cases.models())

    @fastapi_app.get(
        "/v1/models/{name}/metrics",
        response_model=ModelMetrics,
        dependencies=AUTH,
        responses={
            401: ERROR_RESPONSES[401],
            404: {"model": ErrorResponse, "description": "unknown model, or no model card"},
        },
        tags=["models"],
    )
    async def model_metrics(self, name: str) -> ModelMetrics:
        """The model card's held-out evaluation: scalars, ROC / PR / calibration points, confusion matrix."""
        try:
            model = catalogue_entry(name).name
        except MedLensInputError as exc:
            raise ApiError(exc.status_code, exc.kind, exc.message) from None
        state = (await self._model_states()).get(model)
        metrics: ModelMetrics | None
        if state is not None and state.at_zero:  # the card beside its checkpoint, without starting a replica
            card = CardSummary.read(self._args.weights_dir(model))
            metrics = None if card is None else ModelMetrics.from_card(card)
        else:
            metrics = await self._call(model, "metrics")
        if metrics is None:
            raise ApiError(
                404,
                "no_model_card",
                f"The {name} checkpoint has no card.json beside it: re-run its training, which writes the card.",
            )
        return metrics

    @fastapi_app.post(
        "/v1/sepsis/predict",
        response_model=SepsisPrediction,
        dependencies=AUTH,
        responses={**ERROR_RESPONSES, 404: {"model": ErrorResponse, "description": "unknown sequence model"}},
        tags=["predict"],
        deprecated=True,
    )
    async def sepsis_predict_alias(
        self,
        response: Response,
        file: UploadFile = File(..., description="PhysioNet 2019 .psv or a CSV with the same column names"),
        model: str = Query("lstm", description="which sequence model: " + ", ".join(_SERIES_NAMES)),
        explain: bool = Query(False, description="add each hour's top 5 features by |integrated gradients|"),
    ) -> SepsisPrediction:
        """Deprecated alias of `POST /v1/sepsis/{model}/predict` (the route of API 1.0): answers the same,
        with a `Deprecation` header and a `Link` to the route to use (docs/api-changelog.md)."""
        if model not in _SERIES_NAMES:
            raise ApiError(
                404, "unknown_model", f"Unknown sequence model {model!r}: choose one of {', '.join(_SERIES_NAMES)}."
            )
        target = catalogue_entry(model)
        data = await read_upload(file, self._args.max_upload_bytes)
        upload = Upload(data, safe_upload_name(file.filename, target.task.file_types, "upload"))
        result: SepsisPrediction = unwrap(await self._call(model, "explain" if explain else "predict", upload))
        response.headers["Deprecation"] = "true"
        response.headers["Link"] = f'<{target.predict_route}>; rel="successor-version"'
        return result

    @fastapi_app.post(
        "/v1/sepsis/{name}/predict",
        dependencies=AUTH,
        responses={
            401: ERROR_RESPONSES[401],
            404: {"model": ErrorResponse, "description": "unknown sequence model"},
        },
        tags=["predict"],
    )
    async def unknown_sequence_model(self, name: str) -> None:
        """Only reached for a name that is not a sequence model: each one has its own application."""
        raise ApiError(
            404,
            "unknown_model",
            f"Unknown sequence model {name!r}: POST to "
            + " or ".join(catalogue_entry(n).predict_route for n in _SERIES_NAMES)
            + ".",
        )

    @fastapi_app.get(
        "/v1/service",
        response_model=ServiceStatus,
        dependencies=AUTH,
        responses={401: ERROR_RESPONSES[401]},
        tags=["service"],
    )
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
    async def _open_store(self) -> None:
        from serving.store.cases import StoreError
        from serving.store.db import describe

        try:
            await asyncio.to_thread(self._store.ready)
            logger.info("case database ready: %s", describe(self._store.url))
        except StoreError as exc:  # the case routes answer 503 and retry on each request
            logger.warning("case database not ready: %s", exc.message)

    async def _predict_case(self, model: str, upload: Upload, explain: bool) -> Any:
        return unwrap(await self._call(model, "explain" if explain else "predict", upload))

    async def _ping(self, model: str) -> str | None:
        """None when ``model``'s deployment answers a ping in time, else what failed."""
        try:
            await asyncio.wait_for(self._handle(model).ping.remote(), self._args.health_timeout_s)
            return None
        except Exception as exc:
            return f"{catalogue_entry(model).serving_name} ({type(exc).__name__})"

    async def _model_states(self) -> dict[str, DeploymentView]:
        """Catalogue model name -> its deployment as Serve reports it now; empty when Serve cannot be asked
        (every model is then treated as always on)."""
        try:
            view = await self._status.get()
        except Exception as exc:
            logger.warning("serve details unavailable: %s", type(exc).__name__)
            return {}
        out: dict[str, DeploymentView] = {}
        for e in CATALOGUE.values():
            state = view.get(e.serving_name, {}).get(e.serving_name)
            if state is not None:
                out[e.name] = state
        return out

    async def _info(self, model: str, state: DeploymentView | None) -> ModelInfo:
        """``model``'s info from its replica; for a model scaled to zero, its last replica's (or its card's)."""
        if state is not None and state.at_zero:
            known = self._infos.get(model)
            if known is not None:
                return known.model_copy(update={"scaled_to_zero": True})
            described = self._card_info(model)
            if described is not None:
                return described
        info: ModelInfo = await self._call(model, "info")
        self._infos[model] = info
        return info

    def _card_info(self, model: str) -> ModelInfo | None:
        """A model that has not run yet, from the catalogue and its card; None without a card, or with a card
        written before cards carried the checkpoint's labels."""
        e = catalogue_entry(model)
        card = CardSummary.read(self._args.weights_dir(model))
        if card is None or card.labels is None:
            return None
        return ModelInfo.of(
            e,
            version=card.version,
            task=card.task,
            device=None,
            backend=None,
            precision=None,
            items_per_s={},
            threshold=card.threshold,
            labels=list(card.labels),
            headline=HeadlineMetrics.from_card(card),
            scaled_to_zero=True,
        )

    def _handle(self, model: str) -> DeploymentHandle:
        if model not in self._handles:
            name = catalogue_entry(model).serving_name
            self._handles[model] = serve.get_deployment_handle(name, app_name=name)
        return self._handles[model]

    async def _call(self, model: str, method: str, *args: Any) -> Any:
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
    def _our_deployments(view: dict[str, dict[str, DeploymentView]]) -> dict[str, DeploymentView]:
        """Deployment name -> its state, over the MedLens applications (the others on the cluster are skipped)."""
        out: dict[str, DeploymentView] = {}
        generators = (g.serving_name for g in GENERATORS.values())
        for app_name in (INGRESS_APP, *(e.serving_name for e in CATALOGUE.values()), *generators):
            out.update(view.get(app_name, {}))
        return out

    async def _deployment_states(self) -> list[DeploymentState]:
        deployments = self._our_deployments(await self._status.get())
        await self._refresh_devices(deployments)
        states: list[DeploymentState] = []
        for name, dep in sorted(deployments.items()):
            served = by_serving_name(name)
            model = served.name if served else None
            known = self._infos.get(model) if model else None
            states.append(
                DeploymentState(
                    name=name,
                    model=model,
                    status=dep.status,
                    replicas=dep.running,
                    starting=dep.starting,
                    stopping=dep.stopping,
                    device=known.device if known else None,
                )
            )
        return states

    async def _refresh_devices(self, deployments: dict[str, DeploymentView]) -> None:
        """Ask each model not heard from yet for its info (its device), unless it is scaled to zero."""
        for model in MODEL_NAMES:
            state = deployments.get(catalogue_entry(model).serving_name)
            if model in self._infos or (state is not None and state.at_zero):
                continue
            with contextlib.suppress(Exception):
                self._infos[model] = await asyncio.wait_for(self._handle(model).info.remote(), 2.0)

    async def _sample_forever(self) -> None:
        while True:
            try:
                deployments = self._our_deployments(await self._status.get())
                if deployments:
                    self._history.add({name: dep.running for name, dep in deployments.items()})
            except Exception as exc:  # never let the sampler die; the next tick retries
                logger.warning("replica sampler: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self._args.history_interval_s)


# ----------------------------------------------------------------------------------------------------------
# application builders (one per application in ray_config.yaml; all take the same typed args)
# ----------------------------------------------------------------------------------------------------------
def _deployment(cls: type) -> Deployment:
    return cast(Deployment, cls)  # @serve.deployment turned the class into a Deployment; mypy sees the class


def ingress_deployment(args: ServingArgs) -> Deployment:
    """The ``medlens`` application's one deployment (checks the weights and the case database's URL first)."""
    check_weights(args.weights_dirs())
    args.cases.db_url(os.environ)
    return _deployment(MedLensIngress)


def model_deployment(args: ServingArgs) -> Deployment:
    """The one deployment of catalogue model ``args.model``, named ``<task>-<architecture>``."""
    if args.model is None:
        raise ValueError("build_model_app needs `args.model`: one of " + ", ".join(MODEL_NAMES))
    model = catalogue_entry(args.model)
    check_weights({model.name: args.weights_dir(model.name)})
    return _deployment(SERVERS[model.task.input_kind]).options(name=model.serving_name)


def synthetic_deployment(args: ServingArgs) -> Deployment:
    """The one deployment of catalogue generator ``args.generator``, named ``synthetic-<name>``."""
    if args.generator is None:
        raise ValueError("build_synthetic_app needs `args.generator`: one of " + ", ".join(GENERATORS))
    generator = generator_entry(args.generator)
    check_weights({generator.name: args.weights_dir(generator.name)})
    return _deployment(SyntheticImageServer).options(name=generator.serving_name)


def build_app(args: ServingArgs) -> Application:
    """The ``medlens`` application (prefix ``/``): health, models, metrics, service statistics, API document.
    Ray Serve validates the YAML ``args`` into :class:`ServingArgs` (unknown keys are refused)."""
    return ingress_deployment(args).bind(args)


def build_model_app(args: ServingArgs) -> Application:
    """The application of catalogue model ``args.model`` (prefix: its ``route_prefix``), deployed as
    ``<task>-<architecture>``."""
    return model_deployment(args).bind(args)


def build_synthetic_app(args: ServingArgs) -> Application:
    """The application of catalogue generator ``args.generator`` (prefix: its ``route_prefix``), deployed as
    ``synthetic-<name>``."""
    return synthetic_deployment(args).bind(args)


#: Each application builder of ray_config.yaml's ``import_path`` -> its one deployment, unbound
#: (serving/launch.py applies the YAML's deployment options, then binds the args).
DEPLOYMENT_OF = {
    "build_app": ingress_deployment,
    "build_model_app": model_deployment,
    "build_synthetic_app": synthetic_deployment,
}


__all__ = [
    "DEPLOYMENT_OF",
    "EventsModelServer",
    "ImageModelServer",
    "MedLensIngress",
    "SeriesModelServer",
    "ServingArgs",
    "SyntheticImageServer",
    "build_app",
    "build_model_app",
    "build_synthetic_app",
    "fastapi_app",
    "ingress_deployment",
    "model_deployment",
    "synthetic_deployment",
]
