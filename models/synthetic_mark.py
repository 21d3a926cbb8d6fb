"""The marks every synthetic image carries, in one place (no torch: the loader, serving and the client read them).

- A PNG text chunk ``MedLens-Synthetic: <generator version>; seed=<seed>; label=<label>`` (written by
  models/synthetic.py, also sent as the ``X-MedLens-Synthetic`` header of ``POST /v1/synthetic/xray``).
- A black band across the top of the pixels with "SYNTHETIC" and "MedLens GAN - not a patient" burned in
  (:func:`burn_band`). A copy that lost the text chunk (re-saved, converted to JPEG, resized, a screenshot of the
  image alone) is still recognised by it (:func:`burned_band`). A copy cropped below the band is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _band_rows(side: int) -> int:
    return max(16, side // 9)


def burn_band(pixels: np.ndarray) -> np.ndarray:
    """(S, S) uint8 -> the same with the SYNTHETIC band burned into its top rows."""
    image = Image.fromarray(pixels, mode="L")
    side = image.width
    band = _band_rows(side)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, side, band), fill=0)
    big, small = _font(int(band * 0.55)), _font(max(8, int(band * 0.28)))
    draw.text((side / 2, band * 0.38), "SYNTHETIC", fill=255, font=big, anchor="mm")
    draw.text((side / 2, band * 0.82), "MedLens GAN - not a patient", fill=200, font=small, anchor="mm")
    return np.asarray(image)


#: The side the band is compared at: the generator's delivered side (models/synthetic.py OUTPUT_SIZE).
_TEMPLATE_SIDE = 256
#: The least correlation with the band, as drawn, that recognises it. Measured 2026-12-07 (docs/gan.md): a marked
#: image re-saved as JPEG (quality 95 to 40) or resized to 600-1024 px correlates 0.96-1.00, resized to 128 px
#: 0.74; 3,000 real radiographs of the shared data at most 0.36.
BAND_CORRELATION = 0.6


@lru_cache(maxsize=1)
def _template() -> np.ndarray:
    """(rows, 256) float32: the band as drawn at the delivered side, in [0, 1]."""
    rows = _band_rows(_TEMPLATE_SIDE)
    return burn_band(np.full((_TEMPLATE_SIDE, _TEMPLATE_SIDE), 128, np.uint8))[:rows].astype(np.float32) / 255.0


def band_correlation(pixels: np.ndarray) -> float:
    """(H, W) grayscale in [0, 1] -> the correlation of its top rows, at the band's height for its width and
    resampled to the delivered side, with the band as drawn: near 1 for a marked image however it was re-encoded
    or resized, low for a radiograph. 0 for an image far from square (the band spans a square image's width)."""
    height, width = pixels.shape
    if not 0.8 <= height / width <= 1.25 or width < 32:
        return 0.0
    template = _template()
    rows = max(2, round(width * template.shape[0] / _TEMPLATE_SIDE))
    top = Image.fromarray(np.clip(pixels[:rows] * 255.0, 0, 255).astype(np.uint8), mode="L")
    seen = np.asarray(top.resize((template.shape[1], template.shape[0]), Image.Resampling.BILINEAR), np.float32)
    seen, drawn = seen.ravel() - seen.mean(), template.ravel() - template.mean()
    scale = float(np.sqrt((seen**2).sum() * (drawn**2).sum()))
    return float((seen * drawn).sum() / scale) if scale > 0 else 0.0


def burned_band(pixels: np.ndarray) -> bool:
    """Whether the image (H, W) in [0, 1] carries the SYNTHETIC band (:func:`band_correlation` at least
    :data:`BAND_CORRELATION`)."""
    return band_correlation(pixels) >= BAND_CORRELATION


__all__ = ["BAND_CORRELATION", "MARK_KEY", "SyntheticMark", "band_correlation", "burn_band", "burned_band"]
