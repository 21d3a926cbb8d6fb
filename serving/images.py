"""Gray images as the HTTP API carries them (base64 8-bit PNG: ``heatmap_png``, ``preview_png``), and the
area-average resize both serving (previews) and the dashboard (display) use. numpy and Pillow only."""

from __future__ import annotations

import base64
import io

import numpy as np
import numpy.typing as npt
from PIL import Image

FloatImage = npt.NDArray[np.float32]


def resize(pixels: npt.NDArray[np.floating], shape: tuple[int, int]) -> FloatImage:
    """Area-average (box) resize of an (H, W) float image to ``shape`` = (rows, columns)."""
    rows, cols = shape
    if pixels.shape == (rows, cols):
        return pixels.astype(np.float32)
    image = Image.fromarray(pixels.astype(np.float32), mode="F").resize((cols, rows), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32)


def downsample(pixels: npt.NDArray[np.floating], max_side: int) -> FloatImage:
    """Area-average resize so that the longer side is at most ``max_side`` pixels."""
    height, width = pixels.shape
    scale = max(height, width) / float(max_side)
    if scale <= 1.0:
        return pixels.astype(np.float32)
    return resize(pixels, (max(1, round(height / scale)), max(1, round(width / scale))))


def encode_gray_png(values: npt.NDArray[np.floating]) -> str:
    """(H, W) float in [0, 1] -> base64 of an 8-bit grayscale PNG of the same size."""
    gray = np.clip(np.nan_to_num(values, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)  # (H, W)
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buffer, format="PNG", optimize=False, compress_level=3)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_gray_png(png: str) -> FloatImage:
    """Base64 8-bit gray PNG (``heatmap_png``, ``preview_png``) -> (H, W) float32 in [0, 1]."""
    with Image.open(io.BytesIO(base64.b64decode(png))) as image:
        gray = np.asarray(image.convert("L"), dtype=np.float32)
    return gray / 255.0


__all__ = ["FloatImage", "decode_gray_png", "downsample", "encode_gray_png", "resize"]
