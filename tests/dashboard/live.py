"""A real dashboard for the browser tests: ``streamlit run dashboard/app.py`` in its own process session,
against a real MedLens serving, and Debian's Chromium to drive it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_session(proc: subprocess.Popen[bytes]) -> None:
    """Stop the whole process session started for a server (TERM, then KILL)."""
    if proc.poll() is not None:
        return
    with_pgid = proc.pid  # start_new_session=True: the server leads its own session and group
    try:
        os.killpg(with_pgid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(with_pgid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@contextmanager
def running_dashboard(
    serving_url: str, *, port: int | None = None, options: Sequence[str] = (), log_name: str = "streamlit.log"
) -> Iterator[str]:
    """The dashboard on 127.0.0.1 (``port``, or a free one) talking to ``serving_url``, with extra Streamlit
    ``options`` (``--section.key=value``); yields its URL once it answers. Its output goes to
    ``test-artifacts/<log_name>``."""
    port = port or free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / log_name
    env = {**os.environ, "MEDLENS_SERVING_URL": serving_url, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "dashboard" / "app.py"),
        "--server.headless=true",
        f"--server.port={port}",
        "--server.address=127.0.0.1",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=minimal",
        *options,
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start; see {log_path}")
                time.sleep(0.3)
            yield url
        finally:
            stop_session(proc)


# -- a page in the browser ---------------------------------------------------------------------------------------
#: how long a page may take to show a result (a model woken from zero included)
RESULT_TIMEOUT_MS = 120_000


def idle(page: Any, timeout_ms: int = RESULT_TIMEOUT_MS) -> None:
    """Wait until the page's script run has finished."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)


def open_page(page: Any, url: str, title: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=title).wait_for(timeout=RESULT_TIMEOUT_MS)
    idle(page)


def main_text(page: Any) -> str:
    return str(page.locator('[data-testid="stMain"]').inner_text())


def score_line(page: Any) -> Any:
    """The X-ray answer's line "Score … vs operating threshold …"."""
    return page.locator('[data-testid="stMarkdownContainer"]', has_text="vs operating threshold")


def upload_xray(page: Any, payload: Path | dict[str, Any]) -> None:
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(payload)
