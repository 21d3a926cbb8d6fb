"""Real and generated images that are not chest radiographs, to measure an out-of-distribution detector.

* :func:`pydicom_images`: every DICOM of ``pydicom.data.get_testdata_files()`` that the MedLens loader
  decodes (single frame, at least 32 pixels a side), split into chest radiographs (``RG1_*``: a CR of the
  chest, in distribution or nearly) and the rest (CT, MR, US, NM, secondary captures, an extremity CR).
* :func:`generated_images`: images made in code with a fixed seed and passed through the loader as PNG
  bytes: natural-like textures and scenes, noise fields (8 and 16 bit), gradients, rendered pages of text,
  blank images and RGBA images.

Neither set is ever used to fit a detector or choose its threshold (in-distribution validation does that).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.errors import MedLensInputError
from models.xray_io import XrayImage, load_xray_bytes, load_xray_file

#: pydicom-data's chest radiographs (a CR, 1955 x 1841, and its JPEG 2000 twins).
CHEST_DICOM_PREFIX = "RG1_"
#: the vocabulary of generated text pages
TEXT = (
    "patient report findings impression the of and a to in is was with for on that chest lung normal "
    "clinical history comparison technique heart size within limits no acute process recommend follow "
    "invoice total amount due date page section table figure results methods discussion"
)
WORDS = tuple(re.findall(r"[a-z]+", TEXT))


@dataclass(frozen=True)
class ProbeImage:
    name: str
    kind: str  # dicom modality, or the kind of generated image
    image: XrayImage


def pydicom_images() -> tuple[list[ProbeImage], list[ProbeImage]]:
    """(chest radiographs, everything else) among pydicom's test DICOMs that the loader decodes."""
    from pydicom.data import get_testdata_files

    chest: list[ProbeImage] = []
    other: list[ProbeImage] = []
    for path in sorted(set(get_testdata_files()), key=lambda p: Path(p).name):
        p = Path(path)
        if not p.is_file():
            continue
        try:
            image = load_xray_file(p)
        except MedLensInputError:
            continue  # no pixels, multi-frame, too small, undecodable: refused before any model sees it
        if image.source_format != "dicom":
            continue
        probe = ProbeImage(p.name, image.dicom_fields.get("Modality", "?"), image)
        (chest if p.name.startswith(CHEST_DICOM_PREFIX) else other).append(probe)
    return chest, other


def _png(image: Image.Image) -> XrayImage:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return load_xray_bytes(buf.getvalue(), "generated.png")


def _pink_noise(rng: np.random.Generator, side: int, exponent: float) -> np.ndarray:
    """(side, side) field with a 1/f^exponent spectrum (natural-image-like), scaled to [0, 1]."""
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.fftfreq(side)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal((side, side)) + 1j * rng.standard_normal((side, side))) / f**exponent
    field = np.real(np.fft.ifft2(spectrum))
    return (field - field.min()) / (field.max() - field.min() + 1e-12)


def _scene(rng: np.random.Generator, side: int) -> Image.Image:
    """A photo-like colour scene: textured sky/ground and a few shaded objects."""
    rgb = np.empty((side, side, 3))
    horizon = int(side * rng.uniform(0.35, 0.65))
    for c in range(3):
        tex = _pink_noise(rng, side, 1.6)
        rgb[..., c] = np.where(np.arange(side)[:, None] < horizon, rng.uniform(0.4, 0.9), rng.uniform(0.1, 0.5))
        rgb[..., c] += 0.25 * (tex - 0.5)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for _ in range(int(rng.integers(2, 6))):
        cx, cy, r = rng.uniform(0.15, 0.85), rng.uniform(0.3, 0.85), rng.uniform(0.05, 0.2)
        inside = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
        shade = 1.0 - 0.5 * np.clip((xx - cx + yy - cy) / (2 * r), -1, 1)
        colour = rng.uniform(0, 1, 3)
        for c in range(3):
            rgb[..., c] = np.where(inside, colour[c] * shade, rgb[..., c])
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), mode="RGB")


