"""Train the class-conditional GAN (models/gan.py) from scratch on a ``<root>/<CLASS>/*`` folder.

Only the training patients of the CNN's patient split (same seed, same share) are used: the held-out
patients stay unseen by both models, so ``python -m models.evaluate gan`` compares generated images
with radiographs neither network saw. Hinge loss, spectral norm in the discriminator, differentiable
augmentation on everything the discriminator sees (translation, cut-out, brightness and contrast), an
exponential moving average of the generator's weights (what ships), classes drawn 50/50.

Each step runs under bfloat16 autocast or in float32, whichever :func:`choose_precision` measures as
faster on this machine (bf16 is emulated, and several times slower, on CPUs without AVX512-BF16 / AMX).
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from models.backends import training_precision
from models.cli_args import write_atomically
from models.cnn import resize_gray
from models.gan import Discriminator, GanConfig, Generator, GeneratorMeta
from models.train_cnn import patient_split, seed_everything
from models.xray_io import labelled_images, load_xray_file

#: Adam's betas for both networks, the generator's learning rate (the discriminator's is 4x: TTUR, as BigGAN)
#: and discriminator updates per generator update (each on a new real batch, the same generated one)
BETAS = (0.0, 0.999)
LR_G = 1e-4
D_STEPS = 2
#: what :func:`diff_augment` does, for the model card
AUGMENTATION = (
    "differentiable, on real and generated images alike: translation up to 1/8 of the side (zero padding), "
    "cut-out of a quarter-side square, brightness ±0.2 and contrast 0.75-1.25"
)


def load_images(items: list[tuple[Path, int]], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size) uint8 images squashed like the CNN's, (N,) labels."""
    images = np.empty((len(items), size, size), dtype=np.uint8)
    labels = np.empty(len(items), dtype=np.int64)
    for i, (path, label) in enumerate(tqdm(items, desc="decode", unit="img")):
        images[i] = np.round(resize_gray(load_xray_file(path).pixels, size) * 255.0)
        labels[i] = label
    return images, labels


def split_images(
    data: Path, size: int, val_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray, list[Path], np.ndarray]:
    """(N, size, size) uint8 images, (N,) labels, their paths and the CNN's patient split (True: held out).
    Training (``~held_out``) and the evaluation (models/gan_eval.py) read the same split from here."""
    items = labelled_images(data)
    images, labels = load_images(items, size)
    paths = [p for p, _ in items]
    return images, labels, paths, patient_split(paths, labels, val_fraction, split_seed)


