"""Locust load for the fault tests: tests/serving/faults_locustfile.py's users in a Locust process of their own
(headless), against one MedLens URL, with every finished request in a log the test reads afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from models.config import REPO_ROOT

LOCUSTFILE = REPO_ROOT / "tests" / "serving" / "faults_locustfile.py"
LOCUST = Path(sys.executable).with_name("locust")
CLASSES = {"xray": "XrayPredictions", "lstm": "LstmPredictions", "transformer": "TransformerPredictions"}


@dataclass(frozen=True)
class Finished:
    at: float  # unix time the answer (or the final error) arrived
    kind: str  # xray | lstm | transformer
    ok: bool
    error: str


class LocustLoad:
    """``with LocustLoad(url, {"xray": 8}, tmp, image=...) as load: ...`` starts the users and waits for their
    first answer; leaving the block stops Locust (SIGTERM: each user finishes the request it has in flight,
    retries included, within ``--stop-timeout``)."""

    def __init__(
        self,
        url: str,
        users: dict[str, int],
        directory: Path,
        image: Path | None = None,
        record: Path | None = None,
        stop_timeout_s: int = 120,
    ) -> None:
        self.url, self.users, self.directory = url, users, directory
        self.log = directory / "requests.csv"
        self.output = directory / "locust.log"
        self.stop_timeout_s = stop_timeout_s
        self.env = {
            **os.environ,
            "MEDLENS_FAULTS_REQUESTS": str(self.log),
            "MEDLENS_FAULTS_USERS": ",".join(f"{k}={n}" for k, n in users.items()),
            **({"MEDLENS_FAULTS_IMAGE": str(image)} if image else {}),
            **({"MEDLENS_FAULTS_RECORD": str(record)} if record else {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocustLoad:
        self.log.write_text("")
        total = sum(self.users.values())
        argv = [str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "-u", str(total), "-r", str(total)]
        argv += ["-t", "3600s", "--stop-timeout", str(self.stop_timeout_s), "--host", self.url, "--only-summary"]
        argv += [CLASSES[kind] for kind in self.users]
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not self.log.read_text() and time.time() < deadline and self.proc.poll() is None:
            time.sleep(0.2)
        if not self.log.read_text():
            self.stop()
            raise RuntimeError(f"Locust sent nothing: {self.output.read_text()[-2000:]}")
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.stop_timeout_s + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def finished(self) -> list[Finished]:
        out = []
        for line in self.log.read_text().splitlines():
            at, kind, ok, error = line.split(",", 3)
            out.append(Finished(float(at), kind, ok == "1", error))
        return out
