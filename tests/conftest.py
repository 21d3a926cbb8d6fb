"""Shared fixtures: the real-data files and one real Ray Serve application per pytest session.

``serving_url`` starts ``serve run tests/serving/ray_config.test.yaml`` (port 18000, CPU, no auth),
with the fast-path environment of ``serving/fast_path.env`` (HAProxy in front) on test ports that
do not collide with a running ``make run``, in its own process session with its own Ray instance
(``--address local`` and a private ``RAY_TMPDIR``), waits for ``/healthz``, and at the end kills that
whole process session (TERM, then KILL): every Ray process it started goes with it, and Ray instances
it did not start are untouched.

Weights: the defaults (models/weights/<model>), or ``$MEDLENS_WEIGHTS_DIR/<model>`` when that is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import hypothesis.configuration
import pytest

from models.config import REPO_ROOT
from models.config import data_dir as _data_dir

TEST_SERVE_CONFIG = REPO_ROOT / "tests" / "serving" / "ray_config.test.yaml"
#: The tests' own cache of measured execution paths (models/backends.py), inherited by the test server:
#: tests write only under test-artifacts/, and every session measures on the machine it runs on.
os.environ["MEDLENS_CACHE_DIR"] = str(REPO_ROOT / "test-artifacts" / "backend-cache")
#: Hypothesis (Schemathesis's engine) keeps its caches here instead of .hypothesis/ in the repository.
hypothesis.configuration.set_hypothesis_home_dir(REPO_ROOT / "test-artifacts" / "hypothesis")
TEST_SERVE_PORT = 18000
#: The case database of the test server (SQLite), new each session.
TEST_CASE_DB = REPO_ROOT / "test-artifacts" / "serve-cases.db"
SERVE_START_TIMEOUT_S = 180.0
#: Environment of the test server: no auth token, whatever the developer's shell has.
_SCRUBBED_ENV = ("MEDLENS_API_TOKEN", "RAY_ADDRESS", "RAY_TMPDIR")
#: Ports of the test server's HAProxy stats / metrics, Serve's fallback proxy and the replicas' own
#: HTTP / gRPC servers: away from the defaults that a running `make run` holds.
TEST_SERVE_PORTS_ENV = {
    "RAY_SERVE_HAPROXY_STATS_PORT": "18404",
    "RAY_SERVE_HAPROXY_METRICS_PORT": "19101",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": "18500",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": "19500",
    "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": "32000",
    "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": "32999",
    "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": "42000",
    "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": "42999",
}


# ----------------------------------------------------------------------------------------------------------
# real data
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = _data_dir()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root}: set MEDLENS_DATA_DIR (default ../shared/data)")
    return root


def _first(folder: Path, pattern: str) -> Path:
    files = sorted(folder.glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} files under {folder}")
    return files[0]


@pytest.fixture(scope="session")
def xray_pneumonia_path(data_dir: Path) -> Path:
    """A training-set chest X-ray labelled PNEUMONIA (224 x 224 JPEG)."""
    return _first(data_dir / "chest_xray" / "train" / "PNEUMONIA", "*.jpeg")


@pytest.fixture(scope="session")
def xray_normal_path(data_dir: Path) -> Path:
    return _first(data_dir / "chest_xray" / "train" / "NORMAL", "*.jpeg")


@pytest.fixture(scope="session")
def xray_fullres_path(data_dir: Path) -> Path:
    """An original-resolution radiograph (hundreds to thousands of pixels per side)."""
    return _first(data_dir / "chest_xray_fullres" / "PNEUMONIA", "*")


@pytest.fixture(scope="session")
def synthetic_xray_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chest radiograph that needs no patient data: the committed GAN's NORMAL image of seed 0, marked
    synthetic (band and PNG chunk). For tests that need *a* radiograph, not a real one's numbers."""
    from models.synthetic import SyntheticXrayGenerator

    path = tmp_path_factory.mktemp("synthetic") / "synthetic-NORMAL-seed0.png"
    path.write_bytes(SyntheticXrayGenerator().png("NORMAL", 0))
    return path


@pytest.fixture(scope="session")
def dicom_path() -> Path:
    """Real CR chest radiograph, uncompressed (pydicom-data, MIT)."""
    from pydicom.data import get_testdata_file

    return Path(str(get_testdata_file("RG1_UNCR.dcm")))


