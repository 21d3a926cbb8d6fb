"""Start-up of MedLens's serving, side by side: time from the command to a healthy ``/healthz`` and memory.

    .venv/bin/python -m benchmarks.startup [--rounds 3] [--out docs/benchmarks-startup.md]

Variants, run in turn each round (so a machine that slows down slows them all), each with the environment
``make run`` gives serving (serving/fast_path.env, a private Ray temp dir, no usage stats):

* ``serve run`` — ``ray start --head`` (no dashboard, monitor or log monitor), then
  ``serve run --non-blocking --address auto ray_config.yaml`` (how ``make run`` started until 2026-12-04);
* ``serve run, no Ray Client`` — the same with ``RAY_START_HOOK=serving._ray_start.single_machine``;
* ``serving.launch`` — that ``ray start``, then ``python -m serving.launch ray_config.yaml`` (applications
  built in one process; how ``make run`` started until 2026-12-05);
* ``serving.launch --start-head`` — ``python -m serving.launch ray_config.yaml --start-head PORT``: the same
  ``ray start`` run by the launcher while it builds the applications, and Serve started without waiting for
  its proxies;
* ``make run`` — ``scripts/run.sh`` itself (what ``make run`` runs: the install check, the above, then the
  dashboard once serving is healthy).

Healthy: the first ``GET /healthz`` answering 200 (polled every 0.1 s). CPU: seconds of CPU the whole
machine spent from the command to healthy (``/proc/stat``; the rest of the machine should be idle). Memory:
RSS summed over every process of the run (found by a temp dir private to the run in its environment) 8 s
after healthy. Every process of a run is stopped before the next starts; ports 8000, 8501 and Ray's must be
free.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from models.backends import this_machine
from models.config import REPO_ROOT
from serving._settings import fast_path_env
from serving.launch import RAY_START_HOOK, ray_start_command

RAY_PORT = 6390
SERVE_URL = "http://127.0.0.1:8000/healthz"
#: ``make run``'s ``ray start`` (serving.launch.ray_start_command), as a separate command before the launcher.
RAY_START = shlex.join(ray_start_command(RAY_PORT)) + " >/dev/null 2>&1"
HOOK = f"RAY_START_HOOK={RAY_START_HOOK} "
VARIANTS: dict[str, str] = {
    "serve run": RAY_START + " && .venv/bin/serve run --non-blocking --address auto ray_config.yaml",
    "serve run, no Ray Client": HOOK
    + RAY_START
    + " && .venv/bin/serve run --non-blocking --address auto ray_config.yaml",
    "serving.launch": HOOK + RAY_START + " && .venv/bin/python -m serving.launch ray_config.yaml --address auto",
    "serving.launch --start-head": ".venv/bin/python -m serving.launch ray_config.yaml --start-head {port}",
    "make run": "scripts/run.sh",
}


@dataclass
class Result:
    healthy_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(fast_path_env())
    env.update({"TMPDIR": str(tmp), "RAY_TMPDIR": str(tmp / "ray-tmp"), "RAY_USAGE_STATS_ENABLED": "0"})
    return env


def _ours(tmp: Path) -> list[int]:
    """Every process whose environment names this run's private temp dir."""
    marker = f"TMPDIR={tmp}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker in (proc / "environ").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _stop(tmp: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _ours(tmp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(4 if sig == signal.SIGTERM else 1)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _busy_cpu_s() -> float:
    """CPU seconds the machine has spent outside idle and I/O wait since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def run_once(command: str, timeout_s: float = 180.0) -> tuple[float, float, float, int]:
    for port in (8000, 8501, RAY_PORT):
        if not _port_free(port):
            raise SystemExit(f"port {port} is in use: stop what holds it (an earlier make run?) first")
    tmp = Path(tempfile.mkdtemp(prefix="mls-", dir="/tmp"))
    (tmp / "ray-tmp").mkdir()
    env = _env(tmp)
    if command.startswith("scripts/run.sh"):
        env.pop("RAY_TMPDIR")  # run.sh makes its own under TMPDIR
    started, busy = time.monotonic(), _busy_cpu_s()
    subprocess.Popen(
        ["bash", "-c", command.format(port=RAY_PORT) + " && exec sleep infinity"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    healthy = cpu = float("nan")
    try:
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() - started < timeout_s:
                try:
                    if client.get(SERVE_URL).status_code == 200:
                        healthy, cpu = time.monotonic() - started, _busy_cpu_s() - busy
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        time.sleep(8)
        pids = _ours(tmp)
        return healthy, cpu, _rss_mb(pids), len(pids)
    finally:
        _stop(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    results = {name: Result() for name in args.variants}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        for name in args.variants:
            healthy, cpu, rss, n = run_once(VARIANTS[name])
            results[name].healthy_s.append(healthy)
            results[name].cpu_s.append(cpu)
            results[name].rss_mb.append(rss)
            results[name].processes.append(n)
            print(
                f"round {r + 1} {name:28s} healthy {healthy:5.1f} s  CPU {cpu:5.1f} s  "
                f"RSS {rss:6.0f} MB in {n} processes",
                flush=True,
            )
    base = statistics.median(results[args.variants[0]].healthy_s)
    lines = [
        "| variant | healthy after the command, s (each round) | median | x first | CPU s until healthy (median) "
        "| RSS 8 s after healthy, MB (median) | processes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        med = statistics.median(res.healthy_s)
        lines.append(
            f"| {name} | {', '.join(f'{h:.1f}' for h in res.healthy_s)} | **{med:.1f}** | {med / base:.2f} | "
            f"{statistics.median(res.cpu_s):.1f} | {statistics.median(res.rss_mb):.0f} | "
            f"{statistics.median(res.processes):.0f} |"
        )
    header = [
        f"Command: `.venv/bin/python -m benchmarks.startup --rounds {args.rounds}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Machine: {this_machine().describe()}; load average {load_before:.2f} before the first run, "
        f"{os.getloadavg()[0]:.2f} after the last.",
        "",
    ]
    table = "\n".join(header + lines)
    print(table)
    if args.out:
        args.out.write_text(
            "# Start-up of serving, side by side\n\n" + (__doc__ or "").split("\n\n", 1)[1] + "\n" + table + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
