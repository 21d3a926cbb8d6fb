"""The model and generator deployments of MedLens serving, and what their replicas share with the ingress.

A replica of a model or generator application imports this module, not :mod:`serving.app`: the ingress's
routes, case API and database stay out of model replicas (their start-up CPU on 2 cores, and their memory).
:mod:`serving.app` re-exports the deployments and builds the applications.

* :class:`ImageModelServer`, :class:`SeriesModelServer`, :class:`EventsModelServer`: one catalogue model each (by
  its task's input kind), the HTTP ingress of the model's route prefix: the upload is checked, batched with
  concurrent ones (``@serve.batch``) and decoded inside the batch (serving/_inference.py).
* :class:`SyntheticImageServer`: a generator's marked synthetic radiographs.

Like serving/app.py, this module deliberately has no ``from __future__ import annotations`` (Ray Serve and FastAPI
read the runtime annotations of the routes).
"""

import asyncio
import logging
import os
import secrets
from collections.abc import Sequence
from typing import Any, Literal

import ray
from fastapi import FastAPI, File, Query, Response, UploadFile
from ray import serve
from ray.serve.handle import DeploymentHandle

from models.catalogue import (
    MAX_SEED,
    ModelEntry,
    generator_entry,
)
from models.catalogue import entry as catalogue_entry
from models.errors import MedLensInputError
from models.synthetic_mark import SyntheticMark
from serving._http import (
    AUTH,
    ERROR_RESPONSES,
    REPLICA_HTTP,
    ApiError,
    BodyLimit,
    ContainUnexpected,
    ReplicaCors,
    TokenBeforeBody,
    install_error_handlers,
    read_upload,
)
from serving._protocol import ItemError, Upload, input_error, model_failure, safe_upload_name
from serving._settings import INGRESS_APP, INGRESS_DEPLOYMENT, BatchConfig, ServingArgs
from serving._stats import (
    RequestStats,
    RequestStatsMiddleware,
    StatsBuffer,
)
from serving.schemas import (
    ModelInfo,
    ModelMetrics,
    MortalityPrediction,
    SepsisPrediction,
    XrayPrediction,
)

logger = logging.getLogger("ray.serve")


# Helpers used by the deployments live above them: @serve.deployment pickles a class by value when
# it is decorated, so names defined further down this module would be missing in the replicas.
def unwrap(result: Any) -> Any:
    if isinstance(result, ItemError):
        raise ApiError(result.status, result.error, result.detail)
    return result


def generate_each(generator: Any, requests: Sequence[tuple[str, int]], name: str) -> list[bytes | ItemError]:
    """A marked PNG for each (label, seed) of a batch, each made alone (as the generator makes them anyway: the
    bytes depend on the label and seed alone). A request the generator refuses is its own input error, one it
    fails on its own ``model_error``: never the batch's."""
    out: list[bytes | ItemError] = []
    for label, seed in requests:
        try:
            out.append(generator.png(label, seed))
        except MedLensInputError as exc:
            out.append(input_error(exc))
        except Exception as exc:
            out.append(model_failure(exc, name))
    return out


_API_DESCRIPTION = (
    "Chest X-ray pneumonia (CNN), ICU sepsis risk (LSTM, Transformer) and ICU in-hospital mortality (LSTM, "
    "Transformer) models, and a conditional GAN for synthetic demo radiographs, behind Ray Serve. "
    "Every error body is `ErrorResponse {error, detail}`. Research software, not a medical device."
)


