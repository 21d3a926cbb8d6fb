"""Builder arguments, the Serve config files and device choice (no Ray cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError
from ray.serve._private.constants import RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S
from ray.serve.schema import ServeDeploySchema

from models.catalogue import CATALOGUE, GENERATORS, MODEL_NAMES, by_serving_name, entry
from models.config import REPO_ROOT
from models.errors import WeightsError
from models.inference import resolve_device
from serving._inference import device_name, replica_device
from serving._settings import (
    INGRESS_APP,
    INGRESS_DEPLOYMENT,
    WEIGHTS_DIR_ENV,
    BatchConfig,
    ServingArgs,
    check_weights,
    fast_path_env,
)
from serving.app import build_app, build_model_app

CPU_CONFIG = REPO_ROOT / "ray_config.yaml"
GPU_CONFIG = REPO_ROOT / "ray_config.gpu.yaml"
TEST_CONFIG = REPO_ROOT / "tests" / "serving" / "ray_config.test.yaml"


def _load(path: Path) -> ServeDeploySchema:
    return ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))


def _max_resources(config: ServeDeploySchema, resource: str) -> float:
    """Sum over deployments of (resource per replica x the most replicas it can have)."""
    total = 0.0
    for dep in (d for app in config.applications for d in app.deployments):
        options = dep.ray_actor_options.model_dump()
        per_replica = float(options.get(resource) or 0.0)
        auto = dep.autoscaling_config  # unset fields hold Ray's DEFAULT sentinel
        if isinstance(auto, dict):
            replicas = auto["max_replicas"]
        else:
            replicas = dep.num_replicas if isinstance(dep.num_replicas, int) else 1
        total += per_replica * replicas
    return total


# -- builder arguments --------------------------------------------------------------------------------------
def test_defaults() -> None:
    args = ServingArgs()
    assert args.torch_threads == 1
    assert args.max_upload_mb == 25
    assert args.max_upload_bytes == 25 * 1024 * 1024
    assert args.auth_token_env == "MEDLENS_API_TOKEN"
    assert args.auth == "when_set"  # `make run` on one machine: a token only when MEDLENS_API_TOKEN is set
    assert args.cors.allow_origins == []
    assert args.cors.allow_methods == ["GET", "POST", "DELETE"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"torch_thread": 2}, "Extra inputs are not permitted"),  # typo at the top level
        ({"weights": {"cnn": "x", "gru": "y"}}, "Unknown model 'gru'"),  # not in the catalogue
        ({"cors": {"allow_origin": ["*"]}}, "Extra inputs are not permitted"),  # typo in a nested block
    ],
)
def test_unknown_keys_are_rejected(args: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServingArgs.model_validate(args)


@pytest.mark.parametrize("args", [{"torch_threads": 0}, {"max_upload_mb": -1}, {"auth_token_env": ""}])
def test_invalid_values_are_rejected(args: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ServingArgs.model_validate(args)


def test_batch_user_config_is_validated() -> None:
    assert BatchConfig.model_validate({"max_batch_size": 4, "batch_wait_timeout_s": 0.01}).max_batch_size == 4
    with pytest.raises(ValidationError):
        BatchConfig.model_validate({"max_batch": 4, "batch_wait_timeout_s": 0.01})
    with pytest.raises(ValidationError, match="batch_wait_timeout_s"):  # no default: the YAML must say it
        BatchConfig.model_validate({"max_batch_size": 4})


def test_weights_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    assert ServingArgs().weights_dir("cnn") == entry("cnn").default_weights
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    assert ServingArgs().weights_dir("lstm") == tmp_path / "lstm"
    # explicit beats the env var; relative paths are relative to the repository root
    args = ServingArgs.model_validate({"weights": {"cnn": "runs/smoke/cnn", "lstm": "/abs/lstm"}})
    assert args.weights_dir("cnn") == REPO_ROOT / "runs" / "smoke" / "cnn"
    assert args.weights_dir("lstm") == Path("/abs/lstm")
    assert args.weights_dir("transformer") == tmp_path / "transformer"
    with pytest.raises(ValidationError, match="resnet"):  # a model the catalogue does not have
        ServingArgs.model_validate({"weights": {"resnet": "/x"}})
    with pytest.raises(ValidationError):
        ServingArgs.model_validate({"model": "resnet"})


def test_missing_weights_fail_with_instructions(tmp_path: Path) -> None:
    args = ServingArgs.model_validate({"weights": {"cnn": str(tmp_path / "nope")}})
    with pytest.raises(WeightsError, match=r"cnn: .*nope/model.pt.*MEDLENS_WEIGHTS_DIR"):
        check_weights(args.weights_dirs())
    with pytest.raises(WeightsError):
        build_app(args)
    with pytest.raises(WeightsError):
        build_model_app(args.model_copy(update={"model": "cnn"}))
    missing_lstm = ServingArgs.model_validate({"weights": {"lstm": str(tmp_path / "nope")}})
    with pytest.raises(WeightsError, match="lstm: "):
        build_model_app(missing_lstm.model_copy(update={"model": "lstm"}))
    # only its own checkpoint matters to a model application
    build_model_app(missing_lstm.model_copy(update={"model": "transformer"}))
    # the message names the folders the application reads (the generator's too)
    with pytest.raises(WeightsError, match=r"holding gan/\.$"):
        check_weights({"gan": tmp_path / "nope"})
    with pytest.raises(ValueError, match=r"args\.model"):
        build_model_app(ServingArgs())


def test_fast_path_environment() -> None:
    env = fast_path_env()
    assert env == {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1",
        "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(64 * 1024 * 1024),
        "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": "2",
        "RAY_SERVE_HAPROXY_HARD_STOP_AFTER_S": "330",
        "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        "RAY_enable_metrics_collection": "0",
        "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
    }


# -- the Serve config files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [CPU_CONFIG, GPU_CONFIG, TEST_CONFIG], ids=lambda p: p.name)
def test_config_files_parse(path: Path) -> None:
    config = _load(path)
    apps = {app.name: app for app in config.applications}
    # one application per catalogue model and generator, named, routed and built as the catalogue says
    assert set(apps) == {
        INGRESS_APP,
        *(e.serving_name for e in CATALOGUE.values()),
        *(g.serving_name for g in GENERATORS.values()),
    }
    ingress = apps[INGRESS_APP]
    assert ingress.import_path == "serving.app:build_app" and ingress.route_prefix == "/"
    assert [d.name for d in ingress.deployments] == [INGRESS_DEPLOYMENT]
    shared = {k: v for k, v in ingress.args.items() if k != "model"}
    ServingArgs.model_validate(ingress.args)  # the builder would accept them
    for model in CATALOGUE.values():
        app = apps[model.serving_name]
        assert app.import_path == "serving.app:build_model_app"
        assert app.route_prefix == model.route_prefix
        assert [d.name for d in app.deployments] == [model.serving_name]
        assert ServingArgs.model_validate(app.args).model == model.name
        assert {k: v for k, v in app.args.items() if k != "model"} == shared, f"{model.name}: the same args"
    for generator in GENERATORS.values():
        app = apps[generator.serving_name]
        assert app.import_path == "serving.app:build_synthetic_app"
        assert app.route_prefix == generator.route_prefix
        assert [d.name for d in app.deployments] == [generator.serving_name]
        assert ServingArgs.model_validate(app.args).generator == generator.name
        assert {k: v for k, v in app.args.items() if k != "generator"} == shared, f"{generator.name}: the same args"
    assert config.http_options.host == "127.0.0.1"
    for dep in (d for app in config.applications for d in app.deployments):
        if dep.name == INGRESS_DEPLOYMENT:
            continue
        auto = dep.autoscaling_config
        assert isinstance(auto, dict) and auto["min_replicas"] >= 0, dep.name
        if auto["min_replicas"] == 0:  # on demand: nothing started at deploy time, its first request starts one
            assert auto.get("initial_replicas") == 0, f"{dep.name}: scales to zero, so it starts at zero"
        assert dep.max_queued_requests > 0, f"{dep.name}: a full queue must answer 503, not wait forever"
        batch = BatchConfig.model_validate(dep.user_config)
        assert batch.max_batch_size <= dep.max_ongoing_requests, f"{dep.name}: a batch could never fill"


def _on_demand(config: ServeDeploySchema) -> set[str]:
    """Deployments that scale to zero (``min_replicas: 0``)."""
    return {
        d.name
        for app in config.applications
        for d in app.deployments
        if isinstance(d.autoscaling_config, dict) and d.autoscaling_config["min_replicas"] == 0
    }


def test_the_same_deployments_scale_to_zero_in_every_profile() -> None:
    """Scaling to zero is a decision about a model (how often it is asked), not about a machine: the same in
    every profile. The mortality models and the generator do; the models the worklist uses always answer."""
    expected = {"mortality-lstm", "mortality-transformer", *(g.serving_name for g in GENERATORS.values())}
    for path in (CPU_CONFIG, GPU_CONFIG, TEST_CONFIG):
        assert _on_demand(_load(path)) == expected, path.name


def test_cpu_profile_fits_two_cores() -> None:
    config = _load(CPU_CONFIG)
    assert config.http_options.port == 8000
    assert _max_resources(config, "num_cpus") <= 2.0
    assert _max_resources(config, "num_gpus") == 0.0
    ingress = next(d for app in config.applications for d in app.deployments if d.name == INGRESS_DEPLOYMENT)
    assert ingress.ray_actor_options.num_cpus is not None and ingress.ray_actor_options.num_cpus <= 0.25


def test_gpu_profile_shares_one_card() -> None:
    config = _load(GPU_CONFIG)
    models = [d for app in config.applications for d in app.deployments if by_serving_name(d.name)]
    assert len(models) == len(MODEL_NAMES)
    on_demand = _on_demand(config)
    for dep in models:
        gpus = dep.ray_actor_options.num_gpus
        if dep.name in on_demand:  # small, scaled to zero: on CPU, so a replica starting from zero needs no CUDA
            assert not gpus, f"{dep.name} scales to zero and runs on CPU"
            continue
        assert gpus is not None and 0 < gpus < 1, f"{dep.name} should take a fraction of a GPU"
        assert BatchConfig.model_validate(dep.user_config).max_batch_size >= 32
    assert _max_resources(config, "num_gpus") <= 1.0


def test_test_profile_uses_its_own_port() -> None:
    assert _load(TEST_CONFIG).http_options.port == 18000


# -- device choice ------------------------------------------------------------------------------------------
def test_replica_without_gpu_runs_on_cpu() -> None:
    assert replica_device([]) == torch.device("cpu")
    assert device_name(replica_device([])) == "cpu"


def test_replica_with_gpu_uses_cuda_when_visible() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert replica_device([0]).type == expected
    assert resolve_device("auto").type == expected
    assert resolve_device("cuda").type == expected  # asks for CUDA, falls back to CPU without it


@pytest.mark.parametrize("path", [CPU_CONFIG, GPU_CONFIG, TEST_CONFIG])
def test_calls_between_deployments_carry_the_largest_upload(path: Path) -> None:
    """A case upload's file travels from the ingress to a model replica over gRPC in the fast path: its
    message limit must exceed every application's upload limit (with room for the framing)."""
    limit = int(fast_path_env()["RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"])
    for app in yaml.safe_load(path.read_text())["applications"]:
        args = ServingArgs.model_validate(app.get("args") or {})
        assert limit >= args.max_upload_bytes + 1024 * 1024, (path.name, app["name"])


