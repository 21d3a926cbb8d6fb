"""The hostile-file corpus (tests/hostile.py) against the live service: every file answered with a 4xx
that names the problem (or, for pydicom-data's real non-chest DICOMs, a 200 that flags them out of
distribution) within 30 s, never a 5xx; the service stays healthy; and each model replica's resident
memory after the corpus is within 150 MB of where it was after a first pass (nothing accumulates)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from serving.client import MedLensClient
from tests.conftest import ServeServer
from tests.hostile import Hostile, corpus

pytestmark = [pytest.mark.serve, pytest.mark.timeout(900)]

ROUTES = {"xray": "/v1/xray/predict", "sepsis": "/v1/sepsis/lstm/predict"}
DEADLINE_S = 30.0
REPLICAS = (("xray", "pneumonia-cnn"), ("sepsis", "sepsis-lstm"))
#: Replica RSS may rise to its allocator's high-water mark in the first pass; after that, no growth.
RSS_SLACK_MB = 150.0


@pytest.fixture(scope="module")
def items() -> list[Hostile]:
    return list(corpus())


def _post(url: str, item: Hostile) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = httpx.post(url + ROUTES[item.route], files={"file": (item.name, item.data)}, timeout=120)
    return response, time.perf_counter() - start


def _check(item: Hostile, response: httpx.Response, seconds: float) -> str | None:
    """What is wrong with this answer, or None."""
    if seconds > DEADLINE_S:
        return f"{item.name}: answered after {seconds:.1f} s"
    if response.status_code == 200 and item.ood_ok:
        body = response.json()
        return None if body.get("in_distribution") is False else f"{item.name}: 200 without the OOD flag"
    if response.status_code not in item.statuses:
        return f"{item.name}: {response.status_code} (expected {sorted(item.statuses)[:4]}…) {response.text[:200]}"
    body = response.json()
    if not body.get("error") or len(body.get("detail", "")) < 20:
        return f"{item.name}: an error without a kind or a detail that names the problem: {body}"
    return None


@pytest.fixture(scope="module")
def first_pass(serve_server: ServeServer, items: list[Hostile]) -> Iterator[tuple[list[str], dict[str, float]]]:
    """One pass over the corpus: what was wrong with each answer, then each model replica's memory."""
    problems = [p for item in items if (p := _check(item, *_post(serve_server.url, item)))]
    yield problems, {route: serve_server.rss_mb(f"ServeReplica:{name}") for route, name in REPLICAS}


def test_every_hostile_file_gets_a_named_4xx_in_time(
    items: list[Hostile], first_pass: tuple[list[str], dict[str, float]]
) -> None:
    problems, _ = first_pass
    assert not problems, "\n".join(problems)
    assert len(items) >= 60  # the pydicom-data DICOMs are in


def test_the_replicas_memory_does_not_grow(
    serve_server: ServeServer, items: list[Hostile], first_pass: tuple[list[str], dict[str, float]]
) -> None:
    for _ in range(2):
        for item in items:
            assert _post(serve_server.url, item)[0].status_code < 500, item.name
    after = {route: serve_server.rss_mb(f"ServeReplica:{name}") for route, name in REPLICAS}
    for route, before in first_pass[1].items():
        assert before > 0, f"no {route} replica found"
        assert after[route] - before < RSS_SLACK_MB, f"{route} replica RSS {before:.0f} -> {after[route]:.0f} MB"
    assert MedLensClient(serve_server.url).health().status == "ok"
