"""A screen, not a rule: would the teacher's trees, served beside a network (mean logit), beat the network alone?

    .venv/bin/python scripts/hybrid_screen.py sepsis runs/protocol/trees-sepsis-v1
    .venv/bin/python -m models.protocol ensemble runs/protocol/lstm-sepsis-v1-utility runs/protocol/trees-sepsis-v1 \
        --out runs/protocol/lstm+trees-sepsis-v1
    .venv/bin/python -m models.protocol compare runs/protocol/lstm-sepsis-v1-utility runs/protocol/lstm+trees-sepsis-v1

In each of the protocol's 8 splits (never the reserve), the trees of the shipped teacher (TEACHER_PARAMS, on the
schema's dense channels, towards the task's training labels with its teacher row weights) are fitted on every
training stay, with the split's own normalisation, and score the split's held-out stays. The result is saved as a
protocol run, so ``ensemble`` and ``compare`` read it as they read a network's. Results and what was decided:
docs/sepsis-protocol.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from models.protocol import _Held, _report, development_stays, save_run, split_masks
from models.sequence import NormStats, engineer
from models.sequence_tasks import sequence_task
from models.train_sequence import TEACHER_PARAMS

REPEATS = 8  # the protocol's splits (seeds 2022 ... 2029)


def main(argv: list[str]) -> int:
    task_name, out = argv[0], Path(argv[1])
    task = sequence_task(task_name)
    stays, n_reserve = development_stays(task, task.default_data())
    columns = task.schema.n_dense
    held_out: list[_Held] = []
    seconds: list[float] = []
    for r, held in enumerate(split_masks(stays, REPEATS)):
        start = time.time()
        train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
        stats = NormStats.fit_records([stays[i].values for i in train_idx], task.schema)
        features = [engineer(s.values, stats, task.schema)[:, :columns] for s in stays]  # per stay (hours, columns)
        x = np.concatenate([features[i] for i in train_idx])  # (hours, columns)
        y = np.concatenate([task.training_labels(stays[i].labels) for i in train_idx])  # (hours,)
        rows = task.teacher_rows([stays[i].labels for i in train_idx])
        w = None if rows is None else np.concatenate(rows)  # (hours,) or None
        read = ~np.isnan(x).all(axis=0)  # a column never measured in the fit set cannot be binned
        trees = HistGradientBoostingClassifier(**TEACHER_PARAMS, random_state=r).fit(x[:, read], y, sample_weight=w)
        probs = [trees.predict_proba(features[i][:, read])[:, 1] for i in held_idx]  # per stay (hours,)
        held_out.append(_Held(held_idx, probs))
        seconds.append(time.time() - start)
        print(f"split {r}: {len(train_idx)} training stays, {seconds[-1]:.0f} s", flush=True)
    settings: dict[str, float | int | str] = {"model": "trees", "params": str(TEACHER_PARAMS)}
    command = "python scripts/hybrid_screen.py " + " ".join(argv)
    n_train = [int((~m).sum()) for m in split_masks(stays, REPEATS)]
    report = _report(task, "trees", stays, n_reserve, held_out, seconds, settings, command, n_train=n_train)
    save_run(out, report, stays, held_out)
    print(f"{out}: {report.line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
