"""The generator's model card: how it was trained (``python -m models.train gan``) and how good its images
are (``python -m models.evaluate gan`` adds the evaluation). ``card.json`` + ``card.md`` beside ``model.pt``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from models.cards import XRAY_SOURCE, Provenance
from models.checkpoint import CARD_JSON, CARD_MD, CHECKPOINT_FILE
from models.gan import Discriminator, GanConfig, Generator, GeneratorMeta, count_parameters
from models.gan_eval import GanEvaluation


class GanCard(Provenance):
    steps: int
    machine: str
    precision: str
    hyperparameters: dict[str, Any]
    generator_parameters: int
    discriminator_parameters: int
    weights_mb: float
    history: list[dict[str, float]]
    intended_use: str
    limitations: list[str]
    evaluation: GanEvaluation | None = None


def write_gan_card(
    out: Path, result: Any, meta: GeneratorMeta, *, data: Path, split_seed: int, command: str, args: argparse.Namespace
) -> GanCard:
    import time

    from models.train_gan import AUGMENTATION, BETAS, D_STEPS, LR_G

    config = GanConfig.model_validate(meta.config)
    n, probe = result.n_train, result.precision_probe_s
    previous = read_gan_card(out) if (out / CARD_JSON).is_file() else None
    card = GanCard(
        name=meta.kind,
        version=meta.version,
        task=meta.task,
        created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        data=XRAY_SOURCE,
        data_path=str(data),
        split=(
            f"the training patients of the CNN's patient split (seed {split_seed}, {args.val_fraction:.0%} of "
            f"patients per class held out): {sum(n.values())} images ({', '.join(f'{k} {v}' for k, v in n.items())}), "
            "classes drawn 50/50 per batch. The held-out patients are never seen: the evaluation compares with them."
        ),
        command=command,
        seed=args.seed,
        training_seconds=result.seconds,
        steps=result.steps,
        machine=_machine(),
        precision=(
            f"{'bfloat16 autocast' if result.bf16 else 'float32'}, chosen by measurement at the start "
            f"(s per forward + backward pass: {json.dumps({k: round(v, 3) for k, v in probe.items()})})"
        ),
        hyperparameters={
            "image_size": config.image_size,
            "z_dim": config.z_dim,
            "generator": f"linear to 4x4, 5 x (conditional BN, ReLU, nearest upsampling x2, 3x3 conv); widths "
            f"{config.g_widths}; "
            f"a residual 3x3 conv up to {config.g_double_up_to} px; tanh",
            "discriminator": f"{config.d_norm} norm, a 4x4 stride-2 conv then residual down-blocks (SN-GAN "
            f"ResNet), widths {config.d_widths}, sum pooling, projection head",
            "loss": "hinge",
            "optimizer": f"Adam (betas {BETAS}), {D_STEPS} discriminator steps per generator step (new real "
            "batches, the same generated one)",
            "lr_generator": args.lr or LR_G,
            "lr_discriminator": 4 * (args.lr or LR_G),
            "batch_size": args.batch_size or 32,
            "ema_decay": f"0.999, warmed up as (1 + t) / (10 + t), from step {result.ema_start}",
            "augmentation": AUGMENTATION,
            "shipped": "the exponential moving average of the generator's weights, batch-norm statistics "
            f"re-estimated on {64 * args.standing_batches:,} of its own samples",
        },
        generator_parameters=count_parameters(Generator(config)),
        discriminator_parameters=count_parameters(Discriminator(config)),
        weights_mb=round((out / CHECKPOINT_FILE).stat().st_size / 1e6, 2),
        history=result.history[:: max(1, len(result.history) // 40)],
        intended_use=(
            "Synthetic, PHI-free chest radiographs for demos, tests and teaching: filling a demo worklist, "
            "exercising the pipeline where no patient data may go. Every image is marked as synthetic."
        ),
        limitations=[
            "128 x 128 px (delivered upsampled to 256 px): coarse anatomy, no fine lung texture; a radiologist "
            "tells them from real films at a glance.",
            "Learnt from pediatric AP films of one hospital: it makes nothing else (no adults, no other views, "
            "no devices it rarely saw).",
            "The class it is asked for is a condition, not a guarantee: see the class fidelity in the evaluation.",
            "Never use its images to train or evaluate a clinical model, or count them in a metric of real data.",
            "Not for clinical use.",
        ],
        evaluation=previous.evaluation if previous is not None and previous.version == meta.version else None,
    )
    write(out, card)
    return card


def _machine() -> str:
    from models.backends import this_machine  # the CPU model and flags, as every benchmark prints them

    return this_machine().describe()


def read_gan_card(directory: Path) -> GanCard:
    return GanCard.model_validate_json((directory / CARD_JSON).read_text())


def write(directory: Path, card: GanCard) -> None:
    (directory / CARD_JSON).write_text(json.dumps(card.model_dump(mode="json"), indent=1) + "\n")
    (directory / CARD_MD).write_text(render_markdown(card))


def render_markdown(card: GanCard) -> str:
    hyper = "\n".join(f"- `{k}`: {v}" for k, v in card.hyperparameters.items())
    limits = "\n".join(f"- {x}" for x in card.limitations)
    return f"""# Model card: `{card.name}` ({card.version})

