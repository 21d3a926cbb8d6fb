"""A real Ray cluster on this machine for the slow tests (tests/slow/test_soak.py, test_multinode.py).

Each node is ``ray start --block`` in its own process session (``setsid``), on ports away from
``make run`` (Ray 6390, Serve 8000) and the test server (18000): killing that session kills the node, every
Ray process of it and the replicas it hosts, and nothing else. Ray's files go to a private ``RAY_TMPDIR``.
Serving gets the environment of ``serving/fast_path.env`` (HAProxy in front), as ``make run`` gives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from models.config import REPO_ROOT
from serving._settings import fast_path_env
from tests.conftest import _port_busy, _session_pids, kill_session

BIN = Path(sys.executable).parent
#: Environment a developer's shell may carry that must not reach the cluster.
_SCRUBBED_ENV = ("MEDLENS_API_TOKEN", "RAY_ADDRESS", "RAY_TMPDIR")


@dataclass(frozen=True)
class Ports:
    """Every port the cluster opens on purpose (Ray picks the rest, from ranges given here)."""

    gcs: int
    dashboard: int
    client: int
    serve_http: int
    first_agent: int  # each node: dashboard agent listen / grpc, runtime-env agent, metrics (4 ports a node)
    worker_ports: tuple[int, int]  # Ray workers' ports, split between the nodes
    ingress: int  # replicas' own HTTP servers: ingress..ingress+999, their gRPC: ingress+10000..+10999

    def all(self) -> list[int]:
        base = self.serve_http
        return [
            self.gcs,
            self.dashboard,
            self.client,
            base,
            base + 404,
            base + 405,
            base + 406,
            base + 407,
            *range(self.first_agent, self.first_agent + 8),
        ]


def serve_ports_env(ports: Ports) -> dict[str, str]:
    """HAProxy's stats / metrics and Serve's fallback proxy beside the HTTP port; the replicas' own servers."""
    base = ports.serve_http
    return {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(base + 404),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(base + 405),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(base + 406),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(base + 407),
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(ports.ingress),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(ports.ingress + 999),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(ports.ingress + 10000),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(ports.ingress + 10999),
    }


def node_port_args(ports: Ports, index: int) -> list[str]:
    """``ray start`` arguments that keep node ``index`` on 127.0.0.1 and on ``ports``: its four agent ports, and
    its half of the worker ports (the head the lower half)."""
    agent = ports.first_agent + 4 * index
    lo, hi = ports.worker_ports
    half = (hi - lo) // 2
    wlo, whi = (lo, lo + half - 1) if index == 0 else (lo + half, hi)
    return [
        "--node-ip-address=127.0.0.1",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent + 1}",
        f"--runtime-env-agent-port={agent + 2}",
        f"--metrics-export-port={agent + 3}",
        f"--min-worker-port={wlo}",
        f"--max-worker-port={whi}",
    ]


def auth_headers() -> dict[str, str]:
    """Ray 2.60's dashboard / Serve REST API wants the cluster's token (``~/.ray/auth_token``)."""
    token_file = Path.home() / ".ray" / "auth_token"
    return {"Authorization": f"Bearer {token_file.read_text().strip()}"} if token_file.is_file() else {}


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def sid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        return _session_pids(self.sid)