def http_api(title: str, description: str, docs: bool = False) -> FastAPI:
    """A FastAPI app with what every MedLens HTTP ingress shares: request statistics, error mapping.
    Only the ``medlens`` ingress serves an API document (the merged one)."""
    api = FastAPI(
        title=title,
        version="1.16.0",
        description=f"{description} {_API_DESCRIPTION}",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    api.add_middleware(TokenBeforeBody)  # the token before a body is parsed (inside BodyLimit: a size refusal first)
    api.add_middleware(BodyLimit)
    api.add_middleware(RequestStatsMiddleware)
    api.add_middleware(ReplicaCors)
    api.add_middleware(ContainUnexpected)  # outermost of ours: BodyLimit's own exception is BodyLimit's
    install_error_handlers(api)
    return api


def configure_replica(
    args: ServingArgs,
    stats: RequestStats | StatsBuffer,
    max_body_bytes: int,
    route_body_bytes: dict[str, int] | None = None,
) -> None:
    """This replica's HTTP settings: where statistics go, the bearer token (and the variable it came from, named in
    a 401), CORS, the largest request body (0: the routes take no body) and the paths allowed a larger one
    (serving._http.REPLICA_HTTP)."""
    REPLICA_HTTP.stats = stats
    REPLICA_HTTP.max_body_bytes = max_body_bytes
    REPLICA_HTTP.route_body_bytes = dict(route_body_bytes or {})
    REPLICA_HTTP.api_token = args.api_token(os.environ)  # ConfigError (the replica does not start) naming it
    REPLICA_HTTP.api_token_env = args.auth_token_env  # named in a 401
    cors = args.cors
    REPLICA_HTTP.cors = (
        {"allow_origins": cors.allow_origins, "allow_methods": cors.allow_methods, "allow_headers": cors.allow_headers}
        if cors.allow_origins
        else {}
    )


image_api = http_api("MedLens image models", "`POST <prefix>/predict`: the prediction for one image.")
series_api = http_api("MedLens series models", "`POST <prefix>/predict`: hourly risk for one ICU stay.")
events_api = http_api(
    "MedLens ICU record models",
    "`POST <prefix>/predict`: in-hospital mortality from the first 48 hours of one ICU stay (PhysioNet 2012).",
)


# ----------------------------------------------------------------------------------------------------------
# model deployments (options: the YAML's `deployments` block of each model application)
# ----------------------------------------------------------------------------------------------------------
class _Replica:
    """What every replica of a model or generator does: its HTTP settings, and its request statistics
    shipped to the ``medlens`` ingress in the background."""

    def _start_replica(self, args: ServingArgs, max_body_bytes: int) -> None:
        self._batching_configured = False  # until Serve calls ``reconfigure`` with the YAML's user_config
        self._stats = StatsBuffer()
        configure_replica(args, self._stats, max_body_bytes)
        self._stats_flush_s = args.stats_flush_s
        # The constructor runs on the replica's event loop: ship request statistics in the background.
        self._flusher = asyncio.get_running_loop().create_task(self._flush_stats_forever())

    async def _flush_stats_forever(self) -> None:
        """Send this replica's request statistics to the ``medlens`` ingress (GET /v1/service)."""
        ingress: DeploymentHandle | None = None
        while True:
            await asyncio.sleep(self._stats_flush_s)
            records = self._stats.drain()
            if not records:
                continue
            try:
                if ingress is None:
                    ingress = serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name=INGRESS_APP)
                await asyncio.wait_for(ingress.ingest_stats.remote(records), 10.0)
            except Exception as exc:  # the ingress is restarting or absent: these records are lost
                logger.warning("request statistics not delivered (%d records): %s", len(records), type(exc).__name__)

    async def ping(self) -> str:
        return "ok"

    # The replica's method under ``@serve.batch``: its batch size and wait come from the YAML's user_config.
    def _batched(self) -> Any:
        raise NotImplementedError

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Ray Serve's hook for the YAML's ``user_config``: batch size and wait (no restart needed)."""
        cfg = BatchConfig.model_validate(user_config or {})
        self._batched().set_max_batch_size(cfg.max_batch_size)
        self._batched().set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        self._batching_configured = True

    def _check_batching(self, name: str) -> None:
        if not self._batching_configured:
            raise RuntimeError(
                f"batching of {name} is not configured: give the deployment a user_config "
                "with max_batch_size and batch_wait_timeout_s in the serve config"
            )


class _ModelServer(_Replica):
    """What every model replica does the same way: dynamic batching of raw uploads, a separate
    non-batched explanation path, model info / card metrics, and a health check. The runner
    (serving/_inference.py) follows the model's input kind."""

    def __init__(self, args: ServingArgs) -> None:
        if args.model is None:
            raise ValueError("a model application needs `args.model` (a name from models/catalogue.py)")
        # Imported here, not at the top: the ingress and the application builders never load torch, so
        # they import in a fraction of the time and hold a fraction of the memory of a model replica.
        from serving._inference import RUNNERS, Runner, configure_torch, replica_device

        self._args = args
        self._entry: ModelEntry = catalogue_entry(args.model)
        configure_torch(args.torch_threads)
        device = replica_device(ray.get_gpu_ids())
        runner = RUNNERS[self._entry.task.input_kind]
        options: dict[str, Any] = {}
        if runner.takes_explain_max_hours:
            options["explain_max_hours"] = args.explain_max_hours
        self._runner: Runner[Any, Any, Any] = runner(
            self._entry,
            args.weights_dir(self._entry.name),
            device,
            backend=args.backends.get(self._entry.name, "auto"),
            **options,
        )
        # One batch at a time on the predicting copy, one explanation at a time on the explaining copy
        # (Grad-CAM / IG hook their model); the two run side by side.
        self._predict_lock = asyncio.Lock()
        self._explain_lock = asyncio.Lock()
        self._start_replica(args, args.max_upload_bytes)

    async def _answer(
        self, file: UploadFile, explain: bool, include: frozenset[str], explain_hour: int | None = None
    ) -> Any:
        """One HTTP request's prediction: the upload (size-limited, its name reduced to a known suffix)
        batched with concurrent ones, or a separate explanation (``explain_hour``: of that hour alone)."""
        data = await read_upload(file, self._args.max_upload_bytes)
        name = safe_upload_name(file.filename, self._entry.task.file_types, "upload")
        upload = Upload(data, name, include, explain_hour)
        explained = explain or explain_hour is not None
        return unwrap(await (self.explain(upload) if explained else self.predict(upload)))

    def _batched(self) -> Any:
        return self.predict

    # Batch size and wait come from the YAML's user_config (``reconfigure``); until then one at a time.
    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def predict(self, uploads: list[Upload]) -> list[Any]:
        async with self._predict_lock:
            return await asyncio.to_thread(self._runner.predict_batch, uploads)

    async def explain(self, upload: Upload) -> Any:
        """Attributions on the explaining copy, then the prediction on the predicting copy (what the same
        upload gets without explain)."""
        async with self._explain_lock:
            explained = await asyncio.to_thread(self._runner.explanation_of, upload)
        if isinstance(explained, ItemError):
            return explained
        async with self._predict_lock:
            return await asyncio.to_thread(self._runner.respond_explained, upload, *explained)

    async def info(self) -> ModelInfo:
        return self._runner.info()

    async def metrics(self) -> ModelMetrics | None:
        return self._runner.metrics()

    def check_health(self) -> None:
        self._check_batching(self._entry.serving_name)
        if not self._runner.healthy:
            failures = self._runner.consecutive_failures
            raise RuntimeError(f"the {self._entry.name} model failed {failures} batches in a row")


