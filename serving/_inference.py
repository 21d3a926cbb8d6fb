"""The work a model replica does, free of Ray: decode a batch of uploads, run one forward pass,
build the response schemas. The Ray deployments in :mod:`serving.app` wrap these runners.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.errors import MedLensInputError, PayloadTooLargeError, WeightsError
from models.inference import SepsisPredictor, XrayPredictor, resolve_device
from models.sepsis_io import FEATURES, SepsisRecord, parse_series_bytes
from models.xray_io import XrayImage, load_xray_bytes
from serving._protocol import ItemError, Upload, input_error, model_failure, undecodable
from serving.schemas import (
    FeatureContribution,
    HeadlineMetrics,
    HourRisk,
    ModelInfo,
    ModelMetrics,
    SepsisPrediction,
    XrayPrediction,
)

logger = logging.getLogger("ray.serve")

MIN_SERIES_HOURS = 2
TOP_FEATURES = 5
#: After this many consecutive batches that failed inside the model, check_health reports the replica
#: unhealthy and Ray Serve replaces it.
MAX_CONSECUTIVE_FAILURES = 3
_ICULOS = FEATURES.index("ICULOS")


def replica_device(gpu_ids: Sequence[object]) -> torch.device:
    """CUDA only when Ray gave this replica a GPU (``ray_actor_options.num_gpus`` > 0), else CPU."""
    return resolve_device("auto" if len(gpu_ids) > 0 else "cpu")


def device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda:N`` (an index even when torch was given plain ``cuda``)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}"
    return device.type


def configure_torch(threads: int) -> None:
    """Deliberate thread counts: replicas share the machine's cores with each other."""
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already ran here
        torch.set_num_interop_threads(1)


class _Runner:
    """``predictor`` serves batched predictions; ``explainer``, a second copy of the same checkpoint,
    serves explanations (they hook the model and take seconds), so a replica can run both at once
    and a batch of predictions never waits behind an explanation."""

    predictor: XrayPredictor | SepsisPredictor

    def __init__(self) -> None:
        self.consecutive_failures = 0

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures < MAX_CONSECUTIVE_FAILURES

    def info(self) -> ModelInfo:
        p = self.predictor
        return ModelInfo(
            name=p.meta.kind,
            version=p.meta.version,
            task=p.meta.task,
            device=device_name(p.device),
            threshold=p.meta.threshold,
            labels=list(p.meta.labels),
            headline=None if p.card is None else HeadlineMetrics.from_card(p.card),
        )

    def metrics(self) -> ModelMetrics | None:
        card = self.predictor.card
        return None if card is None else ModelMetrics.from_card(card)

    def _record(self, ok: bool) -> None:
        self.consecutive_failures = 0 if ok else self.consecutive_failures + 1


