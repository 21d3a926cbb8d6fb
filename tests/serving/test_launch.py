"""serving/launch.py (what `make run` deploys with): every application of each Serve config file, built in one
process, carries exactly the options the file sets (no Ray cluster needed); and ``--start-head``, as ``make run``
runs it, starts its own Ray and serves ray_config.yaml until healthy (a real Ray, on ports of its own)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from models.config import REPO_ROOT
from serving import kuberay
from serving._settings import ServingArgs, fast_path_env
from serving.app import DEPLOYMENT_OF
from serving.launch import (
    BUILDERS,
    bind_targets,
    deployment_options,
    gpu_shortfall,
    is_loopback,
    main,
    ray_start_command,
    starting_replicas,
    validate,
)
from tests.conftest import _port_busy, kill_session
from tests.raycluster import Ports, node_port_args, serve_ports_env

CONFIGS = [
    REPO_ROOT / "ray_config.yaml",
    REPO_ROOT / "ray_config.gpu.yaml",
    REPO_ROOT / "tests/serving/ray_config.test.yaml",
]


def _load(path: Path) -> ServeDeploySchema:
    return ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def _assert_subset(expected: Any, actual: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a mapping"
        for key, value in expected.items():
            _assert_subset(value, actual.get(key), f"{where}.{key}")
    else:
        assert actual == expected, f"{where}: built {actual!r}, the file says {expected!r}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_each_application_gets_the_files_name_prefix_args_and_deployment_options(path: Path) -> None:
    config = _load(path)
    targets = bind_targets(validate(config))
    assert [t.name for t in targets] == [a.name for a in config.applications]
    for app, target in zip(config.applications, targets, strict=True):
        assert target.route_prefix == app.route_prefix
        deployment = target.target._bound_deployment  # Serve's own record of the bound deployment
        assert deployment._replica_config.init_args == (ServingArgs.model_validate(app.args),)
        options = deployment_options(app)
        assert list(options) == [deployment.name], f"{app.name}: the file names the deployment {deployment.name}"
        checked = 0
        for key, value in options[deployment.name].items():
            if key == "ray_actor_options":
                _assert_subset(value, deployment._replica_config.ray_actor_options, f"{app.name}.{key}")
            elif key == "num_replicas":
                assert deployment.num_replicas == value
            else:
                _assert_subset(value, _plain(getattr(deployment._deployment_config, key)), f"{app.name}.{key}")
            checked += 1
        assert checked >= 2  # every deployment of these files sets options (a file without any would say nothing)
        logging = app.logging_config or config.logging_config
        assert target.logging_config == (logging.model_dump() if logging else None)


def test_a_file_naming_a_deployment_the_application_lacks_is_refused() -> None:
    raw = yaml.safe_load((REPO_ROOT / "ray_config.yaml").read_text())
    raw["applications"][1]["deployments"][0]["name"] = "pneumonia-cnn-typo"
    with pytest.raises(SystemExit, match="no deployment named"):
        bind_targets(validate(ServeDeploySchema.model_validate(raw)))


def test_an_import_path_that_is_not_a_medlens_builder_is_refused() -> None:
    raw = yaml.safe_load((REPO_ROOT / "ray_config.yaml").read_text())
    raw["applications"][0]["import_path"] = "somewhere.else:app"
    with pytest.raises(SystemExit, match="not a MedLens builder"):
        bind_targets(validate(ServeDeploySchema.model_validate(raw)))


def test_the_builders_are_serving_apps() -> None:
    assert set(BUILDERS) == set(DEPLOYMENT_OF)


# -- what validate() refuses (the reviewer's probes, /tmp/review_serving/probe_config.py) ------------------------
def _app(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in raw["applications"] if a["name"] == name)


def _deployment(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(_app(raw, name)["deployments"][0])


def _set_deployment(raw: dict[str, Any], name: str, **changes: Any) -> None:
    dep = _app(raw, name)["deployments"][0]
    for key, value in changes.items():
        if value is None:
            dep.pop(key, None)
        else:
            dep[key] = value


def _set_args(raw: dict[str, Any], name: str, **changes: Any) -> None:
    app = _app(raw, name)
    app["args"] = {**app["args"], **changes}


def _duplicate(raw: dict[str, Any]) -> None:
    raw["applications"].append(
        {**copy.deepcopy(_app(raw, "sepsis-lstm")), "name": "sepsis-lstm2", "route_prefix": "/x"}
    )


BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no user_config": (
        lambda r: _set_deployment(r, "pneumonia-cnn", user_config=None),
        r"application 'pneumonia-cnn', deployment 'pneumonia-cnn': no user_config: give it `user_config: "
        r"\{max_batch_size",
    ),
    "no user_config (generator)": (
        lambda r: _set_deployment(r, "synthetic-gan", user_config=None),
        "application 'synthetic-gan', deployment 'synthetic-gan': no user_config",
    ),
    "max_batch_size 0": (
        lambda r: _set_deployment(r, "sepsis-lstm", user_config={"max_batch_size": 0, "batch_wait_timeout_s": 0.01}),
        "application 'sepsis-lstm', deployment 'sepsis-lstm': user_config.max_batch_size: Input should be greater",
    ),
    "user_config typo": (
        lambda r: _set_deployment(r, "pneumonia-cnn", user_config={"max_batch": 8, "batch_wait_timeout_s": 0.01}),
        "deployment 'pneumonia-cnn': user_config.max_batch: Extra inputs are not permitted",
    ),
    "max_ongoing below the batch": (
        lambda r: _set_deployment(r, "pneumonia-cnn", max_ongoing_requests=4),
        "deployment 'pneumonia-cnn': max_ongoing_requests 4 is below user_config.max_batch_size 16",
    ),
    "max_ongoing at Ray's default (5)": (
        lambda r: _set_deployment(r, "pneumonia-cnn", max_ongoing_requests=None),
        "max_ongoing_requests 5 is below user_config.max_batch_size 16",
    ),
    "app renamed": (
        lambda r: _app(r, "pneumonia-cnn").update(name="xray"),
        "application 'xray': the catalogue names this application 'pneumonia-cnn': rename it",
    ),
    "prefix changed": (
        lambda r: _app(r, "pneumonia-cnn").update(route_prefix="/v1/xr"),
        "application 'pneumonia-cnn': route_prefix '/v1/xr': the catalogue's is '/v1/xray'",
    ),
    "two apps for one model": (_duplicate, "applications 'sepsis-lstm', 'sepsis-lstm2' all serve 'sepsis-lstm'"),
    "model on the ingress": (
        lambda r: _set_args(r, "medlens", model="cnn"),
        "application 'medlens': args.model is set on the ingress application",
    ),
    "model and generator": (
        lambda r: _set_args(r, "synthetic-gan", model="cnn"),
        "application 'synthetic-gan': both args.model and args.generator are set",
    ),
    "model app without a model": (
        lambda r: _app(r, "pneumonia-cnn").update(args={"torch_threads": 1}),
        "application 'pneumonia-cnn': build_model_app needs args.model",
    ),
    "a model left out": (
        lambda r: r["applications"].remove(_app(r, "mortality-lstm")),
        "the 'medlens' application's /healthz waits for every catalogue model: add the application "
        "'mortality-lstm' \\(route_prefix /v1/mortality/lstm",
    ),
    "sepsis cases to the CNN": (
        lambda r: _set_args(r, "medlens", cases={"sepsis_model": "cnn"}),
        "application 'medlens': args.cases.sepsis_model: 'cnn' is a pneumonia model, not a sepsis model",
    ),
    "mortality cases to the LSTM": (
        lambda r: _set_args(r, "medlens", cases={"mortality_model": "lstm"}),
        "application 'medlens': args.cases.mortality_model: 'lstm' is a sepsis model",
    ),
    "upload above the gRPC limit": (
        lambda r: _set_args(r, "medlens", max_upload_mb=500),
        "application 'medlens': args.max_upload_mb: max_upload_mb 500 is above 63 MiB",
    ),
    "host on every interface without required auth": (
        lambda r: r["http_options"].update(host="0.0.0.0"),
        "applications 'medlens', 'pneumonia-cnn', .*'synthetic-gan': args.auth is 'when_set' but http_options.host "
        "'0.0.0.0' is reachable from other machines: set args.auth: required",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_config_serving_cannot_run_is_refused_naming_the_application_and_key(case: str) -> None:
    raw = yaml.safe_load((REPO_ROOT / "ray_config.yaml").read_text())
    mutate, message = BROKEN[case]
    mutate(raw)
    with pytest.raises(SystemExit, match=message):
        bind_targets(validate(ServeDeploySchema.model_validate(raw), environ={}))


def test_every_problem_is_listed_once() -> None:
    raw = yaml.safe_load((REPO_ROOT / "ray_config.yaml").read_text())
    _set_deployment(raw, "pneumonia-cnn", user_config=None)
    _app(raw, "sepsis-lstm").update(route_prefix="/v1/lstm")
    with pytest.raises(SystemExit) as info:
        validate(ServeDeploySchema.model_validate(raw), {"MEDLENS_API_TOKEN": ""})
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines
    # the empty token once, naming all seven applications that read it
    token = [line for line in lines if "MEDLENS_API_TOKEN is set but empty" in line]
    assert token == [
        "  - applications 'medlens', 'pneumonia-cnn', 'sepsis-lstm', 'sepsis-transformer', 'mortality-lstm', "
        "'mortality-transformer', 'synthetic-gan': args.auth_token_env: MEDLENS_API_TOKEN is set but empty: set it "
        "to the API token, or unset it to serve without one"
    ]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MEDLENS_DB_URL": "not a url"}, "application 'medlens': args.cases.db_url_env: MEDLENS_DB_URL is not a"),
        ({"MEDLENS_DB_URL": "postgresql+psycopg2://u:p@db/m"}, "driver 'postgresql\\+psycopg2', which is not"),
        ({"MEDLENS_DB_URL": "mysql://u:p@db/m"}, "MEDLENS_DB_URL names a 'mysql' database"),
        ({"MEDLENS_API_TOKEN": " "}, "args.auth_token_env: MEDLENS_API_TOKEN is set but empty"),
    ],
)
def test_the_environment_is_checked_before_anything_starts(environ: dict[str, str], message: str) -> None:
    config = _load(REPO_ROOT / "ray_config.yaml")
    with pytest.raises(SystemExit, match=message) as info:
        validate(config, environ)
    if "DB_URL" in message:
        assert "postgresql+psycopg://user:password@host:5432/medlens" in str(info.value)
    validate(config, {"MEDLENS_DB_URL": "postgresql+psycopg://u:p@db/m", "MEDLENS_API_TOKEN": "t"})


@pytest.mark.parametrize("profile", list(kuberay.PROFILES))
def test_the_kuberay_serve_config_requires_the_token(profile: str) -> None:
    """The manifests' Serve config binds every interface and requires the token: valid with the Secret's
    variables, refused without the token."""
    config = ServeDeploySchema.model_validate(kuberay.serve_config(kuberay.PROFILES[profile][0]))
    secret = {"MEDLENS_DB_URL": "postgresql+psycopg://u:p@db:5432/medlens", "MEDLENS_API_TOKEN": "s3cret"}
    assert [plan.args.auth for plan in validate(config, secret)] == ["required"] * len(config.applications)
    with pytest.raises(SystemExit, match=r"args\.auth is `required` but MEDLENS_API_TOKEN is not set"):
        validate(config, {"MEDLENS_DB_URL": secret["MEDLENS_DB_URL"]})


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "medlens.example.org"))


def test_a_bad_file_starts_no_ray_and_says_what_to_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m serving.launch --start-head`: the file is checked before `ray start` runs (here a `ray start`
    that would fail at once on its unknown flag, so that even a launcher that started it first leaves no Ray)."""
    raw = yaml.safe_load((REPO_ROOT / "ray_config.yaml").read_text())
    _set_deployment(raw, "pneumonia-cnn", user_config={"max_batch_size": 0, "batch_wait_timeout_s": 0.01})
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    ray_log = tmp_path / "ray.log"
    argv = [str(config), "--start-head", "6399", "--ray-log", str(ray_log), "--ray-start-arg=--no-such-flag"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{config}: not started; change the following:" in err
    assert "application 'pneumonia-cnn', deployment 'pneumonia-cnn': user_config.max_batch_size" in err
    assert "Traceback" not in err
    assert not ray_log.exists(), "`ray start` ran before the file was checked"


def test_serves_own_schema_errors_name_the_application(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = yaml.safe_load((REPO_ROOT / "ray_config.yaml").read_text())
    _set_deployment(raw, "sepsis-lstm", max_queued_requests=0)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main([str(config)]) == 1
    err = capsys.readouterr().err
    assert "application 'sepsis-lstm': deployments[sepsis-lstm]: max_queued_requests must be -1" in err
    assert "Traceback" not in err
    assert main([str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read it" in capsys.readouterr().err


# -- GPUs ---------------------------------------------------------------------------------------------------
def test_replicas_at_start() -> None:
    assert starting_replicas({"num_replicas": 3}) == 3
    assert starting_replicas({"autoscaling_config": {"min_replicas": 1, "max_replicas": 2}}) == 1
    assert starting_replicas({"autoscaling_config": {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1}}) == 0
    assert starting_replicas({"autoscaling_config": {"min_replicas": 1, "initial_replicas": 2, "max_replicas": 3}}) == 2
    assert starting_replicas({"autoscaling_config": {"max_replicas": 3}}) == 1  # Ray's min_replicas default
    assert starting_replicas({}) == 1


def test_the_gpu_profile_on_a_machine_without_a_gpu_is_refused() -> None:
    gpu = _load(REPO_ROOT / "ray_config.gpu.yaml")
    message = gpu_shortfall(gpu, {"CPU": 16.0, "memory": 1e10})
    assert message is not None
    assert "ask for 0.5 GPU at start (pneumonia-cnn 1 x 0.25, sepsis-lstm 1 x 0.125, sepsis-transformer 1 x 0.125)" in (
        message
    )
    assert "this Ray cluster has 0" in message and "ray_config.yaml" in message
    assert gpu_shortfall(gpu, {"CPU": 16.0, "GPU": 1.0}) is None
    assert gpu_shortfall(gpu, {"GPU": 0.25}) is not None
    assert gpu_shortfall(_load(REPO_ROOT / "ray_config.yaml"), {"CPU": 2.0}) is None


#: Away from `make run` (Ray 6390, Serve 8000), the test server (18000) and the slow tests' clusters.
HEAD_PORTS = Ports(
    gcs=6394,
    dashboard=28465,
    client=26394,
    serve_http=28200,
    first_agent=26600,
    worker_ports=(22000, 22999),
    ingress=35000,
)


def _head_args(ports: Ports) -> list[str]:
    """The launcher's `ray start` on the test's own ports (its dashboard port too, though it serves no UI)."""
    args = [*node_port_args(ports, 0), f"--dashboard-port={ports.dashboard}"]
    return [f"--ray-start-arg={arg}" for arg in args]


def _launch(config: Path, extra: list[str], tmp: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR", "MEDLENS_API_TOKEN")}
    env.update(fast_path_env())
    env.update(serve_ports_env(HEAD_PORTS))
    env.update({"RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0"})
    # a case database of its own: never the developer's .run/medlens.db (a running `make run`'s) nor a
    # MEDLENS_DB_URL the shell exports
    env["MEDLENS_DB_URL"] = f"sqlite:///{tmp / 'cases.db'}"
    return subprocess.Popen(
        [sys.executable, "-m", "serving.launch", str(config), "--start-head", str(HEAD_PORTS.gcs), *extra],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the Ray it starts joins this session: killing the session stops all of it
    )


def test_the_head_command_is_make_runs_lean_single_machine_ray() -> None:
    command = ray_start_command(6390, ["--min-worker-port=1"], num_cpus=2)
    assert command[0] == str(Path(sys.executable).with_name("ray")) and command[1:4] == ["start", "--head", "--port"]
    for flag in ("--include-dashboard=false", "--no-monitor", "--disable-usage-stats"):
        assert flag in command
    assert command[command.index("--include-log-monitor") + 1] == "false"
    assert command[command.index("--num-cpus") + 1] == "2" and command[-1] == "--min-worker-port=1"


def test_start_head_starts_its_own_ray_and_serves_the_default_file_until_healthy(tmp_path: Path) -> None:
    busy = [p for p in HEAD_PORTS.all() if _port_busy(p)]
    if busy:
        pytest.fail(f"ports {busy} are in use (a stale test Ray?): stop what holds them")
    raw = yaml.safe_load((REPO_ROOT / "ray_config.yaml").read_text())
    raw["http_options"]["port"] = HEAD_PORTS.serve_http
    config = tmp_path / "ray_config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    ray_log = tmp_path / "ray.log"
    # Short: Ray's unix-socket paths under RAY_TMPDIR must stay below 108 characters.
    ray_tmp = Path(tempfile.mkdtemp(prefix="mll-", dir="/tmp"))
    proc = _launch(config, ["--ray-log", str(ray_log), *_head_args(HEAD_PORTS)], ray_tmp)
    try:
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
        assert b"submitted 7 applications" in out
        assert "Ray runtime started" in ray_log.read_text()
        deadline = time.monotonic() + 240
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{HEAD_PORTS.serve_http}/healthz", timeout=10.0).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, f"not healthy after 240 s; the Serve logs are under {ray_tmp}"
        models = httpx.get(f"http://127.0.0.1:{HEAD_PORTS.serve_http}/v1/models", timeout=30.0).json()["models"]
        assert {m["name"] for m in models} >= {"cnn", "lstm", "transformer", "mortality-lstm"}
    finally:
        kill_session(proc.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not [p for p in (HEAD_PORTS.gcs, HEAD_PORTS.serve_http) if _port_busy(p)], "the test's Ray outlived it"


def test_start_head_says_so_when_ray_does_not_start(tmp_path: Path) -> None:
    ray_log = tmp_path / "ray.log"
    ray_tmp = Path(tempfile.mkdtemp(prefix="mll-", dir="/tmp"))
    proc = _launch(
        REPO_ROOT / "ray_config.yaml", ["--ray-log", str(ray_log), "--ray-start-arg=--no-such-flag"], ray_tmp
    )
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        kill_session(proc.pid)
    assert proc.returncode != 0
    assert f"`ray start` failed (exit status 2); its output is in {ray_log}" in out.decode()
    assert "no-such-flag" in ray_log.read_text()
