"""Assemble the chest X-ray CNN's deep ensemble from trained members: measure what each ensemble size buys
on the validation patients, adopt a size by a rule stated before the measurement, write the checkpoint.

python -m models.ensemble --members DIR [DIR ...] --out DIR [--data DIR] [--threads N]

Members are checkpoints of ``python -m models.train cnn --seed S --split-seed 0`` (same patient split,
different seeds). For every ensemble size k the figures are the mean and standard deviation over every
subset of k members (so one lucky member cannot make a size look good); each subset is scored at its own
threshold (the training rule: highest threshold with validation sensitivity >= 0.95), on the validation
radiographs as they are and under each acquisition shift of models/shifts.py. The checkpoint holds the
first K members in the order given (none chosen by its validation score). Then run
``python -m models.calibrate cnn --weights DIR``: calibration, conformal sets and the OOD head are fitted
on the ensemble.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.backends import this_machine
from models.calibration import brier
from models.cards import ModelCard, read_card, write_card
from models.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from models.cnn import CnnConfig, PneumoniaCNN, to_tensor
from models.config import data_paths
from models.metrics import binary_evaluation, expected_calibration_error
from models.shifts import SHIFTS
from models.train_cnn import VAL_FRACTION, patient_split, sensitivity_first_threshold
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


def load_member(directory: Path) -> tuple[CheckpointMeta, dict[str, torch.Tensor], ModelCard]:
    meta, state = load_checkpoint(directory, expected="cnn")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=Path, nargs="+", required=True, help="single-CNN checkpoint directories")
    parser.add_argument("--out", type=Path, required=True, help="directory for the ensemble's model.pt and card")
    parser.add_argument("--data", type=Path, default=None, help="training folder (default: from MEDLENS_DATA_DIR)")
    parser.add_argument("--split-seed", type=int, default=0, help="the members' --split-seed")
    parser.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()))
    parser.add_argument(
        "--size", type=int, default=None, help="serve this many members whatever the rule says (the card records it)"
    )
    args = parser.parse_args(argv)
    if args.size is not None and not 1 <= args.size <= len(args.members):
        parser.error(f"--size must lie between 1 and the number of members ({len(args.members)})")
    torch.set_num_threads(args.threads)
    started = time.time()
    loaded = [load_member(d) for d in args.members]
    metas, states, cards = zip(*loaded, strict=True)
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

    data = args.data or data_paths().xray_train
    items = labelled_images(data)
    paths = [p for p, _ in items]
    labels = np.array([label for _, label in items])
    val = np.flatnonzero(patient_split(paths, labels, args.val_fraction, args.split_seed))
    if len(val) != cards[0].evaluation.n:
        parser.error(f"this split has {len(val)} validation images, the members' cards {cards[0].evaluation.n}")
    y = labels[val]
    images = [load_xray_file(paths[i]).pixels for i in val]
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
    command = "python -m models.ensemble " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out_config = config.model_copy(update={"members": size})
    meta = metas[0].model_copy(
        update={
            "version": time.strftime("cnn-%Y%m%d") + (f"-ens{size}" if size > 1 else ""),
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
        f"now run `python -m models.calibrate cnn --weights {args.out}`",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
