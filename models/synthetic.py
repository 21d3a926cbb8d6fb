"""Synthetic chest radiographs from the committed conditional GAN, always marked as synthetic.

>>> gen = SyntheticXrayGenerator()                      # models/weights/gan
>>> png = gen.png("PNEUMONIA", seed=7)                  # one marked PNG, the same bytes for the same seed

Every image that leaves this module carries two marks:

- pixels: a black band across the top with "SYNTHETIC" and "MedLens GAN - not a patient" burned in;
- the PNG text chunk ``MedLens-Synthetic: <model version>; seed=<seed>; label=<label>``, which
  :func:`read_mark` parses back (MedLens's image loader reads it on upload: such a case is flagged
  ``synthetic`` everywhere, and never counted in a metric of real data).

The generator makes 128 x 128 px; :data:`OUTPUT_SIZE` is the delivered side (bicubic x2) so that the
band's text is legible; the CNN resizes its inputs anyway. A marked PNG is a function of (label, seed)
alone: the latent comes from ``torch.Generator().manual_seed(seed)``, the generator runs in eval mode, and
each PNG's image is generated on its own.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from models.catalogue import MAX_SEED
from models.checkpoint import CHECKPOINT_FILE
from models.errors import MedLensInputError, WeightsError
from models.gan import GanConfig, Generator, GeneratorMeta
from models.synthetic_mark import MARK_KEY, SyntheticMark, burn_band

OUTPUT_SIZE = 256


def load_generator(weights: Path) -> tuple[GeneratorMeta, Generator]:
    path = weights / CHECKPOINT_FILE if weights.is_dir() else weights
    if not path.is_file():
        raise WeightsError(
            f"No generator checkpoint at {path}: train one with `python -m models.train gan --out DIR` "
            "or pass --weights DIR."
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = GeneratorMeta.model_validate(blob["meta"])
        generator = Generator(GanConfig.model_validate(meta.config))
        generator.load_state_dict(blob["state_dict"])
    except Exception as exc:  # torch / pickle / pydantic raise many types for a damaged file
        raise WeightsError(
            f"{path} is not a MedLens generator checkpoint this code can read ({type(exc).__name__}); "
            "retrain it with `python -m models.train gan`."
        ) from exc
    return meta, generator.eval()


def marked_png(pixels: np.ndarray, mark: SyntheticMark) -> bytes:
    """(S, S) uint8 generator output -> PNG bytes: upsampled to :data:`OUTPUT_SIZE`, band, text chunk."""
    image = Image.fromarray(pixels, mode="L")
    if image.width != OUTPUT_SIZE:
        image = image.resize((OUTPUT_SIZE, OUTPUT_SIZE), Image.Resampling.BICUBIC)
    banded = Image.fromarray(burn_band(np.asarray(image)), mode="L")
    info = PngImagePlugin.PngInfo()
    info.add_text(MARK_KEY, mark.text())
    out = io.BytesIO()
    banded.save(out, format="PNG", pnginfo=info, optimize=False)
    return out.getvalue()


class SyntheticXrayGenerator:
    """The committed (or ``weights``) generator: raw images for evaluation, marked PNGs for everyone else."""

    def __init__(self, weights: Path | None = None, threads: int | None = None) -> None:
        from models.catalogue import generator_entry

        self.entry = generator_entry("gan")
        self.weights = weights or self.entry.default_weights
        self.meta, self.net = load_generator(self.weights)
        self.config = GanConfig.model_validate(self.meta.config)
        self.labels = tuple(self.meta.labels)
        self.version = self.meta.version
        if threads:
            torch.set_num_threads(threads)

    def label_index(self, label: str) -> int:
        if label not in self.labels:
            raise MedLensInputError(f"Unknown label {label!r}: choose one of {', '.join(self.labels)}.")
        return self.labels.index(label)

    @staticmethod
    def check_seed(seed: int) -> int:
        if not 0 <= seed <= MAX_SEED:
            raise MedLensInputError(f"seed {seed} is out of range: use 0 to {MAX_SEED}.")
        return seed

    @torch.no_grad()
    def raw(self, labels: list[str], seeds: list[int]) -> np.ndarray:
        """(N, S, S) uint8 unmarked generator output for each (label, seed): for evaluation only."""
        y = torch.tensor([self.label_index(label) for label in labels], dtype=torch.long)
        z = torch.stack(
            [torch.randn(self.config.z_dim, generator=torch.Generator().manual_seed(self.check_seed(s))) for s in seeds]
        )  # (N, z_dim)
        x = self.net(z, y)  # (N, 1, S, S) in [-1, 1]
        return ((x.squeeze(1).clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).numpy()

    def pngs(self, labels: list[str], seeds: list[int]) -> list[bytes]:
        """Marked PNG bytes for each (label, seed), each image generated on its own so that the bytes depend on
        (label, seed) alone (a batched convolution may differ in the last bit, and a case id is the file's hash)."""
        return [
            marked_png(self.raw([label], [seed])[0], SyntheticMark(self.version, seed, label))
            for label, seed in zip(labels, seeds, strict=True)
        ]

    def png(self, label: str, seed: int) -> bytes:
        return self.pngs([label], [seed])[0]


__all__ = [
    "MARK_KEY",
    "OUTPUT_SIZE",
    "SyntheticMark",
    "SyntheticXrayGenerator",
    "burn_band",
    "load_generator",
    "marked_png",
]
