"""How good the synthetic radiographs are, measured honestly (``python -m models.evaluate gan``).

Every figure compares generated images with the *held-out patients* of the CNN's split (the GAN never saw
them), at the generator's own resolution: real images are decoded at 128 px like its training data, and
both pass through the same resize into the committed CNN.

- **FD-MedLens**: the Fréchet distance between Gaussians fitted to the committed CNN's penultimate features
  (both ensemble members' pooled features side by side). Not comparable with published FIDs (another network,
  another domain). For scale, beside it: the distance between the two halves of the held-out patients, and
  between training and held-out patients, each with the same number of images.
- **Precision and recall** (Kynkäänniemi et al. 2019): the share of generated images inside the k-NN balls
  of real ones (fidelity), and of real images inside the balls of generated ones (coverage), k = 3.
- **Class fidelity**: the committed CNN's label at its threshold against the class the image was generated
  for, on the raw output and on the marked PNG (band burned in) a user gets; and the share the CNN's
  out-of-distribution detector lets through.
- **Memorisation**: each generated image's nearest training image, in feature space and in pixels,
  against the same distance for held-out real images (a real radiograph of an unseen patient is the
  yardstick of "close"). The closest pairs are drawn side by side.
- **TSTR**: a small CNN trained on generated images only, scored on the held-out patients; beside it the
  same CNN trained on as many real training images (TRTR).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict
from scipy import linalg
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from models.synthetic import SyntheticMark, SyntheticXrayGenerator, marked_png

K_NEAREST = 3


class FdFigures(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generated_vs_heldout: float  # same size and class mix as half A, against half B
    heldout_half_vs_half: float  # real A against real B: the floor at this sample size
    training_vs_heldout: float  # real training images (same size and mix) against half B
    per_class_generated_vs_heldout: dict[str, float]
    n: int  # images on each side


class PrecisionRecall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    precision: float
    recall: float
    real_half_precision: float  # real A against real B: what a perfect generator would score here
    real_half_recall: float
    k: int


class Memorisation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature_median_generated: float  # median distance of a generated image to its nearest training image
    feature_median_heldout: float  # the same for held-out real images
    feature_share_closer_than_heldout_p1: float  # generated closer than the 1st percentile of held-out
    pixel_median_generated: float  # root mean square difference, 0-1 grey levels, at 64 px
    pixel_median_heldout: float
    pixel_share_closer_than_heldout_p1: float
    figure: str  # the closest pairs, side by side (docs/)


class Tstr(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images_per_class: int
    tstr_auroc: float  # trained on synthetic, tested on real held-out patients
    trtr_auroc: float  # trained on as many real training images, same test
    tstr_balanced_accuracy: float
    trtr_balanced_accuracy: float
    epochs: int


class GanEvaluation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    measured: str
    command: str
    seconds: float
    generator_version: str
    cnn_version: str
    n_heldout: dict[str, int]
    fd_medlens: FdFigures
    precision_recall: PrecisionRecall
    class_fidelity_raw: dict[str, float]  # label -> share the CNN labels as generated
    class_fidelity_marked: dict[str, float]
    heldout_class_agreement: dict[str, float]  # the same on real held-out images (specificity, sensitivity)
    in_distribution_generated: float  # share the CNN's OOD detector lets through
    in_distribution_heldout: float
    memorisation: Memorisation
    tstr: Tstr


# -- features ---------------------------------------------------------------------------------------------
def cnn_features(predictor: object, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S) uint8 -> (N, D) penultimate features of the committed CNN and (N,) its probabilities."""
    from models.cnn import to_tensor
    from models.inference import XrayPredictor

    assert isinstance(predictor, XrayPredictor)
    feats, probs = [], []
    model = predictor.model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            chunk = [im.astype(np.float32) / 255.0 for im in images[start : start + batch]]
            x = to_tensor(chunk, predictor.config)  # (b, 1, 192, 192)
            pooled = model.pooled(x)  # (b, D)
            logit = model.member_logits(pooled).mean(dim=1)  # (b,)
            feats.append(pooled.numpy())
            probs.append(torch.sigmoid(logit).numpy())
    return np.concatenate(feats), np.concatenate(probs)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to (N, D) ``a`` and (M, D) ``b``."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2.0 * root))


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d, 0.0))  # (len(a), len(b))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019: (share of fake inside real k-NN balls, share of real inside fake balls)."""

    def radii(x: np.ndarray) -> np.ndarray:
        d = _pairwise(x, x)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    r_real, r_fake = radii(real), radii(fake)
    d = _pairwise(fake, real)  # (F, R)
    precision = float(np.mean((d <= r_real[None, :]).any(axis=1)))
    recall = float(np.mean((r_fake[None, :] >= d.T).any(axis=1)))
    return precision, recall