@serve.deployment
@serve.ingress(image_api)
class ImageModelServer(_ModelServer):
    """Replica and HTTP ingress of an image model's application: batched predictions, Grad-CAM on request."""

    def __init__(self, args: ServingArgs) -> None:
        super().__init__(args)

    @image_api.post(
        "/predict",
        response_model=XrayPrediction,
        response_model_exclude_none=False,
        dependencies=AUTH,
        responses=ERROR_RESPONSES,
        tags=["predict"],
    )
    async def predict_image(
        self,
        file: UploadFile = File(..., description="PNG, JPEG or single-frame image DICOM"),
        explain: bool = Query(False, description="add a Grad-CAM heatmap (base64 PNG at the image's size)"),
        preview: bool = Query(False, description="add the image as the model read it (base64 PNG, <= 1024 px)"),
    ) -> XrayPrediction:
        """Pneumonia score, label and calibrated probability for one chest X-ray."""
        result: XrayPrediction = await self._answer(file, explain, frozenset({"preview"} if preview else ()))
        return result


@serve.deployment
@serve.ingress(series_api)
class SeriesModelServer(_ModelServer):
    """Replica and HTTP ingress of an hourly-series model's application: padded batches of variable-length
    series, integrated-gradients attributions on request."""

    def __init__(self, args: ServingArgs) -> None:
        super().__init__(args)

    @series_api.post(
        "/predict",
        response_model=SepsisPrediction,
        dependencies=AUTH,
        responses=ERROR_RESPONSES,
        tags=["predict"],
    )
    async def predict_series(
        self,
        file: UploadFile = File(..., description="PhysioNet 2019 .psv or a CSV with the same column names"),
        explain: bool = Query(False, description="add each hour's top 5 features by |integrated gradients|"),
        explain_hour: int | None = Query(
            None,
            ge=0,
            le=1_000_000,
            description="explain this hour alone (0-based row; implies explain): its top 5 features, the other "
            "hours none. Its cost grows with the hour, not with the square of the stay's length, and it fits any "
            "stay the model reads (explain=true is limited to explain_max_hours rows)",
        ),
        vitals: bool = Query(False, description="add the vital signs as the model read them, for display"),
    ) -> SepsisPrediction:
        """Hourly sepsis score and calibrated probability for one ICU stay (one row per hour; a single row, the
        first hour, is scored too)."""
        include = frozenset({"vitals"} if vitals else ())
        result: SepsisPrediction = await self._answer(file, explain, include, explain_hour)
        return result


