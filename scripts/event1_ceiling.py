"""A diagnostic, not a rule: how much event-1 do the mortality runs lose to their threshold?

    .venv/bin/python scripts/event1_ceiling.py runs/protocol/mortality-lstm-stayteacher-5fold [RUN ...]

For each saved protocol run (``python -m models.protocol run mortality-*``), each split's held-out event-1 at
the threshold the protocol chose on the other splits (what the run reports), beside the best event-1 any threshold
reaches on that split's own stays: a ceiling no rule can reach, since it looks at the labels it is scored on. The
gap is what a better threshold rule could at most recover; the ceiling is what the ranking itself allows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from models.protocol import development_stays, load_held, read_report
from models.sequence_tasks import event1, sequence_task, stay_outcome


def main(runs: list[Path]) -> None:
    task = sequence_task("mortality")
    stays, _ = development_stays(task, task.default_data())
    print("| run | event-1 at the chosen threshold | best event-1 at any threshold (ceiling) | gap |")
    print("|---|---|---|---|")
    for run in runs:
        report = read_report(run)
        chosen, ceiling = [], []
        for repeat, held in zip(report.repeats, load_held(run, stays), strict=True):
            y = np.array([stay_outcome(stays[i].labels) for i in held.idx])  # (stays,)
            score = task.stay_scores(held.probs)  # (stays,) the 48th hour's risk
            chosen.append(event1(y, (score >= repeat.threshold).astype(np.int64)))
            ceiling.append(max(event1(y, (score >= t).astype(np.int64)) for t in np.unique(score)))
        gap = np.subtract(ceiling, chosen)
        print(
            f"| `{run.name}` | {np.mean(chosen):.4f} ± {np.std(chosen, ddof=1):.4f} | "
            f"{np.mean(ceiling):.4f} ± {np.std(ceiling, ddof=1):.4f} | {gap.mean():.4f} ± {gap.std(ddof=1):.4f} |"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main([Path(a) for a in sys.argv[1:]])
