"""Memory of a server's processes, grouped by kind: what benchmarks.serving_peers reports per server."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

MEMORY_ROWS = 10  # process kinds listed per server in the memory table; the rest are summed


def process_kind(args: str) -> str:
    """A short name for a process from its command line, the same for every copy of it:
    ``ray::ServeReplica:pneumonia-cnn:pneumonia-cnn``, ``gcs_server``, ``haproxy``, ``serve``,
    ``python -m benchmarks.peers.litserve_server``, ``ray-dashboard-NodeHead`` (Ray names its processes;
    this keeps those names and drops paths and options)."""
    if args.startswith("ray::"):
        return args.split()[0]
    tokens = args.split(" (", 1)[0].split() if args.startswith("ray-dashboard-") else args.split()
    if not tokens:
        return "?"
    exe = re.sub(r"-\d+$", "", Path(tokens[0]).name)
    if not exe.startswith("python"):
        return exe
    rest = tokens[1:]
    for i, tok in enumerate(rest):
        if tok == "-m" and i + 1 < len(rest):
            return f"python -m {rest[i + 1]}"
        if tok == "-c":
            return " ".join(["python -c", *rest[i + 1 : i + 3]])
        if not tok.startswith("-"):
            return Path(tok).name  # a script: log_monitor.py, or a console script such as serve or uvicorn
    return exe


@dataclass(frozen=True)
class ProcessGroup:
    kind: str
    count: int
    rss_mb: float  # all of them together


def process_memory(session: int) -> list[ProcessGroup]:
    """Resident memory of a server's processes, grouped by :func:`process_kind`, largest first."""
    out = subprocess.run(["ps", "-s", str(session), "-o", "rss=,args="], capture_output=True, text=True).stdout
    groups: dict[str, list[int]] = {}
    for line in out.splitlines():
        rss, _, args = line.strip().partition(" ")
        if rss.isdigit():
            groups.setdefault(process_kind(args.strip()), []).append(int(rss))
    return sorted((ProcessGroup(kind, len(kb), sum(kb) / 1024) for kind, kb in groups.items()), key=lambda g: -g.rss_mb)


def memory_table(memory: dict[str, list[ProcessGroup]], clients: int) -> list[str]:
    """Markdown lines: each server's :data:`MEMORY_ROWS` largest process kinds, then one row that sums the
    rest and names them."""
    lines = [
        f"\nMemory per process right after the {clients}-client step (RSS; processes of one kind together, "
        "the largest first):\n",
        "| server | process | count | RSS MB |",
        "|---|---|---|---|",
    ]
    for name, groups in memory.items():
        shown, rest = groups[:MEMORY_ROWS], groups[MEMORY_ROWS:]
        lines += [f"| {name} | `{g.kind}` | {g.count} | {g.rss_mb:.0f} |" for g in shown]
        if rest:
            names = ", ".join(f"`{g.kind}` {g.rss_mb:.0f}" for g in rest)
            lines.append(
                f"| {name} | {len(rest)} other kinds: {names} | {sum(g.count for g in rest)} | "
                f"{sum(g.rss_mb for g in rest):.0f} |"
            )
    return lines


def process_count(session: int) -> int:
    out = subprocess.run(["ps", "-s", str(session), "-o", "pid="], capture_output=True, text=True).stdout
    return len(out.split())
