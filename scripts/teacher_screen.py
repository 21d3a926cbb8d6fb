"""Screens, not rules: would the tree teacher teach the networks better with other inputs or another budget?

    .venv/bin/python scripts/teacher_screen.py counts sepsis 0 1    # variant, task, protocol splits
    .venv/bin/python scripts/teacher_screen.py rounds mortality 0

Variants, each against the shipped teacher (models/train_sequence.py TEACHER_PARAMS on the schema's dense channels):

- ``counts``: recent measurement counts as further inputs. The teacher reads one hour: forward-filled values, this
  hour's masks, hours since the last measurement and the cumulative count of measurements. How often a variable
  was measured lately (what clinicians order when worried; the 2019 challenge's best entries counted it) is
  beyond that view, so this adds, for every measured variable and for all of them together, the number of
  measurements in the last 6 and the last 24 hours (log1p).
- ``rounds``: the boosting budget. scikit-learn holds out 10 % of the rows for early stopping once there are
  more than 10,000 of them; this fits on every row (no early stopping) with 300 rounds, and with 900.

Only the training stays (80 %) of the named protocol splits are read, never a split's held-out 20 % nor the
reserve. Inside them, stay-level cross-validation (sepsis 2 folds, mortality 5) fits each teacher on the other
folds' hours and scores the scored folds: sepsis by hourly AUROC and best-threshold normalised utility; mortality
at the 48th hour by AUROC and best event-1. Results and what was decided: docs/sepsis-protocol.md.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from models.metrics import best_utility_threshold
from models.protocol import development_stays, split_masks
from models.sequence import NormStats, _window_mean, engineer
from models.sequence_tasks import Stay, best_event1_threshold, sequence_task
from models.train_sequence import TEACHER_PARAMS, stay_folds

WINDOWS = (6, 24)

#: a teacher to screen: (name, its inputs from (stay, dense channels), its tree parameters)
Teacher = tuple[str, Callable[[Stay, np.ndarray], np.ndarray], dict[str, object]]


def recent_counts(values: np.ndarray, n_measured: int) -> np.ndarray:
    """(hours, columns) raw with NaN -> (hours, (n_measured + 1) * len(WINDOWS)): log1p of the measurements of
    each measured variable, and of all of them, in the last w hours (rows t - w + 1 .. t), for w in WINDOWS."""
    observed = (~np.isnan(values[:, :n_measured])).astype(np.float64)  # (hours, m)
    observed = np.concatenate([observed, observed.sum(axis=1, keepdims=True)], axis=1)  # (hours, m + 1)
    hours = len(values)
    parts = []
    for w in WINDOWS:
        span = np.minimum(np.arange(hours) + 1, w)[:, None]  # rows in the window so far
        parts.append(np.log1p(_window_mean(observed, w) * span))
    return np.concatenate(parts, axis=1).astype(np.float32)


def variants(name: str, n_measured: int) -> list[Teacher]:
    def dense(_: Stay, d: np.ndarray) -> np.ndarray:
        return d

    def with_counts(s: Stay, d: np.ndarray) -> np.ndarray:
        return np.concatenate([d, recent_counts(s.values, n_measured)], axis=1)

    shipped: Teacher = ("teacher", dense, dict(TEACHER_PARAMS))
    if name == "counts":
        return [shipped, ("teacher + recent counts", with_counts, dict(TEACHER_PARAMS))]
    if name == "rounds":
        every_row: dict[str, object] = {**TEACHER_PARAMS, "early_stopping": False}
        return [
            shipped,
            ("every row, 300 rounds", dense, every_row),
            ("every row, 900 rounds", dense, {**every_row, "max_iter": 900}),
        ]
    raise SystemExit(f"unknown variant {name!r}: counts or rounds")


def main(variant: str, task_name: str, splits: list[int]) -> None:
    task = sequence_task("sepsis" if task_name == "sepsis" else "mortality")
    schema = task.schema
    teachers = variants(variant, schema.n_measured)
    stays, _ = development_stays(task, task.default_data())
    masks = split_masks(stays, 8)
    n_folds = 2 if task_name == "sepsis" else 5
    for r in splits:
        train = [stays[i] for i in np.flatnonzero(~masks[r])]  # the split's 80 % only
        folds = stay_folds(train, n_folds, 0)
        stats = NormStats.fit_records([s.values for s in train], schema)
        dense = [engineer(s.values, stats, schema)[:, : schema.n_dense] for s in train]  # (hours, dense)
        for name, inputs, params in teachers:
            started = time.time()
            x_all = [inputs(s, d) for s, d in zip(train, dense, strict=True)]  # (hours, channels) per stay
            prob: list[np.ndarray] = [np.empty(0)] * len(train)
            rounds = []
            for k in range(n_folds):
                fit, scored = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
                x = np.concatenate([x_all[i] for i in fit])  # (hours, channels)
                y = np.concatenate([train[i].labels for i in fit]).astype(np.int64)  # (hours,)
                trees = HistGradientBoostingClassifier(**params, random_state=0).fit(x, y)
                rounds.append(trees.n_iter_)
                for i in scored:
                    prob[i] = trees.predict_proba(x_all[i])[:, 1]
            if task_name == "sepsis":
                auroc = roc_auc_score(np.concatenate([s.labels for s in train]), np.concatenate(prob))
                _, second = best_utility_threshold([s.labels for s in train], prob)
                figures = f"hourly AUROC {auroc:.4f}, best utility {second:.4f}"
            else:
                y_stay = np.array([int(s.labels.any()) for s in train])
                last = np.array([p[-1] for p in prob])
                _, second = best_event1_threshold(y_stay, last)
                figures = f"AUROC at hour 48 {roc_auc_score(y_stay, last):.4f}, best event-1 {second:.4f}"
            print(
                f"{task_name} split {r}, {name}: {figures} (rounds {rounds}, {time.time() - started:.0f} s)", flush=True
            )


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[2] not in ("sepsis", "mortality"):
        raise SystemExit("usage: teacher_screen.py counts|rounds sepsis|mortality [SPLIT ...]")
    main(sys.argv[1], sys.argv[2], [int(a) for a in sys.argv[3:]] or [0])
