"""Screen, not a rule: would a tree teacher on stay-level aggregates teach the mortality networks better?

    .venv/bin/python scripts/mortality_teacher_screen.py 0 1      # protocol splits to screen (~2.5 min each)
    .venv/bin/python scripts/mortality_teacher_screen.py --linear 0 1
    .venv/bin/python scripts/mortality_teacher_screen.py --windows 0 1
    .venv/bin/python scripts/mortality_teacher_screen.py --outcomes 0 1

Only the training stays (80 %) of the named protocol splits are read, never a split's held-out 20 % nor the
reserve. Inside them, 5-fold stay-level cross-validation compares, on each stay's 48th hour:
the shipped hourly tree teacher (models/train_sequence.py TEACHER_PARAMS on the schema's dense channels, fitted
on every hour of the other folds), gradient-boosted trees on classic per-stay aggregates of the 48 hours
(first, last, min, max, mean and count of each measured variable, total urine, the descriptors), and the mean
logit of the two; with ``--linear``, also an L2 logistic regression on the same aggregates (medians imputed,
missing indicators, standardised; a learner unlike trees) and the mean logit of all three; with ``--windows``,
the aggregate trees on the aggregates and :func:`windowed` ones, and their mean logit with the hourly teacher;
with ``--outcomes``, what the challenge's other outcomes (:data:`SIDE_OUTCOMES`, training targets only, never
inputs) add: (A) aggregate trees towards "died at any recorded time" as a third member of the mean logit, and
(B) aggregate trees towards in-hospital death on the aggregates plus the stay's predicted side outcomes
(:func:`stacked`, cross-fitted inside the fitting stays), in the mean logit with the hourly teacher.
Results and what was decided: docs/sepsis-protocol.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from models.mortality_features import stay_aggregates
from models.protocol import development_stays, split_masks
from models.sequence import NormStats, engineer
from models.sequence_tasks import sequence_task
from models.train_sequence import AGGREGATE_PARAMS, TEACHER_PARAMS, stay_folds


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


#: (name, numerator, denominator) of the ratios :func:`windowed` summarises, and which of (min, max, last)
RATIOS = (("PaO2", "FiO2", ("min", "last")), ("HR", "SysABP", ("max", "last")), ("BUN", "Creatinine", ("last",)))


def _summary(x: np.ndarray, how: str) -> float:
    seen = x[np.isfinite(x)]
    if not seen.size:
        return float("nan")
    return float({"min": seen.min, "max": seen.max, "mean": seen.mean, "last": lambda: seen[-1]}[how]())


def windowed(values: np.ndarray, columns: tuple[str, ...], measured: tuple[str, ...]) -> np.ndarray:
    """(hours, columns) one stay's raw grid, NaN where unmeasured -> (n,) windowed aggregates: per measured
    variable its std, the min, max and mean of hours 1-24, the mean of hours 37-48, the slope per hour from first
    to last measurement and the hours since the last one at the stay's end (NaN when not defined); then
    :data:`RATIOS` per hour where both parts are measured."""
    hours = values.shape[0]
    out: list[float] = []
    for j in range(len(measured)):
        x = values[:, j]  # (hours,)
        at = np.flatnonzero(np.isfinite(x))
        first_day, last_12 = x[:24], x[36:]
        out += [float(np.std(x[at])) if at.size > 1 else np.nan]
        out += [_summary(first_day, "min"), _summary(first_day, "max"), _summary(first_day, "mean")]
        out += [_summary(last_12, "mean")]
        out += [float((x[at[-1]] - x[at[0]]) / (at[-1] - at[0])) if at.size > 1 and at[-1] > at[0] else np.nan]
        out += [float(hours - 1 - at[-1]) if at.size else np.nan]
    for num, den, hows in RATIOS:
        a, b = values[:, columns.index(num)], values[:, columns.index(den)]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(np.isfinite(a) & np.isfinite(b) & (b > 0), a / b, np.nan)  # (hours,)
        out += [_summary(ratio, how) for how in hows]
    return np.array(out, dtype=np.float64)


#: the outcomes file's columns besides In-hospital_death that a teacher may learn from (never inputs: a stay to
#: score has none of them); -1 there means "not recorded" (Survival: "not known to have died")
SIDE_OUTCOMES = ("SAPS-I", "SOFA", "Length_of_stay", "Survival")


def side_outcomes(data: Path) -> dict[str, np.ndarray]:
    """{RecordID: (len(SIDE_OUTCOMES),) values, NaN where the file says -1} from Outcomes-a.txt and -b.txt."""
    out: dict[str, np.ndarray] = {}
    for name in ("Outcomes-a.txt", "Outcomes-b.txt"):
        lines = (data / name).read_text().split()
        header = lines[0].split(",")
        cols = [header.index(c) for c in SIDE_OUTCOMES]
        for line in lines[1:]:
            cells = line.split(",")
            v = np.array([float(cells[c]) for c in cols])
            out[str(int(cells[0]))] = np.where(v < 0, np.nan, v)
    return out


def side_targets(side: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(stays, len(SIDE_OUTCOMES)) -> the side targets a teacher is fitted towards, NaN where not recorded:
    died at any recorded time (0/1), SAPS-I, SOFA and log(1 + length of stay in days)."""
    return [
        ("died", np.isfinite(side[:, 3]).astype(np.float64)),
        ("SAPS-I", side[:, 0]),
        ("SOFA", side[:, 1]),
        ("log stay", np.log1p(side[:, 2])),
    ]


