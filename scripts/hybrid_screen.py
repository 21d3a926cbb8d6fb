"""Screens, not rules: the teacher's trees fitted on every training stay of each protocol split.

    .venv/bin/python scripts/hybrid_screen.py trees sepsis runs/protocol/trees-sepsis-v1
    .venv/bin/python -m models.protocol ensemble runs/protocol/lstm-sepsis-v1-utility runs/protocol/trees-sepsis-v1 \
        --out runs/protocol/lstm+trees-sepsis-v1
    .venv/bin/python -m models.protocol compare runs/protocol/lstm-sepsis-v1-utility runs/protocol/lstm+trees-sepsis-v1
    .venv/bin/python scripts/hybrid_screen.py distil sepsis runs/protocol/lstm-sepsis-v1-utility-insample
    .venv/bin/python scripts/hybrid_screen.py fidelity sepsis runs/protocol/lstm-sepsis-v1-utility-insample-fit
    .venv/bin/python scripts/hybrid_screen.py fidelity-pure sepsis runs/protocol/lstm-sepsis-v1-pure-fit
    .venv/bin/python scripts/hybrid_screen.py fidelity-hourly sepsis runs/protocol/mlp-sepsis-v1-pure-fit

In each of the protocol's 8 splits (never the reserve), the trees of the shipped teacher (TEACHER_PARAMS, on the
schema's dense channels, towards the task's training labels with its teacher row weights) are fitted on every
training stay, with the split's own normalisation.

- ``trees``: they score the split's held-out stays (would trees served beside a network help?).
- ``distil``: one LSTM per split is trained as the protocol's (the shipped task, its seeds, batches and schedule,
  teacher weight 0.9), but towards those trees' in-sample probabilities instead of the cross-fitted teacher's; it
  scores the held-out stays (would the stronger trees teach better?).
- ``fidelity``: ``distil`` again, which also scores the training stays, and writes ``fidelity.json`` beside the
  run: the hourly AUROC of the trees and of the network on the training and the held-out stays, and the rank
  correlation of their log-odds on each (does the network fail to fit its teacher, or to generalise as it does?).
- ``fidelity-pure``: ``fidelity`` with the teacher's targets alone (teacher weight 1) and every hour weighted
  alike, so the loss asks for nothing but the teacher's ranking (positive weight 4 only shifts its log-odds).
- ``fidelity-hourly``: ``fidelity-pure`` with the LSTM replaced by an MLP that reads each hour's engineered
  channels alone (the LSTM's inputs, which already summarise the hours before), as the trees do: does the
  recurrent network lose what a per-hour network keeps?

Each mode's output is saved as a protocol run, so ``ensemble`` and ``compare`` read it as they read a network's.
Results and what was decided: docs/sepsis-protocol.md.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import HistGradientBoostingClassifier
from torch import nn

from models.protocol import _Held, _report, development_stays, save_run, split_masks
from models.risk_smoothing import logit
from models.sequence import NormStats, SequenceConfig, engineer
from models.sequence_tasks import SequenceTask, Stay, sequence_task
from models.train_cnn import seed_everything
from models.train_sequence import (
    POS_WEIGHT,
    TEACHER_PARAMS,
    TEACHER_WEIGHT,
    WEIGHT_DECAY,
    _fit_member,
    fit_teacher_trees,
    member_targets,
    predict_features,
)

REPEATS = 8  # the protocol's splits (seeds 2022 ... 2029)
EPOCHS, BATCH_SIZE, LR = 12, 32, 2e-3  # the protocol's defaults (python -m models.protocol run)


def main(argv: list[str]) -> int:
    mode, task_name, out = argv[0], argv[1], Path(argv[2])
    if mode not in ("trees", "distil", "fidelity", "fidelity-pure", "fidelity-hourly"):
        raise SystemExit(f"mode {mode!r}: choose trees, distil, fidelity, fidelity-pure or fidelity-hourly")
    pure = mode in ("fidelity-pure", "fidelity-hourly")
    torch.set_num_threads(2)
    task = sequence_task(task_name, weighting="uniform" if pure else None)
    stays, n_reserve = development_stays(task, task.default_data())
    columns = task.schema.n_dense
    held_out: list[_Held] = []
    seconds: list[float] = []
    fidelity: list[dict[str, float]] = []
    masks = split_masks(stays, REPEATS)
    for r, held in enumerate(masks):
        start = time.time()
        seed_everything(r)  # the protocol's seed + r, seed 0
        train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
        stats = NormStats.fit_records([stays[i].values for i in train_idx], task.schema)
        features = [engineer(s.values, stats, task.schema) for s in stays]  # per stay (hours, n_input)
        trees, read = _fit_trees(task, stays, [features[i][:, :columns] for i in train_idx], train_idx, r)
        # the trees score the held-out stays (trees) or, in sample, the very stays they were fitted on (distil)
        scored = {"trees": held_idx, "distil": train_idx}.get(mode, np.arange(len(stays)))
        tree_probs = {i: trees.predict_proba(features[i][:, :columns][:, read])[:, 1] for i in scored}  # (hours,)
        if mode == "trees":
            probs = [tree_probs[i] for i in held_idx]
        else:
            teacher: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(stays)
            for i in train_idx:
                teacher[i] = tree_probs[i].astype(np.float32)
            labels = [task.training_labels(s.labels) for s in stays]
            targets, tempered = member_targets(
                labels, teacher, train_idx, 1.0 if pure else TEACHER_WEIGHT["lstm"], task.teacher_temperature
            )
            if mode == "fidelity-hourly":
                predict = _fit_hourly([features[i] for i in train_idx], targets, seed=r)
            else:
                config = SequenceConfig(arch="lstm", members=1, encoder="mlp", n_input=task.schema.n_input)
                network, _ = _fit_member(
                    config, [features[i] for i in train_idx], [stays[i].labels.astype(np.float32) for i in train_idx],
                    [], [], epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR, seed=r, label=f"split {r + 1}/{REPEATS}",
                    targets=targets, task=task, tempered=tempered,
                )  # fmt: skip
                predict = partial(predict_features, network)
            probs = predict([features[i] for i in held_idx])
            if mode.startswith("fidelity"):
                fitted = predict([features[i] for i in train_idx])
                fidelity.append(
                    {"split": r}
                    | _agreement(
                        "train", [stays[i].labels for i in train_idx], [tree_probs[i] for i in train_idx], fitted
                    )
                    | _agreement("held", [stays[i].labels for i in held_idx], [tree_probs[i] for i in held_idx], probs)
                )
                print(fidelity[-1], flush=True)
        held_out.append(_Held(held_idx, probs))
        seconds.append(time.time() - start)
        print(f"split {r}: {len(train_idx)} training stays, {seconds[-1]:.0f} s", flush=True)
    settings: dict[str, float | int | str] = {"screen": mode, "params": str(TEACHER_PARAMS)}
    command = "python scripts/hybrid_screen.py " + " ".join(argv)
    n_train = [int((~m).sum()) for m in masks]
    arch = {"trees": "trees", "fidelity-hourly": "mlp"}.get(mode, "lstm")
    report = _report(task, arch, stays, n_reserve, held_out, seconds, settings, command, n_train=n_train)
    save_run(out, report, stays, held_out)
    if fidelity:
        (out / "fidelity.json").write_text(json.dumps(fidelity, indent=1) + "\n")
    print(f"{out}: {report.line()}")
    return 0


HOURLY_ROWS = 1024  # the hourly MLP's batch, in hours


def _fit_hourly(
    x: list[np.ndarray], targets: list[np.ndarray], seed: int
) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """An MLP on each hour's engineered channels alone (per stay (hours, n_input)), trained as the LSTM is (AdamW,
    one-cycle to LR, the same epochs, BCE with positive weight POS_WEIGHT, gradient norm clipped at 1) towards
    ``targets`` (per stay (hours,)), every hour alike -> a function from stays' features to their hourly
    probabilities."""
    torch.manual_seed(seed)
    xs = torch.from_numpy(np.concatenate(x).astype(np.float32))  # (hours, n_input)
    ys = torch.from_numpy(np.concatenate(targets).astype(np.float32))  # (hours,)
    width = 128
    model = nn.Sequential(
        nn.Linear(xs.shape[1], width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1)
    )
    steps = -(-len(xs) // HOURLY_ROWS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=EPOCHS * steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        order = torch.randperm(len(xs), generator=generator)
        for b in range(steps):
            rows = order[b * HOURLY_ROWS : (b + 1) * HOURLY_ROWS]
            logits = model(xs[rows]).squeeze(-1)  # (rows,)
            loss = F.binary_cross_entropy_with_logits(logits, ys[rows], pos_weight=torch.tensor(POS_WEIGHT))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
    model.eval()

    def predict(features: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return [torch.sigmoid(model(torch.from_numpy(f.astype(np.float32))).squeeze(-1)).numpy() for f in features]

    return predict


def _agreement(
    part: str, labels: list[np.ndarray], trees: list[np.ndarray], network: list[np.ndarray]
) -> dict[str, float]:
    """Hourly AUROC of the trees and of the network against the stays' labels, and the Spearman correlation of
    their log-odds, over every hour of the stays (``part`` names the keys)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    y = np.concatenate(labels)  # (hours,)
    t, n = np.concatenate(trees), np.concatenate(network)  # (hours,)
    return {
        f"{part}_trees_auroc": float(roc_auc_score(y, t)),
        f"{part}_network_auroc": float(roc_auc_score(y, n)),
        f"{part}_spearman": float(spearmanr(logit(t), logit(n)).statistic),
    }


def _fit_trees(
    task: SequenceTask, stays: list[Stay], dense: list[np.ndarray], train_idx: np.ndarray, seed: int
) -> tuple[HistGradientBoostingClassifier, np.ndarray]:
    """The teacher's trees on the training stays' dense channels ``dense`` (per stay (hours, columns)) -> (trees,
    the columns they read), fitted as the teacher fits them (:func:`models.train_sequence.fit_teacher_trees`)."""
    x = np.concatenate(dense)  # (hours, columns)
    y = np.concatenate([task.training_labels(stays[i].labels) for i in train_idx])  # (hours,)
    rows = task.teacher_rows([stays[i].labels for i in train_idx])
    w = None if rows is None else np.concatenate(rows)  # (hours,) or None
    return fit_teacher_trees(x, y, w, seed)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