# ----------------------------------------------------------------------------------------------------------
# chest X-ray CNN
# ----------------------------------------------------------------------------------------------------------
class XrayRunner(_Runner):
    def __init__(self, weights: Path, device: torch.device, bf16: bool = True) -> None:
        super().__init__()
        self.predictor = XrayPredictor(weights, str(device), bf16=bf16 and _bf16_ok(device))
        self.explainer = XrayPredictor(weights, str(device), bf16=bf16 and _bf16_ok(device))
        self._warm_up()

    def _warm_up(self) -> None:
        """One tiny forward pass: compiles kernels and proves the checkpoint runs with today's code."""
        try:
            self.predictor.predict([np.zeros((64, 64), dtype=np.float32)])
        except Exception as exc:
            raise WeightsError(
                f"The CNN checkpoint in {self.predictor.weights_dir} does not run with the current model code "
                f"({type(exc).__name__}: {exc}); retrain it with `python -m models.train cnn`."
            ) from exc

    def predict_batch(self, uploads: Sequence[Upload]) -> list[XrayPrediction | ItemError]:
        """Decode every upload, then one forward pass over the decodable ones."""
        results: list[XrayPrediction | ItemError | None] = [None] * len(uploads)
        decoded: list[tuple[int, XrayImage]] = []
        for i, upload in enumerate(uploads):
            image = self._decode(upload)
            if isinstance(image, ItemError):
                results[i] = image
            else:
                decoded.append((i, image))
        if decoded:
            probs = self._forward([img.pixels for _, img in decoded])
            for (i, img), prob in zip(decoded, probs, strict=True):
                results[i] = prob if isinstance(prob, ItemError) else self._response(img, prob, None)
        return [r for r in results if r is not None]

    def explain_one(self, upload: Upload) -> XrayPrediction | ItemError:
        image = self._decode(upload)
        if isinstance(image, ItemError):
            return image
        try:
            prob = float(self.explainer.predict([image.pixels])[0])
            heat = self.explainer.explain(image.pixels)  # (H, W) in [0, 1]
        except Exception as exc:
            self._record(False)
            return model_failure(exc, "cnn")
        self._record(True)
        return self._response(image, prob, encode_heatmap(heat))

    def _decode(self, upload: Upload) -> XrayImage | ItemError:
        try:
            return load_xray_bytes(upload.data, upload.filename)
        except MedLensInputError as exc:
            return input_error(exc)
        except Exception as exc:
            return undecodable(exc, "image")

    def _forward(self, images: list[np.ndarray]) -> list[float | ItemError]:
        """One batched pass; if it fails, each image alone, so one bad item cannot fail the others."""
        try:
            probs = self.predictor.predict(images)  # (batch,)
            self._record(True)
            return [float(p) for p in probs]
        except Exception as batch_exc:
            if len(images) == 1:
                self._record(False)
                return [model_failure(batch_exc, "cnn")]
        out: list[float | ItemError] = []
        for image in images:
            try:
                out.append(float(self.predictor.predict([image])[0]))
            except Exception as exc:
                out.append(model_failure(exc, "cnn"))
        self._record(any(not isinstance(o, ItemError) for o in out))
        return out

    def _response(self, image: XrayImage, prob: float, heatmap_png: str | None) -> XrayPrediction:
        p = self.predictor
        prob = min(1.0, max(0.0, prob))
        height, width = image.size
        return XrayPrediction(
            model="cnn",
            version=p.meta.version,
            probability=prob,
            label="PNEUMONIA" if prob >= p.threshold else "NORMAL",
            threshold=p.threshold,
            image_width=width,
            image_height=height,
            source_format=image.source_format,
            heatmap_png=heatmap_png,
            dicom=dict(image.dicom_fields) if image.source_format == "dicom" else None,
        )


def _bf16_ok(device: torch.device) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return True


