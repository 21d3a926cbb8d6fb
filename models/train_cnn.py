"""Train the chest X-ray CNN from scratch on a ``<root>/<CLASS>/*`` folder."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.backends import training_precision
from models.catalogue import models_for
from models.checkpoint import CheckpointMeta, save_checkpoint
from models.cnn import CnnConfig, PneumoniaCNN, resize_gray
from models.metrics import threshold_below
from models.xray_io import CLASS_NAMES, labelled_images, load_xray_file, patient_id

CACHE_SIZE = 224
#: share of patients per class held out for validation (and for the threshold), unless --val-fraction says otherwise
VAL_FRACTION = 0.15


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def patient_split(paths: list[Path], labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of validation images; whole patients go to one side, stratified by class."""
    rng = np.random.default_rng(seed)
    val = np.zeros(len(paths), dtype=bool)
    for cls in (0, 1):
        idx = np.flatnonzero(labels == cls)
        patients = sorted({patient_id(paths[i]) for i in idx})
        rng.shuffle(patients)
        chosen = set(patients[: max(1, round(len(patients) * val_fraction))])
        val[idx] = [patient_id(paths[i]) in chosen for i in idx]
    return val


def load_cache(items: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(items), CACHE_SIZE, CACHE_SIZE), dtype=np.uint8)  # (N, 224, 224)
    labels = np.empty(len(items), dtype=np.int64)
    for i, (path, label) in enumerate(tqdm(items, desc="decode", unit="img")):
        images[i] = np.round(resize_gray(load_xray_file(path).pixels, CACHE_SIZE) * 255.0)
        labels[i] = label
    return images, labels


