"""Where MedLens finds its data. One typed place for paths (default weights: models/catalogue.py)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
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

    @property
    def mortality(self) -> Path:
        """PhysioNet/CinC 2012: ``set-a/``, ``set-b/``, ``Outcomes-a.txt``, ``Outcomes-b.txt``."""
        return self.root / "mortality2012"


def data_dir() -> Path:
    """The real-data directory: ``$MEDLENS_DATA_DIR`` or ``../shared/data`` beside the repository."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def data_paths() -> DataPaths:
    return DataPaths(root=data_dir())
