"""The mark every synthetic image carries, in one place (no torch: the loader, serving and the client read it).

A PNG text chunk ``MedLens-Synthetic: <generator version>; seed=<seed>; label=<label>`` (written by
models/synthetic.py, also sent as the ``X-MedLens-Synthetic`` header of ``POST /v1/synthetic/xray``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.catalogue import MAX_SEED

#: the PNG text chunk's key
MARK_KEY = "MedLens-Synthetic"
_MARK = re.compile(r"^(?P<version>[A-Za-z0-9._-]{1,40}); seed=(?P<seed>\d{1,19}); label=(?P<label>[A-Z_]{1,20})$")


@dataclass(frozen=True)
class SyntheticMark:
    """What the mark says: which generator version, seed and label made the image."""

    version: str
    seed: int
    label: str

    def text(self) -> str:
        return f"{self.version}; seed={self.seed}; label={self.label}"

    @classmethod
    def parse(cls, text: str) -> SyntheticMark | None:
        """The mark, or None when ``text`` is not one MedLens wrote (it came with an upload: never trusted)."""
        match = _MARK.match(text)
        if match is None or int(match["seed"]) > MAX_SEED:
            return None
        return cls(match["version"], int(match["seed"]), match["label"])


__all__ = ["MARK_KEY", "SyntheticMark"]
