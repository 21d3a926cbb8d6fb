"""Train a MedLens model from scratch and write its checkpoint and model card.

python -m models.train cnn --data ../shared/data/chest_xray/train --out runs/cnn
python -m models.train lstm --data ../shared/data/sepsis/training --out runs/lstm
python -m models.train transformer --data ../shared/data/sepsis/training --out runs/transformer
python -m models.train mortality-lstm --data ../shared/data/mortality2012 --out runs/mortality-lstm
python -m models.train gan --data ../shared/data/chest_xray/train --out runs/gan   # resumes from runs/gan
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from models.catalogue import GENERATOR_NAMES, MODEL_NAMES, entry
from models.cli_args import (
    at_least_two,
    data_folder,
    non_negative_int,
    open_fraction,
    output_folder,
    positive_float,
    positive_int,
    unit_fraction,
)
from models.config import data_paths
from models.sequence_options import add_task_options, task_from_options
from models.train_cnn import VAL_FRACTION, check_target_sensitivity

if TYPE_CHECKING:
    from models.sequence_tasks import SequenceTask


def _command_line() -> str:
    return "python -m models.train " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _sensitivity(text: str) -> float:
    try:
        return check_target_sensitivity(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=MODEL_NAMES + GENERATOR_NAMES)
    parser.add_argument("--data", type=Path, default=None, help="training data (default: from MEDLENS_DATA_DIR)")
    parser.add_argument(
        "--out", type=output_folder, required=True, help="directory for model.pt and the model card (made if missing)"
    )
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--lr", type=positive_float, default=None)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument(
        "--split-seed",
        type=non_negative_int,
        default=None,
        help="cnn: seed of the patient split (default: --seed); ensemble members share one split",
    )
    parser.add_argument("--threads", type=positive_int, default=max(1, torch.get_num_threads()))
    parser.add_argument(
        "--val-fraction", type=open_fraction, default=VAL_FRACTION, help="cnn: share of patients held out, in (0, 1)"
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None, help="use at most this many images / stays (smoke runs)"
    )
    parser.add_argument(
        "--folds",
        type=at_least_two,
        default=5,
        help="sequence models: the k of the k-fold ensemble, 2 or more (its out-of-fold predictions choose the "
        "threshold); every fold needs a stay of each outcome",
    )
    parser.add_argument(
        "--teacher-weight",
        type=unit_fraction,
        default=None,
        help="sequence models: weight in [0, 1] of the cross-fitted tree teacher in the training targets (0 = labels "
        "only; default: the per-model TEACHER_WEIGHT of models/train_sequence.py; the card records the weight used)",
    )
    add_task_options(parser)  # --schema, --weighting, --target, --teacher-hours, --teacher-groups, --d-model
    parser.add_argument(
        "--target-sensitivity", type=_sensitivity, default=0.95, help="cnn: operating point rule, in (0, 1]"
    )
    parser.add_argument("--steps", type=positive_int, default=5000, help="gan: training steps (one D and one G update)")
    parser.add_argument("--budget-min", type=positive_float, default=85.0, help="gan: stop after this many minutes")
    parser.add_argument(
        "--standing-batches",
        type=positive_int,
        default=64,
        help="gan: batches of 64 samples that re-estimate the shipped generator's batch-norm statistics",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="cnn and gan: auto = whichever this machine runs faster, measured at the start",
    )
    args = parser.parse_args(argv)
    # usage errors in the options first, then the data: all before anything is read or trained
    generator = args.model in GENERATOR_NAMES
    image = not generator and entry(args.model).task.input_kind == "image"
    if image and args.teacher_weight is not None:
        parser.error("--teacher-weight applies to the sequence models only")
    task = None
    if not generator and not image:
        try:  # an option the task does not define (mortality --target window) is a usage error, not a traceback
            task = task_from_options(entry(args.model).task.name, args)
        except ValueError as exc:
            parser.error(str(exc))
    _check_data(parser, args)
    torch.set_num_threads(args.threads)
    if generator:
        from models.train_gan import train_gan_cli

        return train_gan_cli(args, command=_command_line())
    if image:
        return _train_cnn(args)
    assert task is not None
    if args.limit is not None:  # a smoke run's few stays: every fold must be trainable before any is trained
        problem = limited_stays_problem(task, args.data or task.default_data(), args.limit, args.folds)
        if problem is not None:
            parser.error(problem)
    return _train_sequence(args)


def _check_data(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The training data must be there before anything is trained (status 2)."""
    if args.model in GENERATOR_NAMES or entry(args.model).task.input_kind == "image":
        default = data_paths().xray_train
    else:
        from models.sequence_tasks import sequence_task

        default = sequence_task(entry(args.model).task.name).default_data()
    data_folder(parser, args.data, default)


