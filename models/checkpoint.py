"""Checkpoints that carry what rebuilds them: kind, config, labels, threshold, preprocessing.

Layout of a weights directory: ``model.pt`` (torch, loadable with ``weights_only=True``),
``card.json`` (the model card, including the held-out evaluation) and ``card.md``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from models.catalogue import ModelName
from models.errors import WeightsError

CHECKPOINT_FILE = "model.pt"
CARD_JSON = "card.json"
CARD_MD = "card.md"


class CheckpointMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ModelName  # the catalogue name (models/catalogue.py)
    version: str
    task: str
    labels: list[str]
    threshold: float
    config: dict[str, Any]
    preprocessing: dict[str, Any]
    #: when not to trust it, written by ``python -m models.calibrate <model>``: CNN models/trust.py TrustSettings,
    #: sepsis models SepsisTrustSettings (the hourly calibrator)
    trust: dict[str, Any] | None = None


def weights_version(prefix: str, state_dict: dict[str, torch.Tensor]) -> str:
    """``<prefix>-<UTC date>-<8 hex digits of the weights' SHA-256>``: two sets of weights trained the same day
    have different versions (a card's figures, and a synthetic image's mark, name the weights they came from)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous().reshape(-1)  # (numel,): a 0-d tensor has no byte view
        digest.update(name.encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return f"{prefix}-{time.strftime('%Y%m%d', time.gmtime())}-{digest.hexdigest()[:8]}"


def save_checkpoint(directory: Path, meta: CheckpointMeta, state_dict: dict[str, torch.Tensor]) -> Path:
    """``directory/model.pt``, written whole to a temporary file beside it that then replaces it: a crash mid-write
    leaves the previous checkpoint intact."""
    from models.cli_args import write_atomically

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    state = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    blob = {"meta": meta.model_dump(mode="json"), "state_dict": state}
    write_atomically(path, lambda temporary: torch.save(blob, temporary))
    return path


def _check_features(path: Path, preprocessing: dict[str, Any]) -> None:
    """A sequence checkpoint's stored input columns must be those its schema builds today: the network reads its
    inputs by position, so columns in another order would be read as the wrong measurements."""
    if preprocessing.get("features") is None:
        return
    stored = [str(name) for name in preprocessing["features"]]
    from models.sequence import schema_of

    try:
        expected = list(schema_of(preprocessing).columns)
    except ValueError as exc:  # a schema this code does not know
        raise WeightsError(
            f"{path}: {exc}; retrain it with `python -m models.train` or pass another --weights DIR."
        ) from exc
    if stored == expected:
        return
    at = next(i for i in range(max(len(stored), len(expected))) if stored[i : i + 1] != expected[i : i + 1])
    ours, theirs = (repr(names[at]) if at < len(names) else "no column" for names in (stored, expected))
    what = f"the checkpoint has {ours}, the schema {theirs}"
    raise WeightsError(
        f"{path} stores {len(stored)} input columns that differ from the {len(expected)} of its schema "
        f"{preprocessing.get('schema', 'sepsis-v1')!r} from column {at} on ({what}): its network would read "
        "the wrong measurements. Retrain it with `python -m models.train` or pass another --weights DIR."
    )


def load_checkpoint(directory: Path, expected: str | None = None) -> tuple[CheckpointMeta, dict[str, Any]]:
    path = directory / CHECKPOINT_FILE if directory.is_dir() else directory
    if not path.is_file():
        raise WeightsError(f"No checkpoint at {path}: train one with `python -m models.train` or pass --weights DIR.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = CheckpointMeta.model_validate(blob["meta"])
        state = blob["state_dict"]
    except Exception as exc:  # torch / pickle / pydantic raise many types for a damaged file
        raise WeightsError(
            f"{path} is not a MedLens checkpoint this code can read ({type(exc).__name__}: {exc}); "
            "retrain it with `python -m models.train` or pass another --weights DIR."
        ) from exc
    if expected is not None and meta.kind != expected:
        raise WeightsError(
            f"{path} holds a {meta.kind} model, not a {expected} model: pass the --weights folder of a {expected} "
            f"checkpoint, or name the model that checkpoint is for."
        )
    _check_features(path, meta.preprocessing)
    return meta, state