def diff_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(batch, 1, S, S) in [-1, 1] -> the same, augmented; differentiable in ``x``."""
    n, _, s, _ = x.shape
    brightness = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4
    contrast = torch.rand(n, 1, 1, 1, generator=gen) * 0.5 + 0.75
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    # translation: pad, then crop at a random offset per image (a gather keeps it differentiable)
    pad = s // 8
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)  # (n, 1, S + 2p, S + 2p)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(s)[None, :])[:, None, :, None].expand(n, 1, s, s + 2 * pad)
    x = padded.gather(2, rows)  # (n, 1, S, S + 2p)
    cols = (dx[:, None] + torch.arange(s)[None, :])[:, None, None, :].expand(n, 1, s, s)
    x = x.gather(3, cols)  # (n, 1, S, S)
    # cut-out: a square of side S/4 set to the background value
    c = s // 4
    cy = torch.randint(0, s - c + 1, (n,), generator=gen)[:, None, None, None]
    cx = torch.randint(0, s - c + 1, (n,), generator=gen)[:, None, None, None]
    grid = torch.arange(s)
    inside = (
        (grid[None, None, :, None] >= cy)
        & (grid[None, None, :, None] < cy + c)
        & (grid[None, None, None, :] >= cx)
        & (grid[None, None, None, :] < cx + c)
    )  # (n, 1, S, S)
    return torch.where(inside, torch.full_like(x, -1.0), x)


def choose_precision(
    g: Generator, d: Discriminator, batch: int, z_dim: int, requested: str = "auto"
) -> tuple[bool, dict[str, float]]:
    """bf16 autocast or float32 for a forward + backward pass of both networks, as ``requested`` or, "auto", as
    measured on this machine (:func:`models.backends.training_precision`), with the seconds per pass of each."""
    y = torch.arange(batch) % 2

    def step(bf16: bool) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return d(g(torch.randn(batch, z_dim), y), y).float().mean()

    return training_precision(step, requested, (g, d))


@dataclass
class GanTrainResult:
    generator: Generator  # the moving average of the generator's weights: what ships
    ema_start: int  # the step the average started from
    config: GanConfig
    steps: int
    seconds: float
    bf16: bool
    precision_probe_s: dict[str, float]
    n_train: dict[str, int]
    history: list[dict[str, float]] = field(default_factory=list)


def sample_grid(g: Generator, z_dim: int, path: Path, seed: int = 0, per_class: int = 8) -> None:
    """A PNG of ``per_class`` images of each class (one row per class) from fixed latents."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(per_class, z_dim, generator=gen).repeat(2, 1)
    y = torch.arange(2).repeat_interleave(per_class)
    was_training = g.training
    g.eval()
    with torch.no_grad():
        x = g(z, y)  # (2 * per_class, 1, S, S)
    g.train(was_training)
    pixels = ((x.squeeze(1).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    s = pixels.shape[-1]
    grid = pixels.reshape(2, per_class, s, s).transpose(0, 2, 1, 3).reshape(2 * s, per_class * s)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def train_gan(
    images: np.ndarray,
    labels: np.ndarray,
    out: Path,
    *,
    config: GanConfig,
    steps: int,
    batch_size: int,
    seed: int,
    lr_g: float,
    lr_d: float,
    ema_decay: float = 0.999,
    d_steps: int = 2,
    budget_s: float | None = None,
    precision: str = "auto",
) -> GanTrainResult:
    """Train on (N, S, S) uint8 ``images`` with (N,) ``labels``; checkpoints of the whole state go to
    ``out/state.pt`` every 250 steps (a rerun with the same ``out`` resumes) and sample grids to
    ``out/samples/``. Stops after ``steps`` steps or ``budget_s`` seconds, whichever comes first."""
    seed_everything(seed)
    time.time()
    g, d = Generator(config), Discriminator(config)
    ema = copy.deepcopy(g).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=lr_g, betas=BETAS)
    opt_d = torch.optim.Adam(d.parameters(), lr=lr_d, betas=BETAS)
    bf16, probe = choose_precision(g, d, batch_size, config.z_dim, precision)
    tqdm.write(f"precision: {'bfloat16 autocast' if bf16 else 'float32'} (measured s per pass: {probe})")
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(images)  # (N, S, S) uint8
    by_class = [torch.from_numpy(np.flatnonzero(labels == k)) for k in range(len(config.labels))]
    history: list[dict[str, float]] = []
    step, elapsed_before, ema_start = 0, 0.0, 0
    state_path = out / "state.pt"
    if state_path.is_file():  # resume
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        g.load_state_dict(state["g"])
        d.load_state_dict(state["d"])
        ema.load_state_dict(state["ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        gen.set_state(state["rng"])
        step, elapsed_before, history = int(state["step"]), float(state["seconds"]), list(state["history"])
        ema_start = int(state.get("ema_start", step))
        if "ema_start" not in state:
            # a state from before the average's warm-up: its average still holds the initial weights; restart it
            ema.load_state_dict(g.state_dict())
        tqdm.write(f"resumed at step {step} ({elapsed_before / 60:.1f} min in; weight average from step {ema_start})")
    clock = time.time()

    def seconds() -> float:
        return elapsed_before + time.time() - clock

    def save_state() -> None:
        """``out/state.pt``, written whole to a temporary file beside it that then replaces it: a crash mid-write
        leaves the previous state to resume from."""
        snapshot = {
            "g": g.state_dict(),
            "d": d.state_dict(),
            "ema": ema.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "rng": gen.get_state(),
            "step": step,
            "ema_start": ema_start,
            "seconds": seconds(),
            "history": history,
        }
        write_atomically(state_path, lambda temporary: torch.save(snapshot, temporary))

    g.train()
    d.train()
    bar = tqdm(total=steps, initial=step, desc="gan", unit="step")
    window: list[tuple[float, float, float, float]] = []
    while step < steps and (budget_s is None or seconds() < budget_s):
        y = torch.randint(0, len(by_class), (batch_size,), generator=gen)  # classes 50/50
        z = torch.randn(batch_size, config.z_dim, generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            fake = g(z, y)  # (batch, 1, S, S)
        for _ in range(d_steps):  # the discriminator must stay ahead: several updates per generator update
            idx = torch.stack(
                [by_class[int(k)][torch.randint(0, len(by_class[int(k)]), (1,), generator=gen)] for k in y]
            )
            real = x_all[idx.squeeze(1)].unsqueeze(1).float() / 127.5 - 1.0  # (batch, 1, S, S) in [-1, 1]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                d_real = d(diff_augment(real, gen), y).float()
                d_fake = d(diff_augment(fake.detach().float(), gen), y).float()
            loss_d = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss_g = -d(diff_augment(fake.float(), gen), y).float().mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        # the average warms up (decay (1 + t) / (10 + t) until it reaches ema_decay): with a few thousand steps,
        # a fixed 0.999 from step 0 would still hold 0.999**3000 = 5 % of the random initial weights
        t = step - ema_start
        decay = min(ema_decay, (1.0 + t) / (10.0 + t))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), g.parameters(), strict=True):
                p_ema.lerp_(p, 1.0 - decay)
            for b_ema, b in zip(ema.buffers(), g.buffers(), strict=True):
                b_ema.copy_(b)
        step += 1
        bar.update(1)
        window.append((loss_d.item(), loss_g.item(), d_real.mean().item(), d_fake.mean().item()))
        if step % 50 == 0:
            ld, lg, dr, df = (float(np.mean(v)) for v in zip(*window, strict=True))
            window.clear()
            bar.set_postfix(loss_d=f"{ld:.3f}", loss_g=f"{lg:.3f}", d_real=f"{dr:.2f}", d_fake=f"{df:.2f}")
            history.append(
                {"step": step, "minutes": seconds() / 60, "loss_d": ld, "loss_g": lg, "d_real": dr, "d_fake": df}
            )
        if step % 250 == 0 or step == steps:
            sample_grid(ema, config.z_dim, out / "samples" / f"step{step:05d}.png")
            save_state()
    bar.close()
    save_state()
    return GanTrainResult(
        ema_start=ema_start,
        generator=ema,
        config=config,
        steps=step,
        seconds=seconds(),
        bf16=bf16,
        precision_probe_s=probe,
        n_train={name: int((labels == k).sum()) for k, name in enumerate(config.labels)},
        history=history,
    )


@torch.no_grad()
def standing_statistics(g: Generator, z_dim: int, n_classes: int, batches: int = 64, batch: int = 64) -> None:
    """Re-estimate the batch-norm statistics of ``g`` (the weight average, whose weights never ran in
    training mode) as the plain mean over ``batches`` batches of its own outputs, then put it in eval mode."""
    gen = torch.Generator().manual_seed(12345)
    for module in g.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    g.train()
    for _ in range(batches):
        g(torch.randn(batch, z_dim, generator=gen), torch.randint(0, n_classes, (batch,), generator=gen))
    g.eval()


def train_gan_cli(args: argparse.Namespace, command: str) -> int:
    """``python -m models.train gan``: train (or resume from ``--out``/state.pt), then write the checkpoint
    (the weight-averaged generator) and its card."""
    from models.checkpoint import CHECKPOINT_FILE, weights_version
    from models.config import data_paths

    data = args.data or data_paths().xray_train
    config = GanConfig()
    split_seed = 0 if args.split_seed is None else args.split_seed
    images, labels, _, held_out = split_images(data, config.image_size, args.val_fraction, split_seed)
    x_train, y_train = images[~held_out], labels[~held_out]
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    result = train_gan(
        x_train,
        y_train,
        args.out,
        config=config,
        steps=args.steps,
        batch_size=args.batch_size or 32,
        seed=args.seed,
        lr_g=args.lr or LR_G,
        lr_d=4 * (args.lr or LR_G),
        d_steps=D_STEPS,
        budget_s=args.budget_min * 60 if args.budget_min else None,
        precision=args.precision,
    )
    standing_statistics(result.generator, config.z_dim, len(config.labels), batches=args.standing_batches)
    state = {k: v.detach().contiguous() for k, v in result.generator.state_dict().items()}
    meta = GeneratorMeta(
        kind="gan",
        version=weights_version("gan", state),  # the card keeps an evaluation only of these very weights
        task="synthetic pediatric chest radiographs, NORMAL or PNEUMONIA, for demos and tests",
        labels=list(config.labels),
        config=config.model_dump(mode="json"),
        output={
            "size": config.image_size,
            "range": "[-1, 1] (tanh); pixel = (x + 1) * 127.5",
            "geometry": "squashed to a square, like the CNN's training images",
        },
    )
    blob = {"meta": meta.model_dump(mode="json"), "state_dict": state}
    # whole to a temporary file that then replaces model.pt: a crash mid-write leaves the previous checkpoint intact
    write_atomically(args.out / CHECKPOINT_FILE, lambda temporary: torch.save(blob, temporary))
    sample_grid(result.generator, config.z_dim, args.out / "samples" / "final.png")
    from models.gan_card import write_gan_card

    write_gan_card(args.out, result, meta, data=data, split_seed=split_seed, command=command, args=args)
    print(f"wrote {args.out}: {result.steps} steps in {result.seconds / 60:.1f} min")
    return 0