@pytest.mark.parametrize("path", [CPU_CONFIG, GPU_CONFIG, TEST_CONFIG])
def test_a_reload_of_haproxy_lets_a_request_run_to_its_timeout(path: Path) -> None:
    """HAProxy reloads when a replica comes or goes, and its old process ends what is still in flight after
    hard-stop-after: that must not be sooner than the request timeout the config promises (Ray's default, 120 s,
    cut a queued explanation off with a 500 at 120 s after an autoscaling step, inside a 300 s timeout)."""
    timeout = yaml.safe_load(path.read_text())["http_options"]["request_timeout_s"]
    assert int(fast_path_env()["RAY_SERVE_HAPROXY_HARD_STOP_AFTER_S"]) >= timeout + 10, path.name


@pytest.mark.parametrize("path", [CPU_CONFIG, GPU_CONFIG], ids=lambda p: p.name)
def test_a_stopped_replica_finishes_what_it_admitted(path: Path) -> None:
    """A replica that Serve stops (downscale, redeploy) keeps admitting requests for its direct-ingress drain
    window (Ray 2.60: 30 s), then waits for them, and is killed ``graceful_shutdown_timeout_s`` after it was told
    to stop (Ray's default: 20 s, raised to 35 s for an ingress). Every deployment of the production profiles
    must let a request admitted at the end of that window run to the request timeout."""
    config = _load(path)
    needed = config.http_options.request_timeout_s + RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S
    for dep in (d for app in config.applications for d in app.deployments):
        assert dep.graceful_shutdown_timeout_s >= needed, f"{path.name} {dep.name}: graceful_shutdown_timeout_s"


@pytest.mark.parametrize("path", [CPU_CONFIG, GPU_CONFIG], ids=lambda p: p.name)
def test_the_ingress_queue_is_bounded(path: Path) -> None:
    """The one ingress replica holds each request's upload: past max_ongoing_requests + max_queued_requests a
    request gets 503 + Retry-After instead of waiting in an unbounded queue."""
    ingress = next(d for app in _load(path).applications for d in app.deployments if d.name == INGRESS_DEPLOYMENT)
    assert 0 < ingress.max_queued_requests <= ingress.max_ongoing_requests
    assert ingress.backpressure_config.retry_after_s > 0