def encode_heatmap(heat: np.ndarray) -> str:
    """(H, W) float in [0, 1] -> base64 of an 8-bit grayscale PNG of the same size."""
    gray = np.clip(np.nan_to_num(heat, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)  # (H, W)
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buffer, format="PNG", optimize=False, compress_level=3)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------------------------------------
# ICU sepsis sequence models (LSTM, Transformer)
# ----------------------------------------------------------------------------------------------------------
class SequenceRunner(_Runner):
    def __init__(self, kind: str, weights: Path, device: torch.device, explain_max_hours: int = 400) -> None:
        super().__init__()
        if kind not in {"lstm", "transformer"}:
            raise ValueError(f"unknown sequence model {kind!r}: choose lstm or transformer")
        self.kind = kind
        self.predictor = SepsisPredictor(kind, weights, str(device))
        self.explainer = SepsisPredictor(kind, weights, str(device))
        self.explain_max_hours = explain_max_hours
        self._warm_up()

    @property
    def sepsis(self) -> SepsisPredictor:
        assert isinstance(self.predictor, SepsisPredictor)
        return self.predictor

    def _warm_up(self) -> None:
        values = np.full((3, len(FEATURES)), np.nan, dtype=np.float32)  # (hours, 40)
        values[:, _ICULOS] = [1, 2, 3]
        try:
            self.sepsis.predict([values])
        except Exception as exc:
            raise WeightsError(
                f"The {self.kind} checkpoint in {self.sepsis.weights_dir} does not run with the current model "
                f"code ({type(exc).__name__}: {exc}); retrain it with `python -m models.train {self.kind}`."
            ) from exc

    def predict_batch(self, uploads: Sequence[Upload]) -> list[SepsisPrediction | ItemError]:
        """Parse every upload, then one padded forward pass over the valid, variable-length series."""
        results: list[SepsisPrediction | ItemError | None] = [None] * len(uploads)
        parsed: list[tuple[int, SepsisRecord]] = []
        for i, upload in enumerate(uploads):
            record = self._parse(upload, self.sepsis.max_hours)
            if isinstance(record, ItemError):
                results[i] = record
            else:
                parsed.append((i, record))
        if parsed:
            risks = self._forward([r.values for _, r in parsed])
            for (i, record), risk in zip(parsed, risks, strict=True):
                results[i] = risk if isinstance(risk, ItemError) else self._response(record, risk, None)
        return [r for r in results if r is not None]

    def explain_one(self, upload: Upload) -> SepsisPrediction | ItemError:
        record = self._parse(upload, min(self.sepsis.max_hours, self.explain_max_hours), explain=True)
        if isinstance(record, ItemError):
            return record
        try:
            risk = self.explainer.predict([record.values])[0]  # (hours,)
            attribution = self.explainer.explain(record.values)  # (hours, 40)
        except Exception as exc:
            self._record(False)
            return model_failure(exc, self.kind)
        self._record(True)
        return self._response(record, risk, attribution)

    def _parse(self, upload: Upload, max_hours: int, explain: bool = False) -> SepsisRecord | ItemError:
        try:
            record = parse_series_bytes(
                upload.data, upload.filename, min_hours=MIN_SERIES_HOURS, on_impossible="reject"
            )
        except MedLensInputError as exc:
            return input_error(exc)
        except Exception as exc:
            return undecodable(exc, "time series")
        if record.hours > max_hours:
            what = "explanations are" if explain else f"the {self.kind} model is"
            hint = " Ask without explain=true, or upload" if explain else " Upload"
            return input_error(
                PayloadTooLargeError(
                    f"{upload.filename} has {record.hours} hourly rows; {what} limited to {max_hours}."
                    f"{hint} the most recent {max_hours} hours."
                )
            )
        return record

    def _forward(self, records: list[np.ndarray]) -> list[np.ndarray | ItemError]:
        try:
            risks = self.sepsis.predict(records)  # list of (hours_i,)
            self._record(True)
            return list(risks)
        except Exception as batch_exc:
            if len(records) == 1:
                self._record(False)
                return [model_failure(batch_exc, self.kind)]
        out: list[np.ndarray | ItemError] = []
        for values in records:
            try:
                out.append(self.sepsis.predict([values])[0])
            except Exception as exc:
                out.append(model_failure(exc, self.kind))
        self._record(any(not isinstance(o, ItemError) for o in out))
        return out

    def _response(self, record: SepsisRecord, risk: np.ndarray, attribution: np.ndarray | None) -> SepsisPrediction:
        """``risk``: (hours,) probabilities; ``attribution``: (hours, 40) or None."""
        threshold = self.sepsis.threshold
        last_seen = forward_fill(record.values) if attribution is not None else None  # (hours, 40)
        hours: list[HourRisk] = []
        for t in range(record.hours):
            iculos = float(record.values[t, _ICULOS])
            top: list[FeatureContribution] | None = None
            if attribution is not None and last_seen is not None:
                top = top_features(attribution[t], last_seen[t])
            prob = float(risk[t])
            hours.append(
                HourRisk(
                    hour=t,
                    iculos=iculos if np.isfinite(iculos) else None,
                    probability=prob,
                    label=int(prob >= threshold),
                    top_features=top,
                )
            )
        alerts = np.flatnonzero(np.asarray(risk) >= threshold)
        return SepsisPrediction(
            model=self.sepsis.meta.kind,  # "lstm" | "transformer", checked in __init__
            version=self.sepsis.meta.version,
            threshold=threshold,
            n_hours=record.hours,
            first_alert_hour=int(alerts[0]) if alerts.size else None,
            hours=hours,
            warnings=list(record.warnings),
        )


def forward_fill(values: np.ndarray) -> np.ndarray:
    """(hours, F) with NaN -> (hours, F): each cell holds the last observed value at or before that hour."""
    hours = values.shape[0]
    observed = ~np.isnan(values)
    idx = np.where(observed, np.arange(hours)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)  # (hours, F)
    filled = np.take_along_axis(values, np.maximum(last, 0), axis=0)
    return np.where(last >= 0, filled, np.nan)


def top_features(attribution: np.ndarray, last_values: np.ndarray, k: int = TOP_FEATURES) -> list[FeatureContribution]:
    """``attribution``, ``last_values``: (40,) for one hour -> the k features with the largest |attribution|."""
    order = np.argsort(-np.abs(attribution), kind="stable")[:k]
    return [
        FeatureContribution(
            feature=FEATURES[j],
            attribution=float(attribution[j]),
            value=float(last_values[j]) if np.isfinite(last_values[j]) else None,
        )
        for j in order
    ]
