"""When each deployment scaled in a step-load run: joins locust's log with the Serve controller's.

    PYTHONPATH=. .venv/bin/locust -f benchmarks/locust_step.py ... --logfile docs/load/step.log
    .venv/bin/python -m benchmarks.step_report docs/load/step.log    # before the server stops

For every upscale the controller logged after locust's last run started, prints the step (users) it followed, how
long after that step autoscaling decided (with the peak or mean in flight the controller saw), and how
long after it the new replica was serving (Serve's "started successfully"). Both logs stamp local
wall-clock time to the millisecond. Ray keeps the controller log in its session directory under
/tmp/ray until the next Ray start, so run it right after the load (the server may be stopped by then).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")
_RUN = re.compile(r"Shape test starting")
_STEP = re.compile(r"Shape test updating to (\d+) users")
_UP = re.compile(r"Upscaling Deployment\(name='([\w-]+)'.*Current ongoing requests: ([\d.]+)")
_READY = re.compile(r"deployment='([\w-]+)'.*started successfully.*after ([\d.]+)s")
_DOWN = re.compile(r"Downscaling Deployment\(name='([\w-]+)'")


def _stamp(line: str) -> float | None:
    m = _STAMP.search(line)
    return datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else None


@dataclass
class Rise:
    deployment: str
    users: int  # the step it followed
    decided_s: float  # after that step
    in_flight: float  # what the controller aggregated when it decided
    serving_s: float | None  # after that step; None: not serving by the end of the log
    startup_s: float | None  # as Serve reports it


def steps(locust_log: str) -> list[tuple[float, int]]:
    """(time, users) of every stage of the load shape, in order, in the log's last run: locust appends to
    its ``--logfile``, so a log can hold several runs, each opening with ``Shape test starting``."""
    out: list[tuple[float, int]] = []
    for line in locust_log.splitlines():
        if _RUN.search(line):
            out = []
        m, t = _STEP.search(line), _stamp(line)
        if m and t is not None:
            out.append((t, int(m[1])))
    return out


def rises(stages: list[tuple[float, int]], controller_log: str) -> tuple[list[Rise], dict[str, float]]:
    """Upscales after the first stage, and the first downscale decision per deployment after the load
    ended (seconds after the stage with 0 users)."""
    start = stages[0][0]
    end = next((t for t, users in stages if users == 0), None)
    out: list[Rise] = []
    pending: dict[str, tuple[Rise, float]] = {}  # deployment -> (its rise, the time of the step it followed)
    down: dict[str, float] = {}
    for line in controller_log.splitlines():
        t = _stamp(line)
        if t is None or t < start:
            continue
        if m := _UP.search(line):
            step_t, users = max((s for s in stages if s[0] <= t), key=lambda s: s[0])
            rise = Rise(m[1], users, t - step_t, float(m[2]), None, None)
            out.append(rise)
            pending[m[1]] = (rise, step_t)
        elif (m := _READY.search(line)) and m[1] in pending:
            rise, step_t = pending.pop(m[1])
            rise.serving_s, rise.startup_s = t - step_t, float(m[2])
        elif (m := _DOWN.search(line)) and end is not None and t > end:
            down.setdefault(m[1], t - end)
    return out, down


def controller_log(ray_logs: Path) -> Path:
    found = [p for p in (ray_logs / "serve").glob("controller_*.log") if "build" not in p.name]
    if not found:
        raise SystemExit(f"no Serve controller log under {ray_logs}/serve: pass --ray-logs <session>/logs")
    return max(found, key=lambda p: p.stat().st_mtime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("locust_log", type=Path, help="locust's --logfile of the step run")
    parser.add_argument("--ray-logs", type=Path, default=Path("/tmp/ray/session_latest/logs"))
    args = parser.parse_args()
    stages = steps(args.locust_log.read_text())
    if not stages:
        raise SystemExit(f"{args.locust_log}: no 'Shape test updating to N users' line (a locust_step.py log?)")
    found, down = rises(stages, controller_log(args.ray_logs).read_text())
    print("| deployment | after the step to | decided | in flight | serving | start-up |")
    print("|---|---|---|---|---|---|")
    for r in found:
        serving = "not yet" if r.serving_s is None else f"{r.serving_s:.1f} s"
        startup = "" if r.startup_s is None else f"{r.startup_s:.1f} s"
        print(f"| {r.deployment} | {r.users} users | {r.decided_s:.1f} s | {r.in_flight:g} | {serving} | {startup} |")
    for name, after in sorted(down.items()):
        print(f"{name}: scale-down decided {after:.1f} s after the load ended")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