@serve.deployment
@serve.ingress(events_api)
class EventsModelServer(_ModelServer):
    """Replica and HTTP ingress of an ICU-record model's application: batches of 48-hour records (PhysioNet 2012
    ``Time,Parameter,Value`` rows), integrated-gradients attributions of the 48th hour's risk on request."""

    def __init__(self, args: ServingArgs) -> None:
        super().__init__(args)

    @events_api.post(
        "/predict",
        response_model=MortalityPrediction,
        dependencies=AUTH,
        responses=ERROR_RESPONSES,
        tags=["predict"],
    )
    async def predict_events(
        self,
        file: UploadFile = File(
            ...,
            description="a PhysioNet 2012 record: `Time,Parameter,Value` rows of the stay's first 48 hours (.txt, "
            "or .csv with that header)",
        ),
        explain: bool = Query(
            False, description="add the variables that drove the 48th hour's risk (integrated gradients; seconds)"
        ),
    ) -> MortalityPrediction:
        """Score and calibrated probability of death in hospital from the first 48 hours of one ICU stay (the 48th
        hour's), with both after each hour and the fold members' band. The record's identifier is never returned."""
        result: MortalityPrediction = await self._answer(file, explain, frozenset())
        return result


synthetic_api = http_api(
    "MedLens synthetic images", "`POST <prefix>/xray`: one synthetic chest radiograph, marked as synthetic."
)
_SYNTHETIC_PNG: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": {}},
        "description": "a 256 x 256 grey PNG with a SYNTHETIC band burned in and the `MedLens-Synthetic` text "
        "chunk; the same mark in the `X-MedLens-Synthetic` header",
    }
}


@serve.deployment
@serve.ingress(synthetic_api)
class SyntheticImageServer(_Replica):
    """Replica and HTTP ingress of a generator's application: batched generation of marked synthetic images."""

    def __init__(self, args: ServingArgs) -> None:
        if args.generator is None:
            raise ValueError("a synthetic-image application needs `args.generator` (models/catalogue.py GENERATORS)")
        from serving._inference import configure_torch

        configure_torch(args.torch_threads)
        entry = generator_entry(args.generator)
        self._name = entry.name
        self._generator = entry.load(args.weights_dir(entry.name))
        self._labels: tuple[str, ...] = tuple(self._generator.labels)
        self._lock = asyncio.Lock()
        self._start_replica(args, 0)  # its one route takes no request body (label and seed: query parameters)

    def _batched(self) -> Any:
        return self.generate

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def generate(self, requests: list[tuple[str, int]]) -> list[bytes | ItemError]:
        async with self._lock:
            return await asyncio.to_thread(generate_each, self._generator, requests, self._name)

    @synthetic_api.post(
        "/xray",
        response_class=Response,
        dependencies=AUTH,
        responses={**_SYNTHETIC_PNG, **ERROR_RESPONSES},
        tags=["synthetic"],
    )
    async def synthetic_xray(
        self,
        label: Literal["NORMAL", "PNEUMONIA"] = Query(..., description="the class to generate"),
        seed: int | None = Query(
            None, ge=0, le=MAX_SEED, description="the same seed gives the same image; absent: a random one"
        ),
    ) -> Response:
        """One synthetic chest radiograph of the class asked for: never a real patient, and marked so in its
        pixels (a SYNTHETIC band) and its PNG text chunk. Uploaded back (a prediction, a case), MedLens flags
        it `synthetic` and keeps it out of every metric of real data."""
        if label not in self._labels:
            raise ApiError(422, "invalid_input", f"Unknown label {label!r}: choose one of {', '.join(self._labels)}.")
        chosen = secrets.randbelow(2**31) if seed is None else seed
        png = unwrap(await self.generate((label, chosen)))
        mark = SyntheticMark(self._generator.version, chosen, label).text()
        return Response(
            png,
            media_type="image/png",
            headers={
                "X-MedLens-Synthetic": mark,
                "Content-Disposition": f'inline; filename="synthetic-{label}-seed{chosen}.png"',
            },
        )

    def check_health(self) -> None:
        self._check_batching("the synthetic-image deployment")


#: A model's input kind -> its deployment class, and the FastAPI app of that class (the ingress merges every
#: app's routes into the one API document).
SERVERS: dict[str, Any] = {"image": ImageModelServer, "series": SeriesModelServer, "events": EventsModelServer}
APIS: dict[str, FastAPI] = {"image": image_api, "series": series_api, "events": events_api}