# -- TSTR ---------------------------------------------------------------------------------------------
class _SmallCnn(torch.nn.Module):
    """(batch, 1, 128, 128) -> (batch,) logit: the TSTR probe network."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        c_in = 1
        for c_out in (16, 32, 64, 96, 128):
            layers += [
                torch.nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False),
                torch.nn.BatchNorm2d(c_out),
                torch.nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


def train_probe(images: np.ndarray, labels: np.ndarray, epochs: int, seed: int) -> _SmallCnn:
    """A fresh :class:`_SmallCnn` trained on (N, 128, 128) uint8 images with light augmentation."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = _SmallCnn()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    x_all = torch.from_numpy(images).unsqueeze(1).float() / 255.0  # (N, 1, S, S)
    y_all = torch.from_numpy(labels).float()
    steps = epochs * ((len(x_all) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    net.train()
    for _ in tqdm(range(epochs), desc="tstr probe", unit="epoch", leave=False):
        order = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            x = x_all[idx]
            shift = torch.randint(-8, 9, (2,), generator=gen)
            x = torch.roll(x, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
            x = (x - 0.5) / 0.25
            loss = F.binary_cross_entropy_with_logits(net(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def _probe_scores(net: _SmallCnn, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = (torch.from_numpy(images).unsqueeze(1).float() / 255.0 - 0.5) / 0.25
        return torch.cat([torch.sigmoid(net(x[i : i + 128])) for i in range(0, len(x), 128)]).numpy()


def _balanced_accuracy(y: np.ndarray, p: np.ndarray) -> float:
    pred = p >= 0.5
    return float((np.mean(pred[y == 1]) + np.mean(~pred[y == 0])) / 2)


# -- the figure of the closest pairs ------------------------------------------------------------------
def pairs_figure(generated: np.ndarray, nearest: np.ndarray, path: Path) -> None:
    """Generated images (top row) above their nearest training images (bottom row): one PNG."""
    n, s, _ = generated.shape
    gap = 4
    canvas = np.full((2 * s + gap, n * s + (n - 1) * gap), 255, dtype=np.uint8)
    for i in range(n):
        x = i * (s + gap)
        canvas[:s, x : x + s] = generated[i]
        canvas[s + gap :, x : x + s] = nearest[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)


@dataclass
class HeldOut:
    """The real images the evaluation uses, decoded at the generator's resolution."""

    train: np.ndarray  # (N, S, S) uint8, the GAN's training images
    train_labels: np.ndarray
    val: np.ndarray  # held-out patients
    val_labels: np.ndarray
    val_patient_half: np.ndarray  # bool: patient-level half A of the held-out images


def heldout_data(data: Path, size: int, val_fraction: float, split_seed: int) -> HeldOut:
    """The GAN's training images and the CNN split's held-out patients, split by patient into halves A / B."""
    from models.train_gan import split_images
    from models.xray_io import patient_id

    images, labels, paths, val = split_images(data, size, val_fraction, split_seed)
    patients = sorted({patient_id(paths[i]) for i in np.flatnonzero(val)})
    rng = np.random.default_rng(split_seed + 1)
    rng.shuffle(patients)
    half_a = set(patients[: len(patients) // 2])
    in_a = np.array([patient_id(paths[i]) in half_a for i in np.flatnonzero(val)])
    return HeldOut(images[~val], labels[~val], images[val], labels[val], in_a)


def evaluate_gan(
    generator: SyntheticXrayGenerator,
    cnn: object,
    data: HeldOut,
    *,
    command: str,
    figure: Path,
    seed: int = 2026,
    tstr_per_class: int = 1000,
    tstr_epochs: int = 12,
) -> GanEvaluation:
    from models.inference import XrayPredictor

    assert isinstance(cnn, XrayPredictor)
    started = time.time()
    rng = np.random.default_rng(seed)
    labels = list(generator.labels)
    a, b = data.val_patient_half, ~data.val_patient_half

    def generate(label_idx: np.ndarray, first_seed: int) -> np.ndarray:
        names = [labels[int(k)] for k in label_idx]
        seeds = list(range(first_seed, first_seed + len(names)))
        out = [generator.raw(names[i : i + 64], seeds[i : i + 64]) for i in range(0, len(names), 64)]
        return np.concatenate(out)

    # generated images with the class mix of the held-out set (seeds far from the demo seeds 0..)
    gen_labels = data.val_labels.copy()
    gen_images = generate(gen_labels, 10**9)
    f_val, p_val = cnn_features(cnn, data.val)
    f_gen, p_gen = cnn_features(cnn, gen_images)
    f_train, _ = cnn_features(cnn, data.train)

    # FD: A-sized samples against half B
    n = int(a.sum())
    gen_a = np.flatnonzero(a)  # generated twin of each half-A image (same class)
    train_pick = np.concatenate(
        [
            rng.choice(np.flatnonzero(data.train_labels == k), int((data.val_labels[a] == k).sum()), replace=False)
            for k in range(len(labels))
        ]
    )
    per_class = {
        name: frechet_distance(f_gen[gen_labels == k], f_val[data.val_labels == k]) for k, name in enumerate(labels)
    }
    fd = FdFigures(
        generated_vs_heldout=frechet_distance(f_gen[gen_a], f_val[b]),
        heldout_half_vs_half=frechet_distance(f_val[a], f_val[b]),
        training_vs_heldout=frechet_distance(f_train[train_pick], f_val[b]),
        per_class_generated_vs_heldout=per_class,
        n=n,
    )
    precision, recall = precision_recall(f_val[b], f_gen[gen_a])
    real_p, real_r = precision_recall(f_val[b], f_val[a])
    pr = PrecisionRecall(
        precision=precision, recall=recall, real_half_precision=real_p, real_half_recall=real_r, k=K_NEAREST
    )

    # class fidelity, raw and marked; out-of-distribution share
    threshold = cnn.threshold
    fidelity_raw = {
        name: float(np.mean((p_gen[gen_labels == k] >= threshold) == bool(k))) for k, name in enumerate(labels)
    }
    from models.xray_io import load_xray_bytes

    marked = [
        load_xray_bytes(marked_png(im, SyntheticMark(generator.version, 10**9 + i, labels[int(k)])), "synthetic.png")
        for i, (im, k) in enumerate(zip(gen_images, gen_labels, strict=True))
    ]
    p_marked = cnn.predict([m.pixels for m in marked])
    fidelity_marked = {
        name: float(np.mean((p_marked[gen_labels == k] >= threshold) == bool(k))) for k, name in enumerate(labels)
    }
    heldout_agreement = {
        name: float(np.mean((p_val[data.val_labels == k] >= threshold) == bool(k))) for k, name in enumerate(labels)
    }
    in_dist_gen = in_dist_val = float("nan")
    if cnn.trust is not None:
        in_dist_gen = float(np.mean([x.in_distribution for x in cnn.assess([m.pixels for m in marked])]))
        val_pixels = [im.astype(np.float32) / 255.0 for im in data.val]
        in_dist_val = float(np.mean([x.in_distribution for x in cnn.assess(val_pixels)]))

    # memorisation: nearest training image, features and pixels (64 px, RMS of 0-1 grey levels)
    def small(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).float().unsqueeze(1) / 255.0
        return F.avg_pool2d(t, 2).flatten(1).numpy()  # (N, 64*64)

    px_train, px_gen, px_val = small(data.train), small(gen_images), small(data.val)
    d_feat_gen = _pairwise(f_gen, f_train)
    d_feat_val = _pairwise(f_val, f_train)
    d_px_gen = _pairwise(px_gen, px_train) / np.sqrt(px_train.shape[1])
    d_px_val = _pairwise(px_val, px_train) / np.sqrt(px_train.shape[1])
    nf_gen, nf_val = d_feat_gen.min(1), d_feat_val.min(1)
    np_gen, np_val = d_px_gen.min(1), d_px_val.min(1)
    closest = np.argsort(np_gen)[:6]  # closest in pixels: what a reader would call a copy
    pairs_figure(gen_images[closest], data.train[d_px_gen[closest].argmin(1)], figure)
    memo = Memorisation(
        feature_median_generated=float(np.median(nf_gen)),
        feature_median_heldout=float(np.median(nf_val)),
        feature_share_closer_than_heldout_p1=float(np.mean(nf_gen < np.percentile(nf_val, 1))),
        pixel_median_generated=float(np.median(np_gen)),
        pixel_median_heldout=float(np.median(np_val)),
        pixel_share_closer_than_heldout_p1=float(np.mean(np_gen < np.percentile(np_val, 1))),
        figure=str(figure),
    )

    # TSTR / TRTR with the same probe, the same number of images per class
    per = tstr_per_class
    syn_labels = np.repeat(np.arange(len(labels)), per)
    syn_images = generate(syn_labels, 2 * 10**9)
    real_idx = np.concatenate(
        [
            rng.choice(np.flatnonzero(data.train_labels == k), per, replace=per > (data.train_labels == k).sum())
            for k in range(len(labels))
        ]
    )
    tstr_net = train_probe(syn_images, syn_labels, tstr_epochs, seed)
    trtr_net = train_probe(data.train[real_idx], data.train_labels[real_idx], tstr_epochs, seed)
    s_tstr, s_trtr = _probe_scores(tstr_net, data.val), _probe_scores(trtr_net, data.val)
    tstr = Tstr(
        images_per_class=per,
        tstr_auroc=float(roc_auc_score(data.val_labels, s_tstr)),
        trtr_auroc=float(roc_auc_score(data.val_labels, s_trtr)),
        tstr_balanced_accuracy=_balanced_accuracy(data.val_labels, s_tstr),
        trtr_balanced_accuracy=_balanced_accuracy(data.val_labels, s_trtr),
        epochs=tstr_epochs,
    )
    return GanEvaluation(
        measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        command=command,
        seconds=time.time() - started,
        generator_version=generator.version,
        cnn_version=cnn.meta.version,
        n_heldout={name: int((data.val_labels == k).sum()) for k, name in enumerate(labels)},
        fd_medlens=fd,
        precision_recall=pr,
        class_fidelity_raw=fidelity_raw,
        class_fidelity_marked=fidelity_marked,
        heldout_class_agreement=heldout_agreement,
        in_distribution_generated=in_dist_gen,
        in_distribution_heldout=in_dist_val,
        memorisation=memo,
        tstr=tstr,
    )
