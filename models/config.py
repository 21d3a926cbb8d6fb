"""Where MedLens finds its data and default weights. One typed place for paths."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DATA_DIR_ENV = "MEDLENS_DATA_DIR"


class DataPaths(BaseModel):
    """Locations inside the data directory (layout of ``../shared/data``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path

    @property
    def xray_train(self) -> Path:
        return self.root / "chest_xray" / "train"

    @property
    def xray_fullres(self) -> Path:
        return self.root / "chest_xray_fullres"

    @property
    def sepsis_training(self) -> Path:
        return self.root / "sepsis" / "training"


def data_dir() -> Path:
    """The real-data directory: ``$MEDLENS_DATA_DIR`` or ``../shared/data`` beside the repository."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def data_paths() -> DataPaths:
    return DataPaths(root=data_dir())


def default_weights(model: str) -> Path:
    """Directory of the committed default checkpoint for ``model`` (cnn, lstm, transformer)."""
    return WEIGHTS_DIR / model