#: What :func:`augment` does, for the model card.
AUGMENTATION = (
    "rotation ±12°, scale 0.78-1.08, aspect ±12%, shift ±8% (border: edge pixels or black, half each), "
    "Gaussian blur (σ 0.3-1.5 px) or unsharp masking (amount 0.3-1.5) on 30% of the images each, "
    "histogram equalisation on 10%, "
    "gamma, contrast, brightness, noise, cut-out"
)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(1, 1, S, S) -> the same, blurred with a separable Gaussian of ``sigma`` pixels (edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """(1, S, S) in [0, 1] -> histogram-equalised: each pixel becomes the fraction of pixels at or below it."""
    flat = x.flatten()
    ranks = torch.searchsorted(torch.sort(flat).values, flat, right=True)  # (S * S,)
    return (ranks.to(x.dtype) / flat.numel()).view_as(x)


def augment(batch: torch.Tensor, out_size: int, gen: torch.Generator) -> torch.Tensor:
    """(B, 1, 224, 224) uint8 -> (B, 1, S, S) float in [0, 1] with random geometry, processing and intensity."""
    b = batch.shape[0]
    x = batch.float() / 255.0

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    angle = u(-12, 12) * math.pi / 180
    scale = u(0.78, 1.08)
    aspect = torch.exp(u(-0.12, 0.12))
    sx, sy = scale * aspect, scale / aspect
    tx, ty = u(-0.08, 0.08), u(-0.08, 0.08)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([sx * cos, -sy * sin, tx], 1), torch.stack([sx * sin, sy * cos, ty], 1)], 1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, 1, out_size, out_size], align_corners=False)  # (B, S, S, 2)
    # Where the view leaves the film: edge pixels repeated for half the images, black (collimation, a
    # padded export) for the other half.
    black = torch.rand(b, generator=gen) < 0.5
    out = torch.empty(b, 1, out_size, out_size)
    for mask, padding in ((black, "zeros"), (~black, "border")):
        if mask.any():
            out[mask] = F.grid_sample(x[mask], grid[mask], mode="bilinear", padding_mode=padding, align_corners=False)
    x = out  # (B, 1, S, S)
    # Detector and export processing differ between machines: soft (blurred), edge-enhanced (unsharp mask)
    # or histogram-equalised for display.
    kind = torch.rand(b, generator=gen)
    sigma, amount = u(0.3, 1.5), u(0.3, 1.5)
    for i in range(b):
        if kind[i] < 0.3:
            x[i : i + 1] = _gaussian_blur(x[i : i + 1], float(sigma[i]))
        elif kind[i] < 0.6:
            soft = _gaussian_blur(x[i : i + 1], 1.0 + float(sigma[i]) / 1.5)
            x[i : i + 1] = x[i : i + 1] + float(amount[i]) * (x[i : i + 1] - soft)
        elif kind[i] < 0.7:
            x[i] = _equalize(x[i])
    x = x.clamp(0.0, 1.0)
    gamma = torch.exp(u(-0.3, 0.3)).view(b, 1, 1, 1)
    x = x.clamp(1e-4, 1.0) ** gamma
    contrast = u(0.75, 1.25).view(b, 1, 1, 1)
    brightness = u(-0.08, 0.08).view(b, 1, 1, 1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    x = x + 0.02 * torch.rand(b, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    # Cut-out: hide a random box in half of the images (markers, tubes, borders are not the signal).
    for i in torch.nonzero(torch.rand(b, generator=gen) < 0.5).flatten().tolist():
        h = int(out_size * float(u(0.1, 0.3)[0]))
        y0 = int(torch.randint(0, out_size - h, (1,), generator=gen))
        x0 = int(torch.randint(0, out_size - h, (1,), generator=gen))
        x[i, :, y0 : y0 + h, x0 : x0 + h] = mean[i]
    return x.clamp(0.0, 1.0)


@torch.no_grad()
def predict_cached(model: PneumoniaCNN, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Probabilities for cached (N, 224, 224) uint8 images, pre-processed as at inference, in float32 (the
    threshold is chosen on them: not on a faster path's rounding)."""
    cfg = model.config
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        x = torch.from_numpy(np.stack([resize_gray(im / 255.0, cfg.image_size) for im in chunk]))
        x = ((x.unsqueeze(1) - cfg.mean) / cfg.std).contiguous(memory_format=torch.channels_last)  # (b, 1, S, S)
        out.append(torch.sigmoid(model(x).float()).numpy())
    return np.concatenate(out)


def cnn_model_name(name: str) -> str:
    """``name`` when the catalogue has it as an image model built by this module (architecture "cnn"); else a
    ``ValueError`` that names the models that are."""
    cnns = [e.name for e in models_for(input_kind="image") if e.architecture == "cnn"]
    if name not in cnns:
        raise ValueError(f"{name!r} is not an image CNN of the catalogue (models/catalogue.py): {', '.join(cnns)}")
    return name


def check_target_sensitivity(value: float) -> float:
    """``value`` when the sensitivity-first rule can reach it, in (0, 1]; else a ``ValueError`` that says so."""
    if not 0 < value <= 1:
        raise ValueError(
            f"the target sensitivity must lie in (0, 1], a share of the positives (0.95, not 95); got {value}"
        )
    return value


#: How :func:`sensitivity_first_threshold` places the threshold, for the checkpoint and the model card.
THRESHOLD_PLACEMENT = "midway between the lowest score it keeps positive and the next lower score, in float32"


def sensitivity_first_threshold(y: np.ndarray, prob: np.ndarray, target_sensitivity: float) -> float:
    """Highest threshold whose sensitivity on ``y`` is still >= the target (best specificity there).

    The threshold is no score itself: it lies midway between the lowest positive score that must stay positive
    and the next lower distinct score of any item, both taken in float32 (what the predictors return). Every
    item at or above that score stays positive, and every item below it negative, whether its score is
    computed in float64 or in float32 (a score moves to the other side only if it moves by half the gap to its
    neighbour). With no lower score it lies midway between that score and 0 (everything is flagged)."""
    pos = np.sort(prob[y == 1])
    k = math.floor((1.0 - target_sensitivity) * len(pos))
    return threshold_below(prob, float(pos[min(k, len(pos) - 1)]))


@dataclass
class CnnTrainResult:
    meta: CheckpointMeta
    y_val: np.ndarray
    prob_val: np.ndarray
    n_train: int
    n_val: int
    n_val_patients: int
    history: list[dict[str, float]]
    seconds: float
    bf16: bool  # trained under bfloat16 autocast (else float32)
    precision_probe_s: dict[str, float]  # seconds per step of each, measured at the start ({}: chosen by hand)


def choose_cnn_precision(
    model: PneumoniaCNN, batch_size: int, image_size: int, requested: str = "auto"
) -> tuple[bool, dict[str, float]]:
    """bf16 autocast or float32 for a training step of ``model``, as ``requested`` or, "auto", as measured on this
    machine (:func:`models.backends.training_precision`), with the seconds per step of each."""
    x = torch.rand(batch_size, 1, image_size, image_size).contiguous(memory_format=torch.channels_last)

    def step(bf16: bool) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(x).float().mean()

    return training_precision(step, requested, (model,))


def train_cnn(
    data: Path,
    out: Path,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    lr: float,
    val_fraction: float,
    target_sensitivity: float,
    config: CnnConfig,
    limit: int | None = None,
    split_seed: int | None = None,
    precision: Literal["auto", "fp32", "bf16"] = "auto",
    name: str = "cnn",
) -> CnnTrainResult:
    """Train one CNN for catalogue model ``name`` (an image model whose architecture is "cnn"; the checkpoint's
    kind and version name it). ``seed`` drives initialisation, batch order and augmentation; ``split_seed``
    (default: ``seed``) chooses the held-out patients, so ensemble members share one validation split.
    ``precision``: "auto" trains under bfloat16 autocast where a step measures faster than float32 here."""
    kind = cnn_model_name(name)  # before training, like the target sensitivity
    check_target_sensitivity(target_sensitivity)  # before training: the threshold is chosen after the last epoch
    seed_everything(seed)
    started = time.time()
    items = labelled_images(data)
    if limit:
        rng = random.Random(seed if split_seed is None else split_seed)  # the data, like the split
        items = rng.sample(items, min(limit, len(items)))
    paths = [p for p, _ in items]
    images, labels = load_cache(items)
    val_mask = patient_split(paths, labels, val_fraction, seed if split_seed is None else split_seed)
    x_train, y_train = images[~val_mask], labels[~val_mask]
    x_val, y_val = images[val_mask], labels[val_mask]
    sample = x_train[:: max(1, len(x_train) // 500)].astype(np.float32) / 255.0
    config = config.model_copy(update={"mean": float(sample.mean()), "std": float(sample.std() + 1e-6)})

    model = PneumoniaCNN(config).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    bf16, probe = choose_cnn_precision(model, batch_size, config.image_size, precision)
    tqdm.write(f"precision: {'bfloat16 autocast' if bf16 else 'float32'} (measured s per step: {probe})")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    n_pos = int(y_train.sum())
    n_neg = len(y_train) - n_pos
    # Class balance: each class contributes half of the loss.
    w_pos, w_neg = len(y_train) / (2 * max(n_pos, 1)), len(y_train) / (2 * max(n_neg, 1))
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x_train).unsqueeze(1)  # (N, 1, 224, 224) uint8
    yt = torch.from_numpy(y_train).float()
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"cnn epoch {epoch + 1}/{epochs}", unit="batch")
        for step in bar:
            idx = order[step * batch_size : (step + 1) * batch_size]
            xb = augment(xt[idx], config.image_size, gen)
            xb = ((xb - config.mean) / config.std).contiguous(memory_format=torch.channels_last)
            yb = yt[idx]
            target = yb * 0.95 + 0.025  # label smoothing: keeps probabilities off the rails
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(xb)
            weights = torch.where(yb > 0.5, w_pos, w_neg)
            loss = F.binary_cross_entropy_with_logits(logits.float(), target, weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        entry = {"epoch": epoch + 1, "train_loss": total / len(xt)}
        if len(x_val) and (epoch + 1 == epochs or (epoch + 1) % 5 == 0):
            from sklearn.metrics import roc_auc_score

            entry["val_auroc"] = float(roc_auc_score(y_val, predict_cached(model, x_val)))
        history.append(entry)
        tqdm.write(str(entry))

    prob_val = predict_cached(model, x_val)
    threshold = sensitivity_first_threshold(y_val, prob_val, target_sensitivity)
    meta = CheckpointMeta(
        kind=kind,
        version=time.strftime(f"{kind}-%Y%m%d"),
        task="chest X-ray pneumonia (NORMAL vs PNEUMONIA)",
        labels=list(CLASS_NAMES),
        threshold=threshold,
        config=config.model_dump(mode="json"),
        preprocessing={
            "input": "grayscale in [0, 1] (DICOM: modality LUT, VOI LUT/window, MONOCHROME1 inverted)",
            "resize": f"squash to {config.image_size}x{config.image_size}, bilinear (as the training data)",
            "normalise": {"mean": config.mean, "std": config.std},
            "threshold_rule": f"highest threshold with validation sensitivity >= {target_sensitivity} "
            f"({THRESHOLD_PLACEMENT})",
        },
    )
    save_checkpoint(out, meta, model.state_dict())
    np.savez_compressed(out / "validation_predictions.npz", y=y_val, prob=prob_val)
    return CnnTrainResult(
        meta=meta,
        y_val=y_val,
        prob_val=prob_val,
        n_train=len(x_train),
        n_val=len(x_val),
        n_val_patients=len({patient_id(paths[i]) for i in np.flatnonzero(val_mask)}),
        history=history,
        seconds=time.time() - started,
        bf16=bf16,
        precision_probe_s=probe,
    )