def limited_stays_problem(task: SequenceTask, data: Path, limit: int, folds: int) -> str | None:
    """Why the first ``limit`` stays of ``data`` (the protocol's reserve left out, as training leaves it) cannot
    train a ``folds``-fold ensemble, or None: every fold needs a stay of each outcome, or a member trains on one
    outcome, or fewer folds than asked are made, and the threshold has no positive stay to be chosen on."""
    from models.protocol import drop_reserved
    from models.train_sequence import fold_outcomes_problem

    stays = drop_reserved(task.load(data, limit=limit), exclude=True)
    problem = fold_outcomes_problem(task, stays, folds)
    if problem is None:
        return None
    return (
        f"--limit {limit} leaves {len(stays)} stay(s) outside the protocol's reserve {problem}; raise --limit or "
        "lower --folds"
    )


def _train_cnn(args: argparse.Namespace) -> int:
    from models.calibrate import split_digest, training_split
    from models.cnn import CnnConfig
    from models.train_cnn import AUGMENTATION, train_cnn

    data = args.data or data_paths().xray_train
    config = CnnConfig()
    epochs = 30 if args.epochs is None else args.epochs
    batch_size = 32 if args.batch_size is None else args.batch_size
    lr = 3e-3 if args.lr is None else args.lr
    result = train_cnn(
        data,
        args.out,
        epochs=epochs,
        batch_size=batch_size,
        seed=args.seed,
        lr=lr,
        val_fraction=args.val_fraction,
        target_sensitivity=args.target_sensitivity,
        config=config,
        limit=args.limit,
        split_seed=args.split_seed,
        precision=args.precision,
        name=args.model,
    )
    from models.cards import XRAY_SOURCE, ModelCard, write_card
    from models.metrics import binary_evaluation

    meta = result.meta
    split_seed = args.seed if args.split_seed is None else args.split_seed
    paths, _, val = training_split(data, args.limit, split_seed, args.val_fraction)
    # which images were held out, for models.calibrate cnn to check its split against (when it is training's)
    digest = {"validation_digest": split_digest(paths, val)} if int(val.sum()) == result.n_val else {}
    evaluation = binary_evaluation(result.y_val, result.prob_val, meta.threshold)
    card = ModelCard(
        name=args.model,
        version=meta.version,
        task="Pneumonia on a pediatric chest X-ray (NORMAL vs PNEUMONIA): a score that decides the label at the "
        "threshold, and its calibrated probability",
        created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        data=XRAY_SOURCE,
        data_path=str(data),
        split=(
            f"patient-level split of the training folder: {result.n_train} training images, "
            f"{result.n_val} validation images from {result.n_val_patients} held-out patients "
            f"({args.val_fraction:.0%} of patients per class, seed {split_seed})"
        ),
        command=_command_line(),
        seed=args.seed,
        training_seconds=result.seconds,
        hyperparameters={
            "epochs": epochs,
            "batch_size": batch_size,
            "max_lr": lr,
            "optimizer": "AdamW (wd 0.05), one-cycle schedule",
            "loss": "class-balanced BCE with label smoothing 0.05",
            "augmentation": AUGMENTATION,
            # the images and the split, which models.calibrate cnn draws again
            "split_seed": split_seed,
            "val_fraction": args.val_fraction,
            **({"limit": args.limit} if args.limit else {}),
            **digest,
            "precision": ("bfloat16 autocast" if result.bf16 else "float32")
            + (f" (measured s per step: {result.precision_probe_s})" if result.precision_probe_s else " (chosen)")
            + ", channels_last; the threshold chosen on float32 predictions",
            **meta.config,
        },
        labels=meta.labels,
        threshold=meta.threshold,
        threshold_rule=str(meta.preprocessing["threshold_rule"]),
        evaluation_dataset="patient-held-out validation split (optimistic: same hospital and period as training)",
        evaluation=evaluation,
        intended_use=(
            "Decision support research and demonstration: flags pediatric AP chest radiographs that may "
            "show pneumonia for a clinician's review. Not for clinical use."
        ),
        limitations=[
            "Trained on pediatric (1-5 years) AP films from one hospital; adult, PA-only, portable ICU or "
            "other-vendor images are out of distribution.",
            "Training images were squashed to 224x224 by an earlier uploader; inference squashes too.",
            "Validation carved from the training folder overstates specificity: expect more false "
            "positives on new data (the official test split is harder).",
            "Probabilities reflect a 50/50 class prior (class-balanced loss): on the validation split they "
            "under-state pneumonia in the middle range (see the reliability diagram); read them as a ranking "
            "score against the operating threshold, not as a calibrated risk.",
            "Does not separate bacterial from viral pneumonia, nor detect any other finding.",
            "Not for clinical use.",
        ],
    )
    write_card(args.out, card)
    print(f"wrote {args.out}: val AUROC {evaluation.auroc:.4f}, threshold {meta.threshold:.4f}")
    return 0


def _train_sequence(args: argparse.Namespace) -> int:
    from models.train_sequence import train_sequence_cli

    return train_sequence_cli(args, command=_command_line())


if __name__ == "__main__":
    raise SystemExit(main())