def _side_fit(x: np.ndarray, target: np.ndarray, classify: bool) -> object:
    known = np.isfinite(target)
    if classify:
        model = HistGradientBoostingClassifier(**AGGREGATE_PARAMS, random_state=0)
    else:
        model = HistGradientBoostingRegressor(**AGGREGATE_PARAMS, random_state=0)
    return model.fit(x[known], target[known].astype(int) if classify else target[known])


def _side_predict(model: object, x: np.ndarray) -> np.ndarray:
    if isinstance(model, HistGradientBoostingClassifier):
        return _logit(np.clip(model.predict_proba(x)[:, 1], 1e-6, 1 - 1e-6))
    assert isinstance(model, HistGradientBoostingRegressor)
    return model.predict(x)


def stacked(agg: np.ndarray, targets: list[tuple[str, np.ndarray]], fit: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """(stays, features) aggregates -> (stays, features + len(targets)) with each stay's predicted side outcomes
    appended: for the ``fit`` stays out of 5 folds inside them (so the in-hospital trees never learn from a side
    prediction made with its own answer), for the ``scored`` stays from models fitted on every ``fit`` stay."""
    extra = np.full((len(agg), len(targets)), np.nan)  # (stays, targets)
    inner = np.arange(len(fit)) % 5
    np.random.default_rng(0).shuffle(inner)
    for t, (name, target) in enumerate(targets):
        classify = name == "died"
        for k in range(5):
            a, b = fit[inner != k], fit[inner == k]
            extra[b, t] = _side_predict(_side_fit(agg[a], target[a], classify), agg[b])
        extra[scored, t] = _side_predict(_side_fit(agg[fit], target[fit], classify), agg[scored])
    return np.concatenate([agg, extra], axis=1)


def _linear() -> Pipeline:
    """L2 logistic regression on aggregates: medians for the unmeasured, with an indicator each, standardised."""
    return make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=0.05, max_iter=2000),
    )


