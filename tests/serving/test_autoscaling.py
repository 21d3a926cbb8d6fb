"""Ray Serve autoscaling of pneumonia-cnn under a bounded burst, read through GET /v1/service.

The test profile (tests/serving/ray_config.test.yaml) lets pneumonia-cnn scale 1 -> 2 replicas with
1 s upscale / 4 s downscale delays and metrics every second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from serving.client import MedLensClient, ServingError

pytestmark = [pytest.mark.serve, pytest.mark.timeout(420)]  # includes the server start (<= 180 s)

DEPLOYMENT = "pneumonia-cnn"
CLIENTS = 12
MIN_BURST_S = 10.0
MAX_BURST_S = 75.0
SETTLE_S = 90.0


def _replicas(client: MedLensClient) -> int:
    return _counts(client)[0]


def _counts(client: MedLensClient) -> tuple[int, int]:
    """(running, starting) replicas of the deployment under test."""
    status = client.service()
    dep = next(d for d in status.deployments if d.name == DEPLOYMENT)
    return dep.replicas, dep.starting


def _wait_for(client: MedLensClient, replicas: int, timeout_s: float) -> tuple[bool, list[int]]:
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen.append(_replicas(client))
        if seen[-1] == replicas:
            return True, seen
        time.sleep(1.0)
    return False, seen


def test_burst_scales_up_and_back_down(
    serving_url: str, synthetic_xray_path: Path, record_property: Callable[[str, object], None]
) -> None:
    monitor = MedLensClient(serving_url, timeout=60.0)
    settled, _ = _wait_for(monitor, 1, SETTLE_S)
    assert settled, f"{DEPLOYMENT} did not start from 1 replica"

    data = synthetic_xray_path.read_bytes()
    stop = threading.Event()
    outcomes: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        with MedLensClient(serving_url, timeout=120.0) as client:
            while not stop.is_set():
                try:
                    client.predict_xray(data, "x.jpeg")
                    status = 200
                except ServingError as exc:
                    status = exc.status
                with lock:
                    outcomes.append(status)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(CLIENTS)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    timeline: list[tuple[float, int, int]] = []  # (s, running, starting)
    try:
        while time.monotonic() - start < MAX_BURST_S:
            timeline.append((round(time.monotonic() - start, 1), *_counts(monitor)))
            if max(n for _, n, _ in timeline) >= 2 and time.monotonic() - start >= MIN_BURST_S:
                break
            time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=150)
    burst_s = time.monotonic() - start
    peak = max(n for _, n, _ in timeline)

    came_back, after = _wait_for(monitor, 1, SETTLE_S)
    history = [s.replicas.get(DEPLOYMENT, 0) for s in monitor.service().history]
    record_property("replica_timeline", timeline)
    record_property("replicas_after_burst", after)
    print(
        f"\n{DEPLOYMENT}: {len(outcomes)} requests from {CLIENTS} clients in {burst_s:.0f} s; "
        f"replicas during burst (s, running, starting): {timeline}; after: {after}; history: {history}"
    )
    assert outcomes, "no request finished during the burst"
    failed = [s for s in outcomes if s != 200]
    assert not failed, f"{len(failed)} of {len(outcomes)} burst requests failed: {sorted(set(failed))}"
    assert peak >= 2, f"{DEPLOYMENT} never scaled above 1 replica: {timeline}"
    # A replica takes seconds to start (process, imports, checkpoint, warm-up) and the test samples every
    # second: the added replica is seen starting before it serves, and never beyond max_replicas.
    assert any(starting >= 1 for _, _, starting in timeline), f"no replica seen starting: {timeline}"
    assert all(1 <= running + starting <= 2 for _, running, starting in timeline), timeline
    assert came_back, f"{DEPLOYMENT} did not return to 1 replica within {SETTLE_S:.0f} s: {after}"
    assert max(history) >= 2, "the /v1/service history should show the scale-up"
