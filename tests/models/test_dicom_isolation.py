"""GDCM in a worker process of its own: a worker that aborts or hangs costs one file a typed refusal and the next
file gets a new worker; GDCM is never pydicom's fallback for the syntaxes other decoders take."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom import uid
from pydicom.pixels import get_decoder

import models.xray_io  # noqa: F401  (importing the loader keeps GDCM to its own syntaxes)
from models.dicom_isolation import GDCM_ONLY, run_isolated
from models.errors import ImageDecodeError

REPO = Path(__file__).resolve().parents[2]


def test_a_worker_that_aborts_is_a_typed_refusal_and_the_next_call_gets_a_new_one() -> None:
    first = run_isolated(os.getpid)
    assert first != os.getpid()
    with pytest.raises(ImageDecodeError, match="decoder stopped"):
        run_isolated(os.abort)  # what GDCM's uncaught C++ exception does to a process: SIGABRT
    second = run_isolated(os.getpid)
    assert second not in (first, os.getpid())


def test_a_worker_that_hangs_is_killed_at_the_timeout() -> None:
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="longer than 1 s"):
        run_isolated(time.sleep, 60, timeout=1.0)
    assert time.perf_counter() - start < 30
    assert run_isolated(sum, [1, 2, 3]) == 6


def test_the_worker_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    """Ray kills a replica with SIGKILL (scale-down, a crash): nothing shuts its worker down, which stayed, orphaned,
    for good."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from models.dicom_isolation import run_isolated\n"
        "if __name__ == '__main__':\n"
        "    print(run_isolated(os.getpid), flush=True)\n"
        "    time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert _alive(worker)
    finally:
        parent.kill()
        parent.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphaned = _alive(worker)
    if orphaned:  # leave no process behind, even when the test fails
        os.kill(worker, signal.SIGKILL)
    assert not orphaned, f"worker {worker} outlived its parent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) has gone too
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] != "Z"


def test_the_worker_s_own_exceptions_come_back_as_raised() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        run_isolated(int, "not a number")


def test_gdcm_decodes_only_what_nothing_else_here_does() -> None:
    """pydicom tries a syntax's plugins in turn, GDCM first: with GDCM installed, every JPEG baseline DICOM went to
    GDCM, in the replica's own process, and a mutated one aborted it (found by mutating DICOM files)."""
    for syntax in (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEG2000, uid.JPEG2000Lossless):
        plugins = get_decoder(syntax).available_plugins
        assert plugins and "gdcm" not in plugins, (syntax.name, plugins)
    for syntax in GDCM_ONLY:
        assert get_decoder(syntax).available_plugins == ("gdcm",), syntax.name
