"""Step-load run against the default ray_config.yaml: 1 -> 16 -> 64 users, then 0 for 150 s.

    .venv/bin/locust -f benchmarks/locust_step.py --headless --host http://127.0.0.1:8000 \
        --csv docs/load/step --html docs/load/step.html --logfile docs/load/step.log

Every 2 s it records users, replicas per deployment running and starting (GET /v1/service), requests/s and latency
percentiles, and at the end writes docs/load/step_timeline.csv and docs/load/autoscaling.html
(plotly, :func:`benchmarks.step_chart.step_load_figure`). ``python -m benchmarks.step_report
docs/load/step.log`` then times each deployment's scale-up from the Serve controller's log.
"""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from locust import LoadTestShape, events

from benchmarks.locustfile import HEADERS, DashboardReader, SepsisClinician, XrayReviewer
from benchmarks.step_chart import step_load_figure
from models.backends import this_machine

__all__ = ["DashboardReader", "SepsisClinician", "StepLoad", "XrayReviewer"]

OUT = Path("docs/load")
# (end second, users). The 0-user stage lasts 150 s so that the return to min_replicas is recorded:
# downscale_delay_s is 60 and look_back_period_s 10 in ray_config.yaml, plus replica shutdown.
STAGES = [(30, 1), (90, 16), (150, 64), (300, 0)]
_rows: list[dict[str, Any]] = []
_stop = threading.Event()


class StepLoad(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        for end, users in STAGES:
            if t < end:
                return users, 8.0
        return None


def _sample(environment: Any) -> None:
    start = time.time()
    total = environment.stats.total
    last = (start, total.num_requests, total.num_failures)
    with httpx.Client(base_url=environment.host, headers=HEADERS, timeout=5.0) as client:
        while not _stop.is_set():
            row: dict[str, Any] = {"t": round(time.time() - start, 1), "users": environment.runner.user_count}
            try:
                status = client.get("/v1/service").json()
                for dep in status["deployments"]:
                    row[f"replicas:{dep['name']}"] = dep["replicas"]
                    row[f"starting:{dep['name']}"] = dep.get("starting", 0)
            except (httpx.HTTPError, ValueError, KeyError):
                row["service_error"] = 1
            # Rates from the request counters between two samples: locust's current_rps freezes at its
            # last value once no request completes (the 0-user stage would show the old rate).
            now = time.time()
            dt = max(now - last[0], 1e-6)
            row["rps"] = round((total.num_requests - last[1]) / dt, 2)
            row["fail_per_s"] = round((total.num_failures - last[2]) / dt, 2)
            last = (now, total.num_requests, total.num_failures)
            row["p50_ms"] = total.get_current_response_time_percentile(0.5)
            row["p95_ms"] = total.get_current_response_time_percentile(0.95)
            _rows.append(row)
            _stop.wait(2.0)


@events.test_start.add_listener
def _on_start(environment: Any, **_: Any) -> None:
    print(f"machine: {this_machine().describe()}", flush=True)  # beside every load result, as every benchmark
    threading.Thread(target=_sample, args=(environment,), daemon=True).start()


@events.test_stop.add_listener
def _on_stop(environment: Any, **_: Any) -> None:
    _stop.set()
    time.sleep(0.2)
    write_timeline(_rows, OUT)


def write_timeline(rows: list[dict[str, Any]], out: Path) -> None:
    """``step_timeline.csv`` and ``autoscaling.html`` (the chart of the run)."""
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r})
    with (out / "step_timeline.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    machine = this_machine().describe()
    fig = step_load_figure(rows, subtitle=f"default ray_config.yaml; benchmarks/locust_step.py; {machine}")
    fig.write_html(out / "autoscaling.html", include_plotlyjs="cdn")
