"""serving/launch.py (what `make run` deploys with): every application of each Serve config file, built in one
process, carries exactly the options the file sets (no Ray cluster needed); and ``--start-head``, as ``make run``
runs it, starts its own Ray and serves ray_config.yaml until healthy (a real Ray, on ports of its own)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from models.config import REPO_ROOT
from serving._settings import ServingArgs, fast_path_env
from serving.launch import build_targets, deployment_options, ray_start_command
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
    targets = build_targets(config)
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
        build_targets(ServeDeploySchema.model_validate(raw))


def test_an_import_path_that_is_not_a_medlens_builder_is_refused() -> None:
    raw = yaml.safe_load((REPO_ROOT / "ray_config.yaml").read_text())
    raw["applications"][0]["import_path"] = "somewhere.else:app"
    with pytest.raises(SystemExit, match="not a MedLens builder"):
        build_targets(ServeDeploySchema.model_validate(raw))


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
