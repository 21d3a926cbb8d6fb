"""Assemble the chest X-ray CNN's deep ensemble from trained members: measure what each ensemble size buys
on the validation patients, adopt a size by a rule stated before the measurement, write the checkpoint.

python -m models.ensemble --members DIR [DIR ...] --out DIR [--data DIR] [--threads N]
python -m models.ensemble --rethreshold DIR [--data DIR] [--threads N]

Members are checkpoints of ``python -m models.train <name> --seed S --split-seed 0`` (same patient split,
different seeds) of one image CNN of the catalogue; the ensemble's checkpoint is for that catalogue name. For
every ensemble size k the figures are the mean and standard deviation over every subset of k members (so one
lucky member cannot make a size look good); each subset is scored at its own threshold (the training rule:
highest threshold with validation sensitivity >= 0.95), on the validation radiographs as they are and under
each acquisition shift of models/shifts.py. The checkpoint holds the first K members in the order given (none
chosen by its validation score). Then run
``python -m models.calibrate <name> --weights DIR``: calibration, conformal sets and the OOD head are fitted
on the ensemble.

``--rethreshold DIR`` re-derives the threshold of a checkpoint this command wrote (calibrated or not) with
today's rule: it scores the validation radiographs with the checkpoint's weights as assembling did, checks the
scores against its ``validation_predictions.npz``, and rewrites the threshold and the card's evaluation (the
rest of the checkpoint and card, the deep-ensemble table included, stays as measured).
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from models.backends import this_machine
from models.calibration import brier
from models.cards import ModelCard, read_card, write_card
from models.checkpoint import CARD_JSON, CheckpointMeta, load_checkpoint, save_checkpoint
from models.cli_args import non_negative_int, open_fraction, output_folder, positive_int
from models.cnn import CnnConfig, PneumoniaCNN, build_cnn, to_tensor
from models.config import data_paths
from models.errors import WeightsError
from models.metrics import binary_evaluation, expected_calibration_error
from models.shifts import SHIFTS
from models.train_cnn import (
    THRESHOLD_PLACEMENT,
    VAL_FRACTION,
    cnn_model_name,
    patient_split,
    sensitivity_first_threshold,
)
from models.trust_report import EnsembleReport, EnsembleRow
from models.xray_io import labelled_images, load_xray_file

#: Stated before the first measurement (docs/trust.md); applied by :func:`adopt_size`.
ADOPTION_RULE = (
    "Rule, stated before measuring: k members are adopted over k - 1 only if, on the means over subsets, "
    "they lower the operating-point drift under shift or the Brier score by more than the standard "
    "deviation of that figure across single members; K is the largest k reached this way from 1."
)
TARGET_SENSITIVITY = 0.95


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64))))


def load_cnn_checkpoint(directory: Path) -> tuple[CheckpointMeta, dict[str, Any]]:
    """The checkpoint at ``directory`` when its kind is an image CNN of the catalogue (``models.train <name>`` of
    an entry with architecture "cnn"); else a :class:`WeightsError` that says what it holds."""
    meta, state = load_checkpoint(directory)
    try:
        cnn_model_name(meta.kind)
    except ValueError as exc:
        raise WeightsError(f"{directory} holds a {meta.kind} model: {exc}") from None
    return meta, state


def load_member(directory: Path) -> tuple[CheckpointMeta, dict[str, torch.Tensor], ModelCard]:
    meta, state = load_cnn_checkpoint(directory)
    config = CnnConfig.model_validate(meta.config)
    if config.members != 1:
        raise ValueError(f"{directory} is already an ensemble ({config.members} members): pass single members")
    weights = {k: v for k, v in state.items() if not k.startswith("ood_head.")}
    return meta, weights, read_card(directory)


@torch.inference_mode()
def member_logits(members: list[PneumoniaCNN], images: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """(H, W) [0, 1] images -> (K, N) each member's logit, torch fp32."""
    out = []
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], members[0].config)  # (b, 1, S, S)
        out.append(torch.stack([m(x) for m in members]).numpy())  # (K, b)
    return np.concatenate(out, axis=1)