class LocalRayCluster:
    """Head (and optional workers) started with ``ray start``; ``shutdown()`` kills every node's session."""

    def __init__(self, ports: Ports, log_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        busy = [p for p in ports.all() if _port_busy(p)]
        if busy:
            raise RuntimeError(f"ports already in use: {busy} (a stale cluster?): stop it first")
        self.ports = ports
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        # Short: Ray's unix-socket paths under it must stay below 108 characters.
        self.tmp = Path(tempfile.mkdtemp(prefix="mlc-", dir="/tmp"))
        self.nodes: list[Node] = []
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env.update(fast_path_env())
        env.update(serve_ports_env(ports))
        env.update(
            {
                "RAY_TMPDIR": str(self.tmp),
                "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_AUTH_MODE": "token",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            }
        )
        env.update(extra_env or {})
        self.env = env

    # -- nodes -------------------------------------------------------------------------------------------------
    def _start(self, name: str, args: list[str]) -> Node:
        log = self.log_dir / f"ray-{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *args],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        node = Node(name, proc, log)
        self.nodes.append(node)
        return node

    def _node_args(self, index: int, num_cpus: float, resources: dict[str, float] | None) -> list[str]:
        args = [*node_port_args(self.ports, index), f"--num-cpus={num_cpus:g}", "--num-gpus=0"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        return args

    def start_head(
        self, num_cpus: float, resources: dict[str, float] | None = None, dashboard: bool = True, lean: bool = False
    ) -> Node:
        """``lean``: without what one machine does not use, as ``make run`` starts it (no monitor, log monitor)."""
        args = [
            "--head",
            f"--port={self.ports.gcs}",
            f"--ray-client-server-port={self.ports.client}",
            *self._node_args(0, num_cpus, resources),
        ]
        if dashboard:
            args += [
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.ports.dashboard}",
            ]
        else:
            args.append("--include-dashboard=false")
        if lean:
            args += ["--no-monitor", "--include-log-monitor=false"]
        node = self._start("head", args)
        self._wait(lambda: _port_busy(self.ports.gcs) and (not dashboard or _port_busy(self.ports.dashboard)), node)
        return node

    def add_worker(self, num_cpus: float, resources: dict[str, float] | None = None) -> Node:
        index = len(self.nodes)
        node = self._start(
            f"worker{index}", [f"--address=127.0.0.1:{self.ports.gcs}", *self._node_args(index, num_cpus, resources)]
        )
        self._wait(lambda: self.alive_nodes() >= index + 1, node)
        return node

    def _wait(self, ready: Any, node: Node, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise RuntimeError(f"`ray start` ({node.name}) exited {node.proc.returncode}:\n{node.log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if ready():
                    return
            time.sleep(1.0)
        raise RuntimeError(f"{node.name} not ready after {timeout_s:.0f} s:\n{node.log.read_text()[-3000:]}")

    def alive_nodes(self) -> int:
        """Nodes the GCS holds ALIVE (Ray's state API on the head's dashboard)."""
        r = httpx.get(f"{self.dashboard_url}/api/v0/nodes?limit=100", headers=auth_headers(), timeout=10.0)
        r.raise_for_status()
        return sum(1 for n in r.json()["data"]["result"]["result"] if n.get("state") == "ALIVE")

    def kill_node(self, node: Node) -> int:
        """SIGKILL every process of ``node`` at once; returns how many there were."""
        pids = node.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        node.proc.wait(timeout=30)
        return len(pids)

    def node_of(self, pid: int) -> str | None:
        """The name of the node whose session holds ``pid``."""
        for node in self.nodes:
            if pid in node.pids():
                return node.name
        return None

    # -- Serve -------------------------------------------------------------------------------------------------
    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.dashboard}"

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.serve_http}"

    def write_config(self, config: dict[str, Any], name: str) -> Path:
        path = self.log_dir / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def serve_deploy(self, config: dict[str, Any]) -> None:
        """``serve deploy`` to the head's dashboard (what docs/deploy.md does for a running cluster)."""
        path = self.write_config(config, "serve-deploy.yaml")
        subprocess.run(
            [str(BIN / "serve"), "deploy", str(path), "--address", self.dashboard_url],
            cwd=REPO_ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def serve_run(self, config: dict[str, Any]) -> None:
        """``python -m serving.launch CONFIG --address`` (what ``make run`` does: ``serve run --non-blocking``
        with the applications built in that process)."""
        path = self.write_config(config, "serve-run.yaml")
        with (self.log_dir / "serve-run.log").open("wb") as out:
            subprocess.run(
                [sys.executable, "-m", "serving.launch", str(path), "--address", f"127.0.0.1:{self.ports.gcs}"],
                cwd=REPO_ROOT,
                env=self.env,
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
            )

    def serve_details(self) -> dict[str, Any]:
        r = httpx.get(f"{self.dashboard_url}/api/serve/applications/", headers=auth_headers(), timeout=10.0)
        r.raise_for_status()
        return dict(r.json())

    def replicas(self) -> dict[str, list[dict[str, Any]]]:
        """deployment name -> its replicas (state, pid, node)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for app in self.serve_details().get("applications", {}).values():
            for name, dep in app.get("deployments", {}).items():
                out[name] = [
                    {"state": r["state"], "pid": r.get("pid"), "node": self.node_of(r["pid"]) if r.get("pid") else None}
                    for r in dep.get("replicas", [])
                ]
        return out

    def all_healthy(self) -> bool:
        """Every application RUNNING and every deployment HEALTHY (the Serve REST API's view)."""
        apps = self.serve_details().get("applications", {})
        return bool(apps) and all(
            a["status"] == "RUNNING" and all(d["status"] == "HEALTHY" for d in a["deployments"].values())
            for a in apps.values()
        )

    def wait_healthy_http(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.serve_url}/healthz", timeout=10.0).status_code == 200:
                    return
            if self.nodes and self.nodes[0].proc.poll() is not None:
                raise RuntimeError(f"the head exited:\n{self.nodes[0].log.read_text()[-3000:]}")
            time.sleep(2.0)
        raise RuntimeError(f"serving not healthy on {self.serve_url} after {timeout_s:.0f} s")

    # -- the end -----------------------------------------------------------------------------------------------
    def shutdown(self) -> list[int]:
        """Kill every node's session (TERM, then KILL); returns the pids that survived (should be none)."""
        for node in reversed(self.nodes):
            kill_session(node.sid, grace_s=15.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=5)
        left = [pid for node in self.nodes for pid in node.pids()]
        # Ray keeps logs here: copy the Serve ones next to the test's log before the temp dir goes
        with contextlib.suppress(OSError):
            serve_logs = self.tmp / "ray" / "session_latest" / "logs" / "serve"
            if serve_logs.is_dir():
                shutil.copytree(serve_logs, self.log_dir / "serve-logs", dirs_exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return left


def derived_config(
    source: Path, port: int, overrides: dict[str, dict[str, Any]] | None = None, gpu_standin: str | None = None
) -> dict[str, Any]:
    """``source``'s Serve config on ``port``; ``overrides``: deployment name -> options merged into it;
    ``gpu_standin``: each replica's ``num_gpus`` asked for as that custom resource instead (no GPU here)."""
    config = yaml.safe_load(source.read_text())
    config["http_options"]["port"] = port
    for app in config["applications"]:
        for dep in app["deployments"]:
            for key, value in (overrides or {}).get(dep["name"], {}).items():
                if isinstance(value, dict) and isinstance(dep.get(key), dict):
                    dep[key] = {**dep[key], **value}
                else:
                    dep[key] = value
            actor = dep.setdefault("ray_actor_options", {})
            if gpu_standin and actor.get("num_gpus"):
                actor.setdefault("resources", {})[gpu_standin] = actor.pop("num_gpus")
    return config
