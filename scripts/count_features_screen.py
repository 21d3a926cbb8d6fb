"""Screen, not a rule: would recent measurement counts teach the networks better?

    .venv/bin/python scripts/count_features_screen.py sepsis 0 1      # task, then protocol splits (~3-5 min each)

The tree teacher reads a stay's dense channels at one hour: forward-filled values, this hour's masks, hours since
the last measurement and the cumulative count of measurements. How often a variable was measured lately (how
many lactates in the last 6 hours) is what clinicians order when they are worried, and the 2019 challenge's best
entries counted it; the teacher cannot, since it sees one hour. This screen adds, for every measured variable,
its number of measurements in the last 6 and the last 24 hours (log1p), and over all of them together.

Only the training stays (80 %) of the named protocol splits are read, never a split's held-out 20 % nor the
reserve. Inside them, stay-level cross-validation (sepsis 2 folds, mortality 5) fits the shipped teacher
(models/train_sequence.py TEACHER_PARAMS) on the other folds' hours with and without the counts and scores the
scored folds: sepsis by hourly AUROC and best-threshold normalised utility; mortality at the 48th hour by AUROC
and best event-1. Results and what was decided: docs/sepsis-protocol.md.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from models.metrics import best_utility_threshold
from models.protocol import development_stays, split_masks
from models.sequence import NormStats, _window_mean, engineer
from models.sequence_tasks import best_event1_threshold, sequence_task
from models.train_sequence import TEACHER_PARAMS, stay_folds

WINDOWS = (6, 24)


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


def main(task_name: str, splits: list[int]) -> None:
    task = sequence_task(task_name)
    schema = task.schema
    stays, _ = development_stays(task, task.default_data())
    masks = split_masks(stays, 8)
    n_folds = 2 if task_name == "sepsis" else 5
    for r in splits:
        train = [stays[i] for i in np.flatnonzero(~masks[r])]  # the split's 80 % only
        folds = stay_folds(train, n_folds, 0)
        stats = NormStats.fit_records([s.values for s in train], schema)
        dense = [engineer(s.values, stats, schema)[:, : schema.n_dense] for s in train]  # (hours, dense)
        counts = [recent_counts(s.values, schema.n_measured) for s in train]  # (hours, counts)
        wide = [np.concatenate([d, c], axis=1) for d, c in zip(dense, counts, strict=True)]
        scores = {}
        for name, x_all in (("teacher", dense), ("teacher + recent counts", wide)):
            prob: list[np.ndarray] = [np.empty(0)] * len(train)
            for k in range(n_folds):
                fit, scored = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
                x = np.concatenate([x_all[i] for i in fit])  # (hours, channels)
                y = np.concatenate([train[i].labels for i in fit]).astype(np.int64)  # (hours,)
                trees = HistGradientBoostingClassifier(**TEACHER_PARAMS, random_state=0).fit(x, y)
                for i in scored:
                    prob[i] = trees.predict_proba(x_all[i])[:, 1]
            if task_name == "sepsis":
                auroc = roc_auc_score(np.concatenate([s.labels for s in train]), np.concatenate(prob))
                _, second = best_utility_threshold([s.labels for s in train], prob)
                scores[name] = f"hourly AUROC {auroc:.4f}, best utility {second:.4f}"
            else:
                y_stay = np.array([int(s.labels.any()) for s in train])
                last = np.array([p[-1] for p in prob])
                _, second = best_event1_threshold(y_stay, last)
                scores[name] = f"AUROC at hour 48 {roc_auc_score(y_stay, last):.4f}, best event-1 {second:.4f}"
            print(f"{task_name} split {r}, {name}: {scores[name]}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [int(a) for a in sys.argv[2:]] or [0])