@pytest.fixture(scope="session")
def dicom_j2k_path() -> Path:
    """The same radiograph, JPEG 2000 compressed."""
    from pydicom.data import get_testdata_file

    return Path(str(get_testdata_file("RG1_J2KI.dcm")))


@pytest.fixture(scope="session")
def psv_path(data_dir: Path) -> Path:
    """One ICU stay from PhysioNet/CinC 2019 training set B."""
    return _first(data_dir / "sepsis" / "training", "*.psv")


@pytest.fixture(scope="session")
def psv_paths(data_dir: Path) -> list[Path]:
    """Eight ICU stays (different lengths)."""
    files = sorted((data_dir / "sepsis" / "training").glob("*.psv"))[:8]
    if len(files) < 8:
        pytest.skip(f"fewer than 8 .psv files under {data_dir / 'sepsis' / 'training'}")
    return files


# ----------------------------------------------------------------------------------------------------------
# a real Ray Serve application
# ----------------------------------------------------------------------------------------------------------
def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _session_pids(sid: int) -> list[int]:
    """Every live (non-zombie) process whose session id is ``sid`` (Linux /proc)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # fields after "(comm)": state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def pids_matching(pattern: str, sid: int) -> list[int]:
    """Processes of session ``sid`` whose command line matches ``pattern`` (``pgrep -f -s``): never a process of
    another session, such as a developer's `make run` with the same deployments."""
    out = subprocess.run(["pgrep", "-f", "-s", str(sid), pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def rss_mb(pattern: str, sid: int) -> float:
    """Resident memory of every process of session ``sid`` matching ``pattern``, together, in MB."""
    total = 0.0
    for pid in pids_matching(pattern, sid):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
            total += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024
    return total


def kill_session(sid: int, grace_s: float = 20.0) -> None:
    """TERM every process of session ``sid``, wait up to ``grace_s``, then KILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_pids(sid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 5.0)
        while _session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.25)
        if not _session_pids(sid):
            return


def _log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`serve run` exited with {proc.returncode} before /healthz answered:\n{_log_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(f"{url}/healthz", timeout=10.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        time.sleep(2.0)
    pytest.fail(
        f"MedLens serving at {url} not healthy after {timeout_s:.0f} s (last: {last}); log tail:\n{_log_tail(log)}"
    )


@dataclass(frozen=True)
class ServeServer:
    url: str
    log: Path  # stdout/stderr of `serve run` (Ray streams every replica's log lines into it)
    ray_tmp: Path  # the private Ray temp dir (session logs under ray/session_latest/logs)
    sid: int  # the process session of `serve run` and of every Ray process it started (its pid: setsid)

    def pids(self, pattern: str) -> list[int]:
        """This server's processes whose command line matches ``pattern`` (Ray's process titles, e.g.
        ``ServeReplica:pneumonia-cnn:``); no other Ray instance's."""
        return pids_matching(pattern, self.sid)

    def rss_mb(self, pattern: str) -> float:
        """Resident memory of this server's processes matching ``pattern``, together, in MB."""
        return rss_mb(pattern, self.sid)

    @property
    def session_logs(self) -> Path:
        return self.ray_tmp / "ray" / "session_latest" / "logs"

    def log_files(self) -> list[Path]:
        return [self.log, *sorted(self.session_logs.rglob("*.log"))]

    def controller_lines(self, needle: str, last: int = 40) -> list[str]:
        """The last ``last`` lines of the Serve controllers' logs that contain ``needle`` (a deployment's name), in
        time order: what the controller did to it (replicas added, removed, failing health checks). For failure
        messages: CI shows a failing test's message, and this server's logs are deleted with it."""
        files = sorted((self.session_logs / "serve").glob("controller_*.log"), key=lambda p: p.stat().st_mtime)
        lines = [line for p in files for line in p.read_text(errors="replace").splitlines() if needle in line]
        return lines[-last:]


@pytest.fixture(scope="session")
def serve_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ServeServer]:
    """A real MedLens Ray Serve application (tests/serving/ray_config.test.yaml), once per session. When a test
    of the session failed, its Ray session logs are kept under test-artifacts/ray-logs/ before the server goes."""
    from models.errors import WeightsError
    from serving._settings import ServingArgs, check_weights, fast_path_env

    try:
        check_weights(ServingArgs().weights_dirs())
    except WeightsError as exc:
        pytest.fail(str(exc))
    if _port_busy(TEST_SERVE_PORT):
        pytest.fail(
            f"port {TEST_SERVE_PORT} is already in use (a stale `serve run`?): stop it before running the serve tests"
        )
    serve_bin = Path(sys.executable).with_name("serve")
    # Short: Ray's unix-socket paths under it must stay below 108 characters.
    ray_tmp = Path(tempfile.mkdtemp(prefix="mlt-", dir="/tmp"))
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update(fast_path_env())
    env.update(TEST_SERVE_PORTS_ENV)
    env["RAY_TMPDIR"] = str(ray_tmp)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # The test server's own case database, new each session (SQLite: the embedded default's engine).
    for stale in TEST_CASE_DB.parent.glob(TEST_CASE_DB.name + "*"):
        stale.unlink()
    env["MEDLENS_DB_URL"] = f"sqlite:///{TEST_CASE_DB}"
    url = f"http://127.0.0.1:{TEST_SERVE_PORT}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(serve_bin), "run", "--address", "local", str(TEST_SERVE_CONFIG)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # setsid: the server and every Ray process it starts share one session
        )
    server = ServeServer(url=url, log=log, ray_tmp=ray_tmp, sid=proc.pid)
    try:
        _wait_healthy(url, proc, log, SERVE_START_TIMEOUT_S)
        yield server
    finally:
        kill_session(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        left = _session_pids(proc.pid)
        if left:
            print(f"warning: processes of the test server's session survived: {left}", file=sys.stderr)
        if request.session.testsfailed:
            _keep_logs(server)
        shutil.rmtree(ray_tmp, ignore_errors=True)


KEPT_LOGS = REPO_ROOT / "test-artifacts" / "ray-logs"


def _keep_logs(server: ServeServer) -> None:
    """Copy the test server's output and Ray session logs to test-artifacts/ray-logs/ (the last failing run's)."""
    shutil.rmtree(KEPT_LOGS, ignore_errors=True)
    KEPT_LOGS.mkdir(parents=True)
    shutil.copy2(server.log, KEPT_LOGS / server.log.name)
    with contextlib.suppress(OSError):
        shutil.copytree(server.session_logs, KEPT_LOGS / "session", ignore_dangling_symlinks=True)
    print(f"a test failed: the test server's logs are kept in {KEPT_LOGS}", file=sys.stderr)


@pytest.fixture(scope="session")
def serving_url(serve_server: ServeServer) -> str:
    """Base URL (http://127.0.0.1:18000) of the session's real MedLens serving, without auth."""
    return serve_server.url


# ----------------------------------------------------------------------------------------------------------
# the run's skips, said loudly (scripts/test.sh prints this file after the tests)
# ----------------------------------------------------------------------------------------------------------
SKIP_SUMMARY = REPO_ROOT / "test-artifacts" / "skip-summary.txt"


def skip_summary(passed: int, failed: int, reasons: Counter[str]) -> str:
    """What a reader of the last lines of ``make test`` must know: how many tests were skipped and why."""
    skipped = sum(reasons.values())
    lines = ["=" * 100]
    if skipped:
        lines.append(f"{skipped} TEST(S) SKIPPED: this was not a full run. Why:")
        lines += [f"  {count:4d} x {reason}" for reason, count in reasons.most_common()]
    else:
        lines.append("No test was skipped: a full run.")
    lines += ["=" * 100, f"pytest: {passed} passed, {failed} failed, {skipped} skipped"]
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    stats = terminalreporter.stats
    reasons: Counter[str] = Counter()
    for report in stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reasons[str(reason).removeprefix("Skipped: ")] += 1
    passed = len([r for r in stats.get("passed", []) if getattr(r, "when", "call") == "call"])
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    text = skip_summary(passed, failed, reasons)
    SKIP_SUMMARY.parent.mkdir(exist_ok=True)
    SKIP_SUMMARY.write_text(text)
