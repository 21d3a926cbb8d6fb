"""Shared helpers of the dashboard tests: schema objects, real data files."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from models.cards import read_card
from models.catalogue import MODEL_NAMES, entry
from models.config import data_paths
from models.metrics import binary_evaluation
from serving.schemas import ModelMetrics


def synthetic_metrics(seed: int = 0, n: int = 400) -> ModelMetrics:
    """A deterministic evaluation with both classes and a mid-range threshold."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    prob = np.clip(0.35 * y + rng.normal(0.35, 0.18, n), 0.0, 1.0)
    ev = binary_evaluation(y, prob, 0.5, max_points=120)
    return ModelMetrics(
        name="cnn",
        version="cnn-synthetic",
        dataset="synthetic validation set (tests)",
        created="2026-01-01 00:00 UTC",
        threshold=0.5,
        evaluation=ev,
    )


def card_metrics() -> list[ModelMetrics]:
    out = []
    for name in MODEL_NAMES:
        directory = entry(name).default_weights
        if (directory / "card.json").is_file():
            out.append(ModelMetrics.from_card(read_card(directory)))
    return out


def trace(fig: go.Figure, name_start: str) -> go.Scatter:
    """The first trace of ``fig`` whose name starts with ``name_start`` (fails, listing the names, if none)."""
    matches = [t for t in fig.data if (t.name or "").startswith(name_start)]
    assert matches, f"no trace named {name_start!r} in {[t.name for t in fig.data]}"
    return matches[0]


def gray_png(array: np.ndarray) -> str:
    """(H, W) [0, 1] -> base64 8-bit gray PNG, as serving encodes ``heatmap_png`` and ``preview_png``."""
    buffer = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def sha16(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def sepsis_dir() -> Path:
    return data_paths().sepsis_training


def septic_stays(limit: int = 2, min_hours: int = 30) -> list[Path]:
    """First septic stays (SepsisLabel 1 somewhere) of at least ``min_hours`` hours, sorted by name."""
    directory = sepsis_dir()
    found: list[Path] = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("p1*.psv")):
        lines = path.read_text().splitlines()
        if len(lines) - 1 >= min_hours and lines[-1].rsplit("|", 1)[-1].strip() == "1":
            found.append(path)
            if len(found) >= limit:
                break
    return found


def pneumonia_images(limit: int = 2) -> list[Path]:
    folder = data_paths().xray_train / "PNEUMONIA"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})[:limit]
