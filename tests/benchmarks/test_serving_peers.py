"""The peer benchmark's paired rounds: a real process session frozen while the ceiling runs, and each
round's ratio taken against the ceilings just before and just after its server window."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
