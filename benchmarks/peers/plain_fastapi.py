"""Peer 1: what a user writes by hand - FastAPI + uvicorn, one model call per request, no batching.

MEDLENS_BENCH_THREADS=2 .venv/bin/uvicorn benchmarks.peers.plain_fastapi:app --port 8101
"""

from __future__ import annotations

import os
from typing import Any

import torch
from fastapi import FastAPI, File, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from models.inference import SepsisPredictor, XrayPredictor
from models.sepsis_io import parse_series_bytes
from models.xray_io import load_xray_bytes

#: the execution path (models/backends.py) serving_peers chose for the ceiling: every server runs the same
BACKEND: Any = os.environ.get("MEDLENS_BENCH_BACKEND", "auto")

torch.set_num_threads(int(os.environ.get("MEDLENS_BENCH_THREADS", "2")))
app = FastAPI()
xray = XrayPredictor(device="cpu", backend=BACKEND)
sepsis = {name: SepsisPredictor(name, device="cpu", backend=BACKEND) for name in ("lstm", "transformer")}


@app.get("/healthz")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict(file: UploadFile = File(...)) -> dict[str, float]:
    data = await file.read()

    def run() -> float:
        return float(xray.predict([load_xray_bytes(data, "upload").pixels])[0])

    return {"probability": await run_in_threadpool(run)}


@app.post("/predict_sepsis")
async def predict_sepsis(file: UploadFile = File(...), model: str = Query("lstm")) -> dict[str, list[float]]:
    data = await file.read()

    def run() -> list[float]:
        record = parse_series_bytes(data, "upload.psv")
        return [float(p) for p in sepsis[model].predict([record.values])[0]]

    return {"probability": await run_in_threadpool(run)}
