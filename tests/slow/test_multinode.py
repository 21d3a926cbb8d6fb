"""Scale-out on a real Ray cluster (issue 23, item 5): a head and a worker started with ``ray start`` on this
machine as two nodes, each with its own CPUs and custom resources; ``serve deploy`` of a config derived from
ray_config.yaml (or ray_config.gpu.yaml) through the head's dashboard, as docs/deploy.md does for a cluster.

Each model deployment runs 2 replicas (``min_replicas: 2``), and Serve's spread placement puts one on each
node. Under a bounded Locust load (tests/serving/faults_locustfile.py: closed-loop users that send X-ray and
both sepsis models' predictions through ``MedLensClient``, its retries on as by default) every process of
the worker node is killed (SIGKILL). Checks: the replicas were on
both nodes; the service is healthy again (every deployment HEALTHY with its 2 replicas running on the head,
``/healthz`` 200) within 180 s; no request failed. Measured: requests, failures, time to healthy, the longest
stretch without a finished prediction; written to test-artifacts/multinode.json (docs/reliability.md).

GPU profile: ray_config.gpu.yaml's shapes, with each replica's ``num_gpus`` asked for as the custom resource
``gpu_standin`` (one per node) instead: there is no GPU here, and the fractions (0.25 / 0.125) are scheduled
as a GPU's would be. The head has enough CPUs to take every replica once the worker is gone.

    .venv/bin/python -m pytest -m slow tests/slow/test_multinode.py -s      (or: make test-slow)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from models.catalogue import CATALOGUE
from models.config import REPO_ROOT
from tests.locust_load import LocustLoad
from tests.raycluster import LocalRayCluster, Ports, derived_config

pytestmark = [pytest.mark.slow, pytest.mark.serve, pytest.mark.timeout(1200)]

PORTS = Ports(
    gcs=6391,
    dashboard=28265,
    client=26391,
    serve_http=28000,
    first_agent=26400,
    worker_ports=(24000, 24999),
    ingress=34000,
)
RESULTS = REPO_ROOT / "test-artifacts" / "multinode.json"
CLIENTS = 6  # 4 X-ray, 1 LSTM, 1 Transformer
KILL_AT_S = 15.0
HEALTHY_WITHIN_S = 180.0
AFTER_HEALTHY_S = 10.0  # load goes on this long after the service is healthy again
REPLICAS = 2


def _scales_to_zero(path: Path) -> set[str]:
    """Deployments of a Serve config that scale to zero (``min_replicas: 0``): not started here, not waited for."""
    config = yaml.safe_load(path.read_text())
    return {
        d["name"]
        for app in config["applications"]
        for d in app["deployments"]
        if (d.get("autoscaling_config") or {}).get("min_replicas") == 0
    }


#: The same in both profiles (tests/serving/test_config.py): the mortality models and the generator.
ON_DEMAND = _scales_to_zero(REPO_ROOT / "ray_config.yaml")
MODEL_DEPLOYMENTS = [m.serving_name for m in CATALOGUE.values() if m.serving_name not in ON_DEMAND]

#: profile -> (Serve config, head / worker logical CPUs and custom resources, how GPUs are asked for)
PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {
        "config": REPO_ROOT / "ray_config.yaml",
        # 2 model replicas each: 0.1 + 2 x (0.4 + 0.25 + 0.25) = 1.9 CPUs, all of which the head can hold alone
        "head": {"num_cpus": 2, "resources": {"medlens_head": 1}},
        "worker": {"num_cpus": 2, "resources": {"medlens_worker": 1}},
        "gpu_standin": None,
    },
    "gpu": {
        "config": REPO_ROOT / "ray_config.gpu.yaml",
        # 0.5 + 2 x (1 + 0.5 + 0.5) = 4.5 CPUs and 2 x (0.25 + 0.125 + 0.125) = 1.0 "GPU"
        "head": {"num_cpus": 5, "resources": {"medlens_head": 1, "gpu_standin": 1}},
        "worker": {"num_cpus": 3, "resources": {"medlens_worker": 1, "gpu_standin": 1}},
        "gpu_standin": "gpu_standin",
    },
}


def _overrides() -> dict[str, dict[str, Any]]:
    return {
        name: {"autoscaling_config": {"min_replicas": REPLICAS, "max_replicas": REPLICAS}} for name in MODEL_DEPLOYMENTS
    }


def _healthy_on(cluster: LocalRayCluster, node: str) -> bool:
    """Every deployment HEALTHY, each model deployment with REPLICAS running replicas on ``node``, /healthz 200."""
    try:
        if not cluster.all_healthy():
            return False
        replicas = cluster.replicas()
    except httpx.HTTPError:
        return False
    for name, reps in replicas.items():
        want = REPLICAS if name in MODEL_DEPLOYMENTS else 0 if name in ON_DEMAND else 1
        if sum(1 for r in reps if r["state"] == "RUNNING" and r["node"] == node) < want:
            return False
    try:
        return httpx.get(f"{cluster.serve_url}/healthz", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def _placement(cluster: LocalRayCluster) -> dict[str, list[str]]:
    return {
        name: sorted(str(r["node"]) for r in reps if r["state"] == "RUNNING")
        for name, reps in cluster.replicas().items()
    }


@pytest.mark.parametrize("profile", list(PROFILES))
def test_a_killed_worker_node_under_load(
    tmp_path: Path, synthetic_xray_path: Path, psv_path: Path, profile: str
) -> None:
    spec = PROFILES[profile]
    cluster = LocalRayCluster(PORTS, tmp_path / "cluster", {"MEDLENS_DB_URL": f"sqlite:///{tmp_path / 'cases.db'}"})
    result: dict[str, Any] = {"profile": profile, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    try:
        cluster.start_head(**spec["head"])
        worker = cluster.add_worker(**spec["worker"])
        assert cluster.alive_nodes() == 2
        config = derived_config(spec["config"], PORTS.serve_http, _overrides(), gpu_standin=spec["gpu_standin"])
        t0 = time.monotonic()
        cluster.serve_deploy(config)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                placement = _placement(cluster)
                if cluster.all_healthy() and all(len(placement.get(n, [])) == REPLICAS for n in MODEL_DEPLOYMENTS):
                    break
            time.sleep(2.0)
        cluster.wait_healthy_http(timeout_s=60)
        result["deploy_to_healthy_s"] = round(time.monotonic() - t0, 1)
        placement = _placement(cluster)
        result["placement_before"] = placement
        for name in MODEL_DEPLOYMENTS:
            assert placement[name] == ["head", worker.name], f"{name} not spread over both nodes: {placement}"

        users = {"xray": CLIENTS - 2, "lstm": 1, "transformer": 1}
        with LocustLoad(cluster.serve_url, users, tmp_path, image=synthetic_xray_path, record=psv_path) as load:
            start = time.time()
            time.sleep(KILL_AT_S)
            killed_at = time.time()
            result["worker_processes_killed"] = cluster.kill_node(worker)
            healthy_at = None
            while time.time() - killed_at < HEALTHY_WITHIN_S + 60:
                if _healthy_on(cluster, "head"):
                    healthy_at = time.time()
                    break
                time.sleep(1.0)
            if healthy_at is not None:
                time.sleep(AFTER_HEALTHY_S)
        finished = load.finished()
        done = [(f.at, f.kind) for f in finished if f.ok]
        failures = [f"{f.kind}: {f.error}" for f in finished if not f.ok]
        kinds = [kind for kind, n in users.items() for _ in range(n)]
        after = sorted(t for t, kind in done if t > killed_at and kind == "xray")
        stamps = [killed_at, *after]
        result.update(
            {
                "clients": kinds,
                "seconds_under_load": round(time.time() - start, 1),
                "requests_ok": len(done),
                "requests_ok_by_model": {
                    k: sum(1 for _, kk in done if kk == k) for k in ("xray", "lstm", "transformer")
                },
                "requests_failed": len(failures),
                "failures": failures[:10],
                "seconds_to_healthy": None if healthy_at is None else round(healthy_at - killed_at, 1),
                "longest_gap_xray_after_kill_s": round(max(b - a for a, b in itertools.pairwise(stamps)), 2)
                if after
                else None,
                "placement_after": _placement(cluster),
                "alive_nodes_after": cluster.alive_nodes(),
            }
        )
    finally:
        survivors = cluster.shutdown()
        RESULTS.parent.mkdir(exist_ok=True)
        recorded = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        RESULTS.write_text(json.dumps({**recorded, profile: result}, indent=2) + "\n")
        print(json.dumps(result))
    assert not survivors, f"processes of the test cluster survived: {survivors}"
    assert result["seconds_to_healthy"] is not None, f"not healthy {HEALTHY_WITHIN_S:.0f} s after the kill: {result}"
    assert result["seconds_to_healthy"] <= HEALTHY_WITHIN_S, result
    assert result["alive_nodes_after"] == 1
    assert not failures, result
