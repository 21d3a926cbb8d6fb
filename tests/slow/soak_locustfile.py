"""benchmarks/locustfile.py's realistic mix, each finished request also appended to ``$MEDLENS_SOAK_REQUESTS``
(CSV: unix time at the end, request name, response time in ms, 1 ok / 0 failed), so that the soak
(tests/slow/test_soak.py) can compute the p99 of any minute itself."""

from __future__ import annotations

import os
import time
from typing import Any

from locust import events

from benchmarks.locustfile import DashboardReader, SepsisClinician, XrayReviewer

__all__ = ["DashboardReader", "SepsisClinician", "XrayReviewer"]

_OUT = open(os.environ["MEDLENS_SOAK_REQUESTS"], "a", buffering=1)  # noqa: SIM115 (open for the whole run)


@events.request.add_listener
def _record(name: str, response_time: float, exception: BaseException | None = None, **_: Any) -> None:
    _OUT.write(f"{time.time():.3f},{name},{response_time:.1f},{0 if exception else 1}\n")