**Task.** {card.task}

**Every image it makes is synthetic and marked as such**: a "SYNTHETIC" band burned into the pixels and the
PNG text chunk `MedLens-Synthetic: <version>; seed=<seed>; label=<label>`. **Not for clinical use.**

## Data
{card.data}

- Data directory used: `{card.data_path}`
- Split: {card.split}

## Training
- Command: `{card.command}`
- Seed: {card.seed}
- Steps: {card.steps}, {card.training_seconds / 60:.1f} min on this machine ({card.machine})
- Precision: {card.precision}
- Parameters: generator {card.generator_parameters:,} (shipped, {card.weights_mb} MB), discriminator
  {card.discriminator_parameters:,} (training only)
- Created: {card.created}

Hyper-parameters:
{hyper}

{_evaluation_section(card.evaluation)}## Intended use
{card.intended_use}

## Limitations
{limits}
"""


def _evaluation_section(ev: GanEvaluation | None) -> str:
    if ev is None:
        return "## Evaluation\nNot measured yet: run `python -m models.evaluate gan`.\n\n"
    fd, pr, memo, t = ev.fd_medlens, ev.precision_recall, ev.memorisation, ev.tstr
    held = ", ".join(f"{k} {v}" for k, v in ev.n_heldout.items())
    fid = " · ".join(
        f"{k}: {ev.class_fidelity_raw[k]:.3f} raw, {ev.class_fidelity_marked[k]:.3f} marked "
        f"(real held-out: {ev.heldout_class_agreement[k]:.3f})"
        for k in ev.class_fidelity_raw
    )
    per_class = ", ".join(f"{k} {v:.2f}" for k, v in fd.per_class_generated_vs_heldout.items())
    table = [
        (
            f"FD-MedLens (n = {fd.n} a side; lower is closer)",
            f"{fd.generated_vs_heldout:.2f}",
            f"held-out half vs half {fd.heldout_half_vs_half:.2f}; training vs held-out {fd.training_vs_heldout:.2f}",
        ),
        (f"precision (k = {pr.k})", f"{pr.precision:.3f}", f"{pr.real_half_precision:.3f}"),
        (f"recall (k = {pr.k})", f"{pr.recall:.3f}", f"{pr.real_half_recall:.3f}"),
        (
            "share the CNN's out-of-distribution detector lets through",
            f"{ev.in_distribution_generated:.3f}",
            f"{ev.in_distribution_heldout:.3f}",
        ),
        (
            "median distance to the nearest training image, CNN features",
            f"{memo.feature_median_generated:.2f}",
            f"{memo.feature_median_heldout:.2f}",
        ),
        (
            "median distance to the nearest training image, pixels (RMS, 64 px)",
            f"{memo.pixel_median_generated:.4f}",
            f"{memo.pixel_median_heldout:.4f}",
        ),
        (
            "closer to a training image than 99 % of held-out images are (features / pixels)",
            f"{memo.feature_share_closer_than_heldout_p1:.3f} / {memo.pixel_share_closer_than_heldout_p1:.3f}",
            "0.010 by definition",
        ),
        (
            f"AUROC on the held-out patients of a small CNN trained on {t.images_per_class} images per class "
            "(TSTR; real: TRTR)",
            f"{t.tstr_auroc:.3f}",
            f"{t.trtr_auroc:.3f}",
        ),
        (
            "balanced accuracy of that CNN at 0.5",
            f"{t.tstr_balanced_accuracy:.3f}",
            f"{t.trtr_balanced_accuracy:.3f}",
        ),
    ]
    rows = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in table)
    return f"""## Evaluation
Measured {ev.measured} with `{ev.command}` ({ev.seconds / 60:.1f} min), generator {ev.generator_version},
features of the CNN {ev.cnn_version}, against the held-out patients ({held}) at 128 px.

| figure | generated | real, for scale |
|---|---|---|
{rows}

FD-MedLens per class (generated vs all held-out of that class): {per_class}. It is a Fréchet distance on the
MedLens CNN's penultimate features: not comparable with published FIDs.

Class fidelity (the committed CNN's label at its threshold agrees with the class asked for): {fid}.

The six generated images closest to a training image in pixels (top) above that training image (bottom):
`{memo.figure}`.

"""
