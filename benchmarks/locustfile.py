"""Locust scenario modelling real MedLens use (127.0.0.1 only; bounded users and duration).

    .venv/bin/locust -f benchmarks/locustfile.py --headless -u 16 -r 4 -t 60s \
        --host http://127.0.0.1:8000 --csv docs/load/mixed --html docs/load/mixed.html

Mix (by user weight): reviewers uploading chest X-rays (1 in 5 with a Grad-CAM explanation),
clinicians scoring hourly ICU records of realistic length with both sepsis models (1 in 10
explained), and dashboard readers of model metrics and the service page. Files are real, from
MEDLENS_DATA_DIR. Set MEDLENS_API_TOKEN if serving requires a token.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, between, task

from models.catalogue import MODEL_NAMES, models_for
from models.config import data_paths

_rng = random.Random(0)


def _load_xrays(limit: int = 40) -> list[tuple[str, bytes]]:
    paths: list[Path] = []
    for cls in ("NORMAL", "PNEUMONIA"):
        folder = data_paths().xray_train / cls
        if folder.is_dir():
            paths += sorted(folder.iterdir())[: limit // 2]
    if not paths:
        raise SystemExit(f"no chest X-rays under {data_paths().xray_train}: set MEDLENS_DATA_DIR")
    return [(p.name, p.read_bytes()) for p in paths]


def _load_records(limit: int = 30, min_hours: int = 24) -> list[tuple[str, bytes]]:
    folder = data_paths().sepsis_training
    out: list[tuple[str, bytes]] = []
    for path in sorted(folder.glob("*.psv")):
        data = path.read_bytes()
        if data.count(b"\n") - 1 >= min_hours:
            out.append((path.name, data))
        if len(out) >= limit:
            break
    if not out:
        raise SystemExit(f"no PhysioNet records under {folder}: set MEDLENS_DATA_DIR")
    return out


XRAYS = _load_xrays()
RECORDS = _load_records()
_TOKEN = os.environ.get("MEDLENS_API_TOKEN")
SEPSIS_MODELS = models_for("series", task="sepsis")
HEADERS = {"Authorization": f"Bearer {_TOKEN}"} if _TOKEN else {}


class XrayReviewer(HttpUser):
    weight = 3
    wait_time = between(0.5, 2.0)

    @task
    def review(self) -> None:
        name, data = _rng.choice(XRAYS)
        explain = _rng.random() < 0.2
        self.client.post(
            "/v1/xray/predict",
            params={"explain": "true"} if explain else None,
            files={"file": (name, data, "image/jpeg")},
            headers=HEADERS,
            name="POST /v1/xray/predict" + (" (explain)" if explain else ""),
        )


class SepsisClinician(HttpUser):
    weight = 2
    wait_time = between(1.0, 3.0)

    @task
    def score(self) -> None:
        name, data = _rng.choice(RECORDS)
        explain = _rng.random() < 0.1
        for model in SEPSIS_MODELS:
            self.client.post(
                model.predict_route,
                params={"explain": "true"} if explain else {},
                files={"file": (name, data, "text/plain")},
                headers=HEADERS,
                name=f"POST {model.predict_route}" + (" (explain)" if explain else ""),
            )


class DashboardReader(HttpUser):
    weight = 1
    wait_time = between(2.0, 5.0)

    @task(3)
    def metrics(self) -> None:
        model = _rng.choice(MODEL_NAMES)
        self.client.get(f"/v1/models/{model}/metrics", headers=HEADERS, name="GET /v1/models/{name}/metrics")

    @task(2)
    def models(self) -> None:
        self.client.get("/v1/models", headers=HEADERS, name="GET /v1/models")

    @task(1)
    def service(self) -> None:
        self.client.get("/v1/service", headers=HEADERS, name="GET /v1/service")
