"""A 10-minute soak (issue 23, item 4): serving started as ``make run`` starts it (its own single-node Ray,
``python -m serving.launch`` of ray_config.yaml, the fast-path environment; here on port 28100, not 8000),
driven by Locust with benchmarks/locustfile.py's realistic mix at a bounded number of users.

After a 3-minute warm-up under the mix (the replicas measure their execution paths, autoscaling settles, and
explanations of the longest records take the sepsis replicas' memory to its high-water mark), every process
of that Ray is sampled every 10 s from /proc: resident memory, open file descriptors, threads. Checks:
- resident memory of each process that lived through the soak grew by at most 10 % (warm-up end -> end);
- open file descriptors and threads of each process did not grow (the last minute's most against the
  first minute's most, with a small allowance for connections that come and go);
- the p99 latency of the last minute is within 1.5x (+50 ms) of the first minute's (explanations, seconds
  each and 5-10 a minute, are reported but not part of that p99);
- failed requests below 0.5 %.
Figures go to test-artifacts/soak.json before any check; docs/reliability.md quotes them.

    make test-slow                                      # the slow suite (this and tests/slow/test_multinode.py)
    .venv/bin/python -m pytest -m slow tests/slow/test_soak.py -s
    MEDLENS_SOAK_S=120 MEDLENS_SOAK_USERS=6 ...         # a shorter try-out (the checks still apply)
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from models.config import REPO_ROOT
from tests.raycluster import BIN, LocalRayCluster, Ports, derived_config

SOAK_S = float(os.environ.get("MEDLENS_SOAK_S", "600"))
#: Explanations of the longest records raise the sepsis replicas' memory to a high-water mark that the allocator
#: keeps (the activations of the 5-member ensemble under integrated gradients); under this mix it was reached
#: 2-3 minutes in (first full run, docs/reliability.md: +51 % / +24 % after a 90 s warm-up, <= 2.4 % from 3 min).
#: Priming with explanations before the load did not reach it (a short run: replicas that autoscaling added
#: during the load, and concurrent explanations, set higher marks), so the warm-up is 3 minutes of the mix.
WARMUP_S = float(os.environ.get("MEDLENS_SOAK_WARMUP_S", "180"))
USERS = int(os.environ.get("MEDLENS_SOAK_USERS", "8"))
SAMPLE_S = 10.0
RSS_GROWTH_MAX = 0.10
FD_SLACK, THREAD_SLACK = 8, 2
P99_FACTOR, P99_SLACK_MS = 1.5, 50.0
FAILED_MAX = 0.005
PORTS = Ports(
    gcs=6393,
    dashboard=28365,
    client=26393,
    serve_http=28100,
    first_agent=26500,
    worker_ports=(23000, 23999),
    ingress=33000,
)
RESULTS = REPO_ROOT / "test-artifacts" / "soak.json"

pytestmark = [pytest.mark.slow, pytest.mark.serve, pytest.mark.timeout(int(SOAK_S + WARMUP_S + 900))]


def _proc_sample(pid: int) -> dict[str, Any] | None:
    base = Path(f"/proc/{pid}")
    try:
        status = dict(line.split(":", 1) for line in (base / "status").read_text().splitlines() if ":" in line)
        if status["State"].strip().startswith("Z"):
            return None
        cmd = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        return {
            "name": cmd[:90],
            "rss_mb": int(status.get("VmRSS", "0 kB").split()[0]) / 1024,
            "threads": int(status["Threads"]),
            "fds": len(os.listdir(base / "fd")),
        }
    except (OSError, KeyError, ValueError):
        return None


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else float("nan")


def _read_requests(path: Path) -> list[tuple[float, str, float, bool]]:
    rows = []
    with path.open() as fh:
        for row in csv.reader(fh):
            with contextlib.suppress(ValueError, IndexError):
                rows.append((float(row[0]), row[1], float(row[2]), row[3] == "1"))
    return rows


def test_soak(tmp_path: Path, data_dir: Path) -> None:
    cluster = LocalRayCluster(PORTS, tmp_path / "cluster", {"MEDLENS_DB_URL": f"sqlite:///{tmp_path / 'soak.db'}"})
    samples: list[tuple[float, dict[int, dict[str, Any]]]] = []
    requests_file = tmp_path / "requests.csv"
    locust: subprocess.Popen[bytes] | None = None
    try:
        # as scripts/run.sh: --include-dashboard=false --no-monitor --include-log-monitor false --num-cpus $(nproc)
        head = cluster.start_head(num_cpus=os.cpu_count() or 2, dashboard=False, lean=True)
        cluster.serve_run(derived_config(REPO_ROOT / "ray_config.yaml", PORTS.serve_http))
        cluster.wait_healthy_http()
        env = {**cluster.env, "MEDLENS_SOAK_REQUESTS": str(requests_file), "MEDLENS_DATA_DIR": str(data_dir)}
        duration = int(WARMUP_S + SOAK_S)
        with (tmp_path / "locust.log").open("wb") as out:
            locust = subprocess.Popen(
                [
                    str(BIN / "locust"),
                    "-f",
                    str(REPO_ROOT / "tests" / "slow" / "soak_locustfile.py"),
                    "--headless",
                    "-u",
                    str(USERS),
                    "-r",
                    "2",
                    "-t",
                    f"{duration}s",
                    "--host",
                    cluster.serve_url,
                    "--only-summary",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        start = time.time()
        while locust.poll() is None and time.time() - start < duration + 120:
            snap = {pid: s for pid in head.pids() if (s := _proc_sample(pid))}
            # every process of the node gone at once: killed from outside (the machine is shared)
            assert snap, f"the soak's Ray node was killed from outside at {time.time() - start:.0f} s"
            samples.append((time.time() - start, snap))
            time.sleep(SAMPLE_S)
        assert locust.poll() is not None, "locust did not stop"
    finally:
        if locust is not None and locust.poll() is None:
            locust.kill()
        survivors = cluster.shutdown()
    assert not survivors, f"processes of the soak's Ray survived: {survivors}"

    # -- figures ---------------------------------------------------------------------------------------------
    reqs = _read_requests(requests_file)
    t_start = start + WARMUP_S
    t_end = start + WARMUP_S + SOAK_S

    def window(a: float, b: float) -> list[tuple[float, str, float, bool]]:
        return [r for r in reqs if a <= r[0] < b]

    first, last = window(t_start, t_start + 60), window(t_end - 60, t_end)
    soak = window(t_start, t_end)
    # Explanations (integrated gradients, Grad-CAM: seconds each) are 5-10 a minute, too few for a p99 of
    # their own: the check is on every other request; the p99 with them is reported too.
    p99_first = _p99([r[2] for r in first if r[3] and "(explain)" not in r[1]])
    p99_last = _p99([r[2] for r in last if r[3] and "(explain)" not in r[1]])
    per_route = {}
    for name in sorted({r[1] for r in soak}):
        per_route[name] = {
            "requests": sum(1 for r in soak if r[1] == name),
            "failed": sum(1 for r in soak if r[1] == name and not r[3]),
            "p99_first_min_ms": round(_p99([r[2] for r in first if r[1] == name and r[3]]), 1),
            "p99_last_min_ms": round(_p99([r[2] for r in last if r[1] == name and r[3]]), 1),
        }

    base_i = next(i for i, (t, _) in enumerate(samples) if t >= WARMUP_S)
    end_i = len(samples) - 1
    while end_i > base_i and samples[end_i][0] > WARMUP_S + SOAK_S:  # the end of the soak, not of the sampling
        end_i -= 1
    first_min = [s for t, s in samples if WARMUP_S <= t < WARMUP_S + 60]
    last_min = [s for t, s in samples[: end_i + 1] if t >= samples[end_i][0] - 60]
    base, end = samples[base_i][1], samples[end_i][1]
    processes = []
    for pid in sorted(set(base) & set(end)):
        fds_first = max(s[pid]["fds"] for s in first_min if pid in s)
        fds_last = max(s[pid]["fds"] for s in last_min if pid in s)
        thr_first = max(s[pid]["threads"] for s in first_min if pid in s)
        thr_last = max(s[pid]["threads"] for s in last_min if pid in s)
        processes.append(
            {
                "pid": pid,
                "name": base[pid]["name"],
                "rss_mb_after_warmup": round(base[pid]["rss_mb"], 1),
                "rss_mb_end": round(end[pid]["rss_mb"], 1),
                "rss_growth_pct": round(100 * (end[pid]["rss_mb"] / base[pid]["rss_mb"] - 1), 2),
                "fds_first_min_max": fds_first,
                "fds_last_min_max": fds_last,
                "threads_first_min_max": thr_first,
                "threads_last_min_max": thr_last,
            }
        )
    load = Path("/proc/loadavg").read_text().split()[:3]
    shared = subprocess.run(["pgrep", "-af", "models.train"], capture_output=True, text=True).stdout.strip()
    result = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(start)),
        "users": USERS,
        "warmup_s": WARMUP_S,
        "soak_s": SOAK_S,
        "requests": len(soak),
        "failed": sum(1 for r in soak if not r[3]),
        "requests_per_s": round(len(soak) / SOAK_S, 2),
        "p99_first_min_ms": round(p99_first, 1),
        "p99_last_min_ms": round(p99_last, 1),
        "p99_with_explanations_first_min_ms": round(_p99([r[2] for r in first if r[3]]), 1),
        "p99_with_explanations_last_min_ms": round(_p99([r[2] for r in last if r[3]]), 1),
        "per_route": per_route,
        "processes": processes,
        "processes_started_after_warmup": sorted({end[p]["name"] for p in set(end) - set(base)}),
        "processes_gone_after_warmup": sorted({base[p]["name"] for p in set(base) - set(end)}),
        "loadavg_at_end": load,
        "shared_with": shared.splitlines(),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    (tmp_path / "samples.json").write_text(json.dumps(samples))
    print(json.dumps({k: v for k, v in result.items() if k != "processes"}, indent=1))

    # -- checks ----------------------------------------------------------------------------------------------
    assert len(soak) > 0 and processes
    assert result["failed"] <= FAILED_MAX * len(soak), result
    grown = [p for p in processes if p["rss_growth_pct"] > 100 * RSS_GROWTH_MAX]
    assert not grown, f"resident memory grew more than {RSS_GROWTH_MAX:.0%}: {grown}"
    fd_growth = [p for p in processes if p["fds_last_min_max"] > p["fds_first_min_max"] + FD_SLACK]
    assert not fd_growth, f"open file descriptors grew: {fd_growth}"
    thread_growth = [p for p in processes if p["threads_last_min_max"] > p["threads_first_min_max"] + THREAD_SLACK]
    assert not thread_growth, f"threads grew: {thread_growth}"
    assert p99_last <= P99_FACTOR * p99_first + P99_SLACK_MS, (p99_first, p99_last)