def _page(rng: np.random.Generator, width: int, height: int, font_size: int) -> Image.Image:
    """A document page: black text lines on white paper, with a heading and a ruled table."""
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=font_size)
    heading = ImageFont.load_default(size=int(font_size * 1.6))
    margin = width // 10
    draw.text((margin, margin // 2), "REPORT " + " ".join(rng.choice(WORDS, 3)).upper(), fill=0, font=heading)
    y = margin // 2 + int(font_size * 3)
    while y < height - margin:
        if rng.random() < 0.12:  # a small ruled table
            for _row in range(4):
                for col in range(4):
                    x0 = margin + col * (width - 2 * margin) // 4
                    draw.rectangle([x0, y, x0 + (width - 2 * margin) // 4, y + font_size + 6], outline=0)
                    draw.text((x0 + 4, y + 3), str(int(rng.integers(0, 999))), fill=0, font=font)
                y += font_size + 6
            y += font_size
            continue
        line = " ".join(rng.choice(WORDS, int(rng.integers(6, 14))))
        draw.text((margin, y), line.capitalize() + ".", fill=0, font=font)
        y += int(font_size * 1.5)
    return page


def generated_images(seed: int = 0) -> list[ProbeImage]:
    """About 40 images that are not radiographs, each decoded by the MedLens loader from PNG bytes."""
    rng = np.random.default_rng(seed)
    out: list[ProbeImage] = []

    def add(kind: str, image: Image.Image) -> None:
        out.append(ProbeImage(f"{kind}-{sum(p.kind == kind for p in out)}", kind, _png(image)))

    for _ in range(6):
        add("scene", _scene(rng, int(rng.choice([256, 384, 512]))))
    for exponent in (1.0, 1.5, 2.0, 2.5):
        tex = np.stack([_pink_noise(rng, 320, exponent) for _ in range(3)], axis=-1)
        add("texture", Image.fromarray((tex * 255).astype(np.uint8), mode="RGB"))
    add("noise", Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8), mode="L"))
    add("noise", Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), mode="RGB"))
    add("noise", Image.fromarray(rng.integers(0, 65536, (256, 256), dtype=np.uint16)))  # 16-bit PNG
    gauss = np.clip(0.5 + 0.15 * rng.standard_normal((256, 256)), 0, 1)
    add("noise", Image.fromarray((gauss * 255).astype(np.uint8), mode="L"))
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    for field in (xx, yy, 1 - xx, np.hypot(xx - 0.5, yy - 0.5) / 0.71, (xx + yy) / 2):
        add("gradient", Image.fromarray((field * 255).astype(np.uint8), mode="L"))
    stripes = (np.sin(xx * 40) > 0).astype(np.uint8) * 255
    add("pattern", Image.fromarray(stripes, mode="L"))
    checker = (((xx * 8).astype(int) + (yy * 8).astype(int)) % 2 * 255).astype(np.uint8)
    add("pattern", Image.fromarray(checker, mode="L"))
    for width, height, size in ((600, 800, 14), (850, 1100, 18), (400, 520, 11), (700, 900, 24), (512, 512, 16)):
        add("text page", _page(rng, width, height, size))
    for value in (0, 128, 255):
        add("blank", Image.new("L", (256, 256), value))
    add("blank", Image.new("RGB", (300, 200), (255, 255, 255)))
    add("rgba", Image.new("RGBA", (256, 256), (0, 0, 0, 0)))  # fully transparent
    add("rgba", Image.new("RGBA", (256, 256), (255, 255, 255, 255)))
    logo = Image.new("RGBA", (320, 320), (0, 0, 0, 0))
    ImageDraw.Draw(logo).ellipse([40, 40, 280, 280], fill=(200, 30, 30, 255))
    add("rgba", logo)
    add("rgba", _scene(rng, 256).convert("RGBA"))
    return out


__all__ = ["CHEST_DICOM_PREFIX", "ProbeImage", "generated_images", "pydicom_images"]