def main(splits: list[int], linear: bool = False, windows: bool = False, outcomes: bool = False) -> None:
    task = sequence_task("mortality")
    stays, _ = development_stays(task, task.default_data())
    masks = split_masks(stays, 8)
    side_of = side_outcomes(task.default_data()) if outcomes else {}
    for r in splits:
        train = [stays[i] for i in np.flatnonzero(~masks[r])]  # the split's 80 % only
        y = np.array([int(s.labels.any()) for s in train])
        if outcomes:
            targets = side_targets(np.stack([side_of[s.name] for s in train]))  # (stays,) each
            died = targets[0][1]
            p_any, p_stacked = np.zeros(len(train)), np.zeros(len(train))
        agg = np.stack([stay_aggregates(s.values, task.schema) for s in train])  # (stays, features)
        if windows:
            wide = np.stack([windowed(s.values, task.schema.columns, task.schema.measured) for s in train])
            wide = np.concatenate([agg, wide], axis=1)  # (stays, features + windowed)
            p_wide = np.zeros(len(train))
        folds = stay_folds(train, 5, 0)
        stats = NormStats.fit_records([s.values for s in train], task.schema)
        dense = [engineer(s.values, stats, task.schema)[:, : task.schema.n_dense] for s in train]  # (48, dense)
        p_agg, p_hourly, p_lin = np.zeros(len(train)), np.zeros(len(train)), np.zeros(len(train))
        for k in range(5):
            fit, scored = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
            trees = HistGradientBoostingClassifier(**AGGREGATE_PARAMS, random_state=0).fit(agg[fit], y[fit])
            p_agg[scored] = trees.predict_proba(agg[scored])[:, 1]
            if windows:
                wider = HistGradientBoostingClassifier(**AGGREGATE_PARAMS, random_state=0).fit(wide[fit], y[fit])
                p_wide[scored] = wider.predict_proba(wide[scored])[:, 1]
            if outcomes:
                anyone = HistGradientBoostingClassifier(**AGGREGATE_PARAMS, random_state=0)
                p_any[scored] = anyone.fit(agg[fit], died[fit].astype(int)).predict_proba(agg[scored])[:, 1]
                wide_side = stacked(agg, targets, fit, scored)  # (stays, features + 4)
                trees_side = HistGradientBoostingClassifier(**AGGREGATE_PARAMS, random_state=0)
                p_stacked[scored] = trees_side.fit(wide_side[fit], y[fit]).predict_proba(wide_side[scored])[:, 1]
            if linear:
                lin = _linear().fit(agg[fit], y[fit])
                p_lin[scored] = lin.predict_proba(agg[scored])[:, 1]
            x = np.concatenate([dense[i] for i in fit])  # (hours, dense)
            hour_y = np.concatenate([np.full(len(dense[i]), y[i]) for i in fit])  # (hours,)
            teacher = HistGradientBoostingClassifier(**TEACHER_PARAMS, random_state=0).fit(x, hour_y)
            p_hourly[scored] = teacher.predict_proba(np.stack([dense[i][-1] for i in scored]))[:, 1]
        both = _logit(p_agg) + _logit(p_hourly)
        print(
            f"split {r}: aggregate trees {roc_auc_score(y, p_agg):.4f}, hourly teacher at hour 48 "
            f"{roc_auc_score(y, p_hourly):.4f}, their mean logit {roc_auc_score(y, both):.4f}",
            flush=True,
        )
        if windows:
            wide_both = roc_auc_score(y, _logit(p_wide) + _logit(p_hourly))
            print(
                f"split {r}: windowed aggregate trees {roc_auc_score(y, p_wide):.4f}, their mean logit with the "
                f"hourly teacher {wide_both:.4f} ({wide_both - roc_auc_score(y, both):+.4f})",
                flush=True,
            )
        if outcomes:
            a_auc = roc_auc_score(y, both + _logit(p_any))
            b_auc = roc_auc_score(y, _logit(p_stacked) + _logit(p_hourly))
            ref = roc_auc_score(y, both)
            print(
                f"split {r}: (A) any-death trees alone {roc_auc_score(y, p_any):.4f} (towards in-hospital death), "
                f"as a third member {a_auc:.4f} ({a_auc - ref:+.4f}); (B) stacked aggregate trees "
                f"{roc_auc_score(y, p_stacked):.4f}, their mean logit with the hourly teacher {b_auc:.4f} "
                f"({b_auc - ref:+.4f})",
                flush=True,
            )
        if linear:
            three = both + _logit(np.clip(p_lin, 1e-6, 1 - 1e-6))
            print(
                f"split {r}: linear aggregates {roc_auc_score(y, p_lin):.4f}, mean logit of all three "
                f"{roc_auc_score(y, three):.4f}",
                flush=True,
            )


if __name__ == "__main__":
    args = sys.argv[1:]
    flags = ("--linear", "--windows", "--outcomes")
    main(
        [int(a) for a in args if a not in flags] or [0],
        linear="--linear" in args,
        windows="--windows" in args,
        outcomes="--outcomes" in args,
    )
