"""Locust users of the fault tests (tests/serving/test_faults.py, tests/slow/test_multinode.py): closed-loop
predictions through :class:`serving.client.MedLensClient` (its retries of idempotent predictions are what
keeps a request from being lost while a component restarts). Each finished request is reported to Locust and
appended to ``$MEDLENS_FAULTS_REQUESTS`` as ``unix time at the end,kind,1 ok / 0 failed,status error``, so
that a test can count failures and the longest gap without a finished prediction after its kill.

Environment: ``MEDLENS_FAULTS_REQUESTS`` (the log), ``MEDLENS_FAULTS_IMAGE`` (the radiograph to send),
``MEDLENS_FAULTS_RECORD`` (the PSV record, for the sepsis users) and ``MEDLENS_FAULTS_USERS``
(``xray=4,lstm=1,transformer=1``: how many users of each kind; pass the same total to ``-u``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from locust import User, constant, task

from serving.client import MedLensClient, ServingError

_OUT = open(os.environ["MEDLENS_FAULTS_REQUESTS"], "a", buffering=1)  # noqa: SIM115 (open for the whole run)
_COUNTS = dict(
    (kind, int(n)) for kind, _, n in (item.partition("=") for item in os.environ["MEDLENS_FAULTS_USERS"].split(","))
)


def _read(variable: str) -> bytes:
    return Path(os.environ[variable]).read_bytes() if variable in os.environ else b""


class _Predictions(User):
    abstract = True
    wait_time = constant(0)
    kind = ""

    def on_start(self) -> None:
        self.medlens = MedLensClient(self.host or "", timeout=60.0, retry_s=60.0)

    def on_stop(self) -> None:
        self.medlens.close()

    def call(self) -> None:
        raise NotImplementedError

    @task
    def predict(self) -> None:
        started = time.perf_counter()
        error: str | None = None
        try:
            self.call()
        except ServingError as exc:
            error = f"{exc.status} {exc.error}"
        self.environment.events.request.fire(
            request_type="POST",
            name=self.kind,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=RuntimeError(error) if error else None,
            context={},
        )
        _OUT.write(f"{time.time():.3f},{self.kind},{0 if error else 1},{error or ''}\n")


class XrayPredictions(_Predictions):
    kind = "xray"
    fixed_count = _COUNTS.get("xray", 0)
    image = _read("MEDLENS_FAULTS_IMAGE")

    def call(self) -> None:
        self.medlens.predict_xray(self.image, "n.jpeg")


class LstmPredictions(_Predictions):
    kind = "lstm"
    fixed_count = _COUNTS.get("lstm", 0)
    record = _read("MEDLENS_FAULTS_RECORD")

    def call(self) -> None:
        self.medlens.predict_sepsis(self.record, "r.psv", "lstm")


class TransformerPredictions(_Predictions):
    kind = "transformer"
    fixed_count = _COUNTS.get("transformer", 0)
    record = _read("MEDLENS_FAULTS_RECORD")

    def call(self) -> None:
        self.medlens.predict_sepsis(self.record, "r.psv", "transformer")