def operating_point(y: np.ndarray, prob: np.ndarray, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) at ``threshold`` (positive when prob >= threshold)."""
    return float((prob[y == 1] >= threshold).mean()), float((prob[y == 0] < threshold).mean())


def subset_figures(y: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """One ensemble's figures. ``logits``: (n_shifts, N) its mean logit per shift, row 0 unshifted."""
    from sklearn.metrics import roc_auc_score

    prob = sigmoid(logits)  # (n_shifts, N)
    threshold = sensitivity_first_threshold(y, prob[0], TARGET_SENSITIVITY)
    sens0, spec0 = operating_point(y, prob[0], threshold)
    shifted = [operating_point(y, p, threshold) for p in prob[1:]]
    return {
        "auroc": float(roc_auc_score(y, prob[0])),
        "brier": brier(y, prob[0]),
        "ece": expected_calibration_error(y, prob[0]),
        "specificity": spec0,
        "drift": float(np.mean([abs(se - sens0) + abs(sp - spec0) for se, sp in shifted])) if shifted else 0.0,
        "worst_specificity": min([spec0, *(sp for _, sp in shifted)]),
    }


def size_rows(y: np.ndarray, logits: np.ndarray) -> list[EnsembleRow]:
    """``logits``: (n_shifts, K, N) -> one row per ensemble size 1..K (mean, std over its subsets)."""
    k_all = logits.shape[1]
    rows = []
    for size in range(1, k_all + 1):
        figures = [
            subset_figures(y, logits[:, list(s), :].mean(axis=1)) for s in itertools.combinations(range(k_all), size)
        ]

        def ms(key: str, figures: list[dict[str, float]] = figures) -> tuple[float, float]:
            values = np.array([f[key] for f in figures])
            return float(values.mean()), float(values.std())

        rows.append(
            EnsembleRow(
                size=size,
                subsets=len(figures),
                auroc=ms("auroc"),
                brier=ms("brier"),
                ece=ms("ece"),
                specificity=ms("specificity"),
                drift=ms("drift"),
                worst_specificity=ms("worst_specificity"),
                adopted=False,
            )
        )
    return rows


def adopt_size(rows: list[EnsembleRow]) -> int:
    """:data:`ADOPTION_RULE`: step from 1 while the next size beats the previous by more than the single
    members' spread on drift or on Brier (both: lower is better)."""
    single = rows[0]
    size = 1
    for previous, row in itertools.pairwise(rows):
        better_drift = previous.drift[0] - row.drift[0] > single.drift[1]
        better_brier = previous.brier[0] - row.brier[0] > single.brier[1]
        if not (better_drift or better_brier):
            break
        size = row.size
    return size


def validation_set(data: Path, split_seed: int, val_fraction: float) -> tuple[np.ndarray, list[Path]]:
    """(labels (N,), paths) of the validation radiographs of the members' patient split of ``data``."""
    items = labelled_images(data)
    paths = [p for p, _ in items]
    labels = np.array([label for _, label in items])
    val = np.flatnonzero(patient_split(paths, labels, val_fraction, split_seed))
    return labels[val], [paths[i] for i in val]


#: Largest difference from the stored validation scores that ``--rethreshold`` accepts as the same scores
#: (torch on another thread count or CPU may differ in the last bits; other weights or patients differ far more).
SCORE_TOLERANCE = 1e-5


