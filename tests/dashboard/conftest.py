"""Fixtures of the dashboard tests.

The page and browser tests need a real MedLens serving: they use the session fixture
``serving_url`` of ``tests/conftest.py`` (starts ``serve run`` on a test port). Set
``MEDLENS_TEST_SERVING_URL`` to use an already running serving instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from serving.schemas import ModelMetrics
from tests.conftest import ServeServer
from tests.dashboard.helpers import card_metrics, synthetic_metrics
from tests.dashboard.live import CHROMIUM, CHROMIUM_ARGS

EXTERNAL_URL_ENV = "MEDLENS_TEST_SERVING_URL"


@pytest.fixture(scope="session")
def dashboard_serving_url(request: pytest.FixtureRequest) -> str:
    """URL of a real MedLens serving (``serving_url`` from tests/conftest.py, or the env override)."""
    external = os.environ.get(EXTERNAL_URL_ENV)
    if external:
        return external.rstrip("/")
    return str(request.getfixturevalue("serving_url")).rstrip("/")  # started only when no override is set


@pytest.fixture
def local_server(dashboard_serving_url: str, request: pytest.FixtureRequest) -> ServeServer | None:
    """The session's own test server, whose logs a failure message can quote; None with an external one."""
    return None if os.environ.get(EXTERNAL_URL_ENV) else request.getfixturevalue("serve_server")


@pytest.fixture
def serving_env(dashboard_serving_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """MEDLENS_SERVING_URL set for an in-process AppTest."""
    monkeypatch.setenv("MEDLENS_SERVING_URL", dashboard_serving_url)
    return dashboard_serving_url


@pytest.fixture(params=["synthetic", *[m.name for m in card_metrics()]])
def model_metrics(request: pytest.FixtureRequest) -> ModelMetrics:
    """The synthetic evaluation, then each committed model card's evaluation."""
    if request.param == "synthetic":
        return synthetic_metrics()
    return next(m for m in card_metrics() if m.name == request.param)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by playwright (skips without either)."""
    playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with playwright_sync.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()
