"""A model replica killed (SIGKILL) under load loses no request: predictions are idempotent, and the
client retries a dropped connection or the front door's 502 / 503 ``unavailable`` until a replica answers
(``MedLensClient.retry_s``). Measured: requests, failures, and the time from the kill until predictions
flow again; written to test-artifacts/faults.json (docs/reliability.md quotes it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from models.config import REPO_ROOT
from serving.client import MedLensClient, ServingError

pytestmark = [pytest.mark.serve, pytest.mark.timeout(300)]

CLIENTS = 8
DURATION_S = 30.0
KILL_AT_S = 6.0
RESULTS = REPO_ROOT / "test-artifacts" / "faults.json"


def _replica_pids(deployment: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"ServeReplica:{deployment}:"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_killing_the_cnn_replica_under_load_loses_no_request(serving_url: str, xray_normal_path: Path) -> None:
    image = xray_normal_path.read_bytes()
    done: list[float] = []  # finish times of successful predictions
    failures: list[str] = []
    stop = time.monotonic() + DURATION_S
    lock = threading.Lock()

    def client_loop() -> None:
        with MedLensClient(serving_url, timeout=60.0, retry_s=45.0) as client:
            while time.monotonic() < stop:
                try:
                    client.predict_xray(image, "n.jpeg")
                    with lock:
                        done.append(time.monotonic())
                except ServingError as exc:
                    with lock:
                        failures.append(f"{exc.status} {exc.error}")

    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(KILL_AT_S)
    victims = _replica_pids("pneumonia-cnn")
    assert victims, "no CNN replica process found"
    killed_at = time.monotonic()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join(timeout=DURATION_S + 120)
    after = sorted(t for t in done if t > killed_at)
    gap = (after[0] - killed_at) if after else float("inf")
    result = {
        "clients": CLIENTS,
        "seconds": round(time.monotonic() - start, 1),
        "replicas_killed": len(victims),
        "requests_ok": len(done),
        "requests_failed": len(failures),
        "failures": failures[:10],
        "first_success_after_kill_s": round(gap, 2),
        "ok_after_kill": len(after),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    assert not failures, result
    assert after, f"no prediction succeeded after the kill: {result}"
    assert set(_replica_pids("pneumonia-cnn")).isdisjoint(victims)  # Serve started new ones