def rethreshold(parser: argparse.ArgumentParser, directory: Path, args: argparse.Namespace, command: str) -> int:
    """Re-derive the threshold of the checkpoint in ``directory`` (written by this command) with
    :func:`sensitivity_first_threshold` on its validation scores, recomputed as :func:`main` computed them: each
    member's torch fp32 logit of every validation radiograph, their mean, its sigmoid. Rewrites model.pt's
    threshold and the card's threshold, rule and evaluation; the npz of validation scores is left as it is."""
    meta, state = load_cnn_checkpoint(directory)
    card = read_card(directory)
    if card.ensemble is None:
        parser.error(
            f"{directory} was not written by models.ensemble: its threshold was chosen by models.train on its "
            "cached validation images"
        )
    net = build_cnn(CnnConfig.model_validate(meta.config))
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("ood_head.")})
    net.eval()
    y, val_paths = validation_set(args.data or data_paths().xray_train, args.split_seed, args.val_fraction)
    stored = np.load(directory / "validation_predictions.npz")
    if not np.array_equal(y, stored["y"]):
        parser.error(
            f"this split's {len(y)} validation labels are not those of {directory}/validation_predictions.npz: pass "
            "the members' --split-seed, --val-fraction and --data"
        )
    logits = member_logits(net.members, [load_xray_file(p).pixels for p in val_paths])  # (K, N)
    prob = sigmoid(logits.mean(axis=0))  # (N,)
    diff = float(np.abs(prob - stored["prob"]).max())
    if diff > SCORE_TOLERANCE:
        parser.error(
            f"these weights' validation scores differ from {directory}/validation_predictions.npz by up to {diff:.3g}: "
            "not the scores its threshold was chosen on"
        )
    threshold = sensitivity_first_threshold(y, prob, TARGET_SENSITIVITY)
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rule = (
        f"highest threshold with validation sensitivity >= {TARGET_SENSITIVITY} ({THRESHOLD_PLACEMENT}); "
        f"re-derived {measured} by `{command}` from these weights' validation scores (largest difference from "
        f"validation_predictions.npz: {diff:.1g}); the threshold before was {card.threshold!r}"
    )
    preprocessing = {**meta.preprocessing, "threshold_rule": rule}
    save_checkpoint(directory, meta.model_copy(update={"threshold": threshold, "preprocessing": preprocessing}), state)
    evaluation = binary_evaluation(y, prob, threshold)
    write_card(
        directory, card.model_copy(update={"threshold": threshold, "threshold_rule": rule, "evaluation": evaluation})
    )
    before, after = card.evaluation, evaluation
    print(
        f"wrote {directory}: threshold {card.threshold!r} -> {threshold!r}; sensitivity {before.sensitivity:.4f} -> "
        f"{after.sensitivity:.4f}, specificity {before.specificity:.4f} -> {after.specificity:.4f}, "
        f"F1 {before.f1:.4f} -> {after.f1:.4f} (scores differ from the stored ones by up to {diff:.1g})"
    )
    return 0


