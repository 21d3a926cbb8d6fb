"""Acquisition shifts of a radiograph: how another scanner, exposure or export pipeline would alter it.

Used to check whether the CNN's operating point holds (scripts/cnn_shift_check.py, ``python -m
models.ensemble``). Each shift maps (H, W) [0, 1] pixels to (H, W) [0, 1] pixels.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter, ImageOps

Shift = Callable[[np.ndarray], np.ndarray]  # (H, W) [0, 1] -> (H, W) [0, 1]


def _pil(f: Callable[[Image.Image], Image.Image]) -> Shift:
    def run(a: np.ndarray) -> np.ndarray:
        image = Image.fromarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
        return np.asarray(f(image), dtype=np.float32) / 255.0

    return run


def _jpeg(quality: int) -> Shift:
    def encode(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(buffer).convert("L")

    return _pil(encode)


def _crop(fraction: float) -> Shift:
    def crop(image: Image.Image) -> Image.Image:
        w, h = image.size
        dx, dy = round(w * (1 - fraction) / 2), round(h * (1 - fraction) / 2)
        return image.crop((dx, dy, w - dx, h - dy)).resize((w, h), Image.Resampling.BILINEAR)

    return _pil(crop)


def _pad(fraction: float) -> Shift:
    def pad(image: Image.Image) -> Image.Image:
        w, h = image.size
        inner = image.resize((round(w / fraction), round(h / fraction)), Image.Resampling.BILINEAR)
        canvas = Image.new("L", (w, h), 0)
        canvas.paste(inner, ((w - inner.width) // 2, (h - inner.height) // 2))
        return canvas

    return _pil(pad)


def _contrast(factor: float) -> Shift:
    return lambda a: np.clip((a - a.mean()) * factor + a.mean(), 0.0, 1.0)


SHIFTS: dict[str, Shift] = {
    "none": lambda a: a,
    "JPEG quality 20": _jpeg(20),
    "Gaussian blur, radius 1.5 px": _pil(lambda im: im.filter(ImageFilter.GaussianBlur(1.5))),
    "unsharp mask (radius 2, 150 %)": _pil(lambda im: im.filter(ImageFilter.UnsharpMask(2, 150, 3))),
    "down to 96 px and back": _pil(lambda im: im.resize((96, 96)).resize(im.size)),
    "histogram equalisation": _pil(ImageOps.equalize),
    "gamma 0.6 (brighter)": lambda a: a**0.6,
    "gamma 1.6 (darker)": lambda a: a**1.6,
    "contrast x0.6": _contrast(0.6),
    "contrast x1.4": _contrast(1.4),
    "crop to the central 85 %": _crop(0.85),
    "pad: image shrunk to 87 %, black border": _pad(1.15),
}