def _member(
    parser: argparse.ArgumentParser, directory: Path
) -> tuple[CheckpointMeta, dict[str, torch.Tensor], ModelCard]:
    """:func:`load_member` of ``directory``; one that is no single-CNN checkpoint with its card is a usage error
    naming it (status 2)."""
    try:
        return load_member(directory)
    except ValidationError as exc:  # a card.json that is no model card (read after the checkpoint)
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        said = f"its {CARD_JSON} is not a model card this code can read ({where}: {first['msg']})"
    except (WeightsError, ValueError) as exc:  # no checkpoint, one of another model, an ensemble
        said = str(exc)
    except OSError as exc:  # a checkpoint without its card
        said = f"no readable {CARD_JSON} beside its checkpoint ({exc.strerror or type(exc).__name__})"
    parser.error(f"--members {directory}: {said}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=Path, nargs="+", default=None, help="single-CNN checkpoint directories")
    parser.add_argument(
        "--out",
        type=output_folder,
        default=None,
        help="directory for the ensemble's model.pt and card (made if missing)",
    )
    parser.add_argument(
        "--rethreshold",
        type=Path,
        default=None,
        metavar="DIR",
        help="instead of assembling: re-derive the threshold of the checkpoint in DIR (written by this command)",
    )
    parser.add_argument("--data", type=Path, default=None, help="training folder (default: from MEDLENS_DATA_DIR)")
    parser.add_argument("--split-seed", type=non_negative_int, default=0, help="the members' --split-seed")
    parser.add_argument("--val-fraction", type=open_fraction, default=VAL_FRACTION, help="the members' --val-fraction")
    parser.add_argument("--threads", type=positive_int, default=max(1, torch.get_num_threads()))
    parser.add_argument(
        "--size", type=int, default=None, help="serve this many members whatever the rule says (the card records it)"
    )
    args = parser.parse_args(argv)
    command = "python -m models.ensemble " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.rethreshold is not None:
        if args.members or args.out or args.size:
            parser.error("--rethreshold takes no --members, --out or --size")
        torch.set_num_threads(args.threads)
        return rethreshold(parser, args.rethreshold, args, command)
    if not args.members or args.out is None:
        parser.error("--members and --out are required (or --rethreshold DIR)")
    if args.size is not None and not 1 <= args.size <= len(args.members):
        parser.error(f"--size must lie between 1 and the number of members ({len(args.members)})")
    torch.set_num_threads(args.threads)
    started = time.time()
    loaded = [_member(parser, d) for d in args.members]
    metas, states, cards = zip(*loaded, strict=True)
    kinds = {m.kind for m in metas}
    if len(kinds) != 1:
        parser.error(f"members must be checkpoints of one catalogue model, not of {', '.join(sorted(kinds))}")
    splits = {c.split for c in cards}
    base = {k: v for k, v in metas[0].config.items() if k != "members"}
    if len(splits) != 1 or any({k: v for k, v in m.config.items() if k != "members"} != base for m in metas):
        parser.error("members must share one patient split and one configuration (train with the same --split-seed)")
    config = CnnConfig.model_validate(metas[0].config)
    members = []
    for state in states:
        net = PneumoniaCNN(config)
        net.load_state_dict(state)
        members.append(net.eval())

    y, val_paths = validation_set(args.data or data_paths().xray_train, args.split_seed, args.val_fraction)
    if len(y) != cards[0].evaluation.n:
        parser.error(f"this split has {len(y)} validation images, the members' cards {cards[0].evaluation.n}")
    images = [load_xray_file(p).pixels for p in val_paths]
    logits = np.stack(
        [member_logits(members, [shift(a) for a in images]) for shift in SHIFTS.values()]
    )  # (n_shifts, K, N); SHIFTS starts with "none"
    rows = size_rows(y, logits)
    by_rule = adopt_size(rows)
    size = args.size or by_rule
    rows[size - 1].adopted = True

    prob_members = sigmoid(logits[0, :size])  # (K', N)
    prob = sigmoid(logits[0, :size].mean(axis=0))  # (N,)
    threshold = sensitivity_first_threshold(y, prob, TARGET_SENSITIVITY)
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out_config = config.model_copy(update={"members": size})
    meta = metas[0].model_copy(
        update={
            "version": time.strftime(f"{metas[0].kind}-%Y%m%d") + (f"-ens{size}" if size > 1 else ""),
            "threshold": threshold,
            "config": out_config.model_dump(mode="json"),
            "trust": None,
        }
    )
    if size == 1:
        state = dict(states[0])
    else:
        state = {f"nets.{i}.{k}": v for i, s in enumerate(states[:size]) for k, v in s.items()}
    save_checkpoint(args.out, meta, state)
    np.savez_compressed(args.out / "validation_predictions.npz", y=y, prob=prob, member_prob=prob_members)

    member_notes = [
        f"`{c.command}` (seed {c.seed}, {c.training_seconds / 60:.1f} min, created {c.created})" for c in cards
    ]
    report = EnsembleReport(
        measured=measured,
        command=command,
        machine=this_machine().describe(),
        members=member_notes,
        n_validation=len(y),
        rule=ADOPTION_RULE
        + f" The rule adopts {by_rule} member(s)"
        + ("." if size == by_rule else f"; {size} were served by --size."),
        rows=rows,
        spread=float(prob_members.std(axis=0).mean()) if size > 1 else 0.0,
    )
    first = cards[0]
    card = first.model_copy(
        update={
            "name": meta.kind,
            "version": meta.version,
            "created": measured,
            "command": command,
            "training_seconds": float(sum(c.training_seconds for c in cards[:size])),
            "hyperparameters": {
                **first.hyperparameters,
                "members": size,
                "member seeds": [c.seed for c in cards[:size]],
            },
            "threshold": threshold,
            "evaluation": binary_evaluation(y, prob, threshold),
            "speed": None,
            "trust": None,
            "ensemble": report,
        }
    )
    write_card(args.out, card)
    for r in rows:
        print(
            f"k={r.size}{'*' if r.adopted else ' '} subsets {r.subsets:2d}  AUROC {r.auroc[0]:.4f}±{r.auroc[1]:.4f}  "
            f"Brier {r.brier[0]:.4f}±{r.brier[1]:.4f}  ECE {r.ece[0]:.4f}±{r.ece[1]:.4f}  "
            f"spec {r.specificity[0]:.3f}±{r.specificity[1]:.3f}  drift {r.drift[0]:.4f}±{r.drift[1]:.4f}  "
            f"worst spec {r.worst_specificity[0]:.3f}±{r.worst_specificity[1]:.3f}"
        )
    print(
        f"({time.time() - started:.0f} s) wrote {args.out}: {size} member(s), threshold {threshold:.4f}; "
        f"now run `python -m models.calibrate {metas[0].kind} --weights {args.out}`",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
