"""An evaluation protocol that cannot fool itself: repeated stay-level splits, a reserve touched once.

python -m models.protocol run lstm --out runs/protocol/lstm-v1 [--repeats 8] [--schema sepsis-v2]
python -m models.protocol run lstm --train-fraction 0.5 [--teacher-on-all] --out ...  # a learning curve's point
python -m models.protocol run lstm --pretrain-epochs 6 --out ...   # pretrained on the other ICU cohort first
python -m models.protocol compare runs/protocol/lstm-v1 runs/protocol/lstm-v2      # paired, per split
python -m models.protocol ensemble runs/protocol/lstm-v2 runs/protocol/transformer-v2 --out ...
python -m models.protocol rescore runs/protocol/lstm-v2 --smooth --out ...  # a causal risk smoother, per repeat
python -m models.protocol rescore runs/protocol/lstm-v2 --by-hour --out ...  # an hour-dependent threshold
python -m models.protocol rescore runs/protocol/lstm-v2 --threshold 0.1 --out ...  # at a threshold chosen elsewhere
python -m models.protocol rescore runs/protocol/lstm-v2 --out ...                  # scored again, as a run is
python -m models.protocol attach runs/protocol/lstm-v2 --weights models/weights/lstm  # into the model card
python -m models.protocol set-threshold runs/protocol/lstm-5fold lstm [--weights DIR]  # the protocol's threshold
python -m models.protocol confirm lstm [--weights DIR]                             # the reserve, once

- **Reserve.** 15 % of the stays, chosen once by a keyed hash of the record's name (:func:`is_reserved`),
  so it does not depend on the order, the number of files or any seed. Training (``models.train``) and every
  protocol run leave it out; ``confirm`` scores the shipped model on it and records that it did.
- **Repeats.** ``--repeats`` seeded 80/20 splits of the other stays, stratified by outcome. In each, one
  network is trained on the 80 % exactly as a member of the shipped ensemble is (features fitted on those
  stays only, the cross-fitted tree teacher, the same schedule) and predicts the 20 %.
- **Threshold.** The 20 % of repeat r are scored at the threshold the task's rule chooses on the other
  repeats' held-out predictions of stays outside repeat r's 20 %: no label of a scored stay chooses its
  threshold.
- **Report.** Every figure per repeat, and its mean ± standard deviation over repeats; two runs on the same
  splits are compared pair by pair (``compare``). The adoption rule (docs/sepsis-protocol.md) is written
  before a run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from models.cli_args import (
    at_least_two,
    data_folder,
    non_negative_int,
    output_folder,
    positive_float,
    positive_fraction,
    positive_int,
    unit_fraction,
)
from models.cohort_transfer import ForeignStays
from models.errors import WeightsError
from models.sequence_options import add_task_options, task_from_options
from models.sequence_tasks import SequenceTask, Stay, sequence_task

RESERVE_FRACTION = 0.15
#: the key of the reserve's hash: changing it would move stays into the reserve that models were tuned on
RESERVE_KEY = "medlens-reserve-v1"
PROTOCOL_SEED = 2022  # repeat r splits with seed PROTOCOL_SEED + r
TEST_FOLDS = 5  # 1 of 5 stratified folds is a repeat's held-out 20 %


def is_reserved(name: str) -> bool:
    """Whether the stay named ``name`` (file name or RecordID; a suffix is ignored) is in the reserve."""
    stem = Path(name).stem
    digest = hashlib.sha256(f"{RESERVE_KEY}:{stem}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < RESERVE_FRACTION


def drop_reserved(stays: list[Stay], exclude: bool) -> list[Stay]:
    return [s for s in stays if not is_reserved(s.name)] if exclude else stays


class RepeatResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repeat: int
    split_seed: int
    n_train: int
    n_test: int
    n_test_positive: int
    threshold: float  # chosen on the other repeats' held-out predictions (see the module docstring)
    smoother: str = "none"  # the risk smoother chosen with the threshold (models/risk_smoothing.py)
    figures: dict[str, float]
    seconds: float


class ProtocolReport(BaseModel):
    """One protocol run: what was trained, every repeat and the summary (mean, std over repeats)."""

    model_config = ConfigDict(extra="forbid")

    task: str
    arch: str
    schema_name: str
    command: str
    created: str
    settings: dict[str, float | int | str]
    n_development: int
    n_reserve: int
    repeats: list[RepeatResult]
    mean: dict[str, float]
    std: dict[str, float]
    threshold: float  # the median of the repeats' thresholds: what a model trained on all stays would use

    def line(self) -> str:
        return "  ".join(f"{k} {self.mean[k]:.4f} ± {self.std[k]:.4f}" for k in self.mean)


def read_report(run: Path) -> ProtocolReport:
    """The report of the protocol run saved in ``run``; a ValueError that says what to do when there is none."""
    path = run / "report.json"
    if not path.is_file():
        raise ValueError(f"{run} holds no finished protocol run (no report.json): name a `run` command's --out")
    try:
        return ProtocolReport.model_validate_json(path.read_text())
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"{path} is not a protocol report this code can read: {exc}") from exc


@dataclass
class _Held:
    """A repeat's held-out stays (indices into the development stays) and their hourly probabilities."""

    idx: np.ndarray
    probs: list[np.ndarray]


def split_masks(stays: list[Stay], repeats: int) -> list[np.ndarray]:
    """For each repeat, the boolean mask of its held-out 20 % (stratified by outcome)."""
    from models.train_sequence import stay_folds

    return [stay_folds(stays, TEST_FOLDS, PROTOCOL_SEED + r) == 0 for r in range(repeats)]


def training_mask(stays: list[Stay], held: np.ndarray, fraction: float, repeat: int) -> np.ndarray:
    """The stays repeat ``repeat`` trains on: every stay outside ``held``, or with ``fraction`` below 1 a sample of
    them stratified by outcome (a learning curve). The sample depends on the repeat only, not on the training seed,
    and a smaller fraction's sample lies inside a larger one's."""
    train = ~held
    if fraction >= 1:
        return train
    if fraction <= 0:
        raise ValueError(f"a training fraction of {fraction} leaves no stay to train on: give one in (0, 1]")
    rng = np.random.default_rng([PROTOCOL_SEED + repeat, 1])
    positive = np.array([bool(s.labels.any()) for s in stays])
    keep = np.zeros(len(stays), dtype=bool)
    for flag in (False, True):
        idx = rng.permutation(np.flatnonzero(train & (positive == flag)))
        keep[idx[: max(1, round(fraction * len(idx)))]] = True
    return keep


def _fit_repeat(
    task: SequenceTask,
    arch: str,
    stays: list[Stay],
    held: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    teacher_weight: float,
    label: str,
    folds: int = 1,
    d_model: int | None = None,
    trained_on: np.ndarray | None = None,
    foreign: ForeignStays | None = None,
    pretrain_epochs: int = 0,
    teacher_on_all: bool = False,
) -> list[np.ndarray]:
    """Train on the stays outside ``held`` (or on those of the mask ``trained_on``) and return the
    hourly probabilities of the held stays: with ``folds`` 1, of one network trained as a member of the shipped
    ensemble is (member 0 of the split held / training, :func:`models.train_sequence.fit_fold_members`); with
    more, of the shipped ensemble itself (``folds`` fold networks on those stays, their mean logit). With
    ``pretrain_epochs``, the networks start from one trained that long on the ``foreign`` stays first. With
    ``teacher_on_all``, only the network is restricted to ``trained_on``: the normalisation and the tree teacher
    are fitted on every stay outside ``held``."""
    from models.sequence import NormStats, engineer
    from models.train_sequence import Pretraining, fit_fold_members, predict_features, stay_folds

    network_mask = None
    if trained_on is not None and teacher_on_all:
        if folds > 1:
            raise ValueError("a teacher on every stay beside a network on a share is defined for one network per split")
        network_mask = trained_on
    elif trained_on is not None:  # the stays neither trained on nor held out take no part
        keep = trained_on | held
        stays, held = [s for s, k in zip(stays, keep, strict=True) if k], held[keep]
    schema = task.schema
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
    stats = NormStats.fit_records([stays[i].values for i in train_idx], schema)
    features = [engineer(s.values, stats, schema) for s in stays]
    pretraining = None
    if pretrain_epochs > 0:
        if foreign is None:
            raise ValueError("pretraining needs the other cohort's stays: pass foreign")
        pretraining = Pretraining(
            [engineer(s.values, stats, schema) for s in foreign.stays],  # the task's normalisation
            [s.labels for s in foreign.stays],
            foreign.task,
            pretrain_epochs,
        )
    fit = partial(
        fit_fold_members,
        task,
        arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        teacher_weight=teacher_weight,
        label=label,
        d_model=d_model,
        pretraining=pretraining,
        stats=stats,
    )
    if folds > 1:
        train = [stays[i] for i in train_idx]
        ensemble, _, _ = fit(train, [features[i] for i in train_idx], stay_folds(train, folds, seed))
        return predict_features(ensemble, [features[i] for i in held_idx])
    fold_of = np.where(held, 0, 1)  # member 0 trains on fold 1 (the 80 %) and is never scored on it
    _, probs, _ = fit(stays, features, fold_of, members=[0], score_held=False, network_mask=network_mask)
    return [probs[i] for i in held_idx]


def score_repeats(
    task: SequenceTask,
    stays: list[Stay],
    held: list[_Held],
    smoothers: Sequence[str] = ("none",),
    threshold: float | None = None,
) -> list[tuple[float, dict[str, float], str]]:
    """(threshold, figures, smoother) of every repeat: the smoother (models/risk_smoothing.py) and threshold
    with the best primary figure on the other repeats' held-out predictions of stays outside its own
    held-out set (on ties the earlier smoother), then its figures on its own held-out stays. A given
    ``threshold`` is used as it is for every repeat (with the first smoother): a threshold chosen elsewhere."""
    from models.risk_smoothing import smooth_risk

    labels = [s.labels for s in stays]
    smoothed = {name: [[smooth_risk(name, p) for p in h.probs] for h in held] for name in smoothers}
    out = []
    for r, h in enumerate(held):
        if threshold is not None:
            name = smoothers[0]
            out.append((threshold, task.figures([labels[i] for i in h.idx], smoothed[name][r], threshold), name))
            continue
        own = set(h.idx.tolist())
        pool = [(q, j) for q, other in enumerate(held) if q != r for j, i in enumerate(other.idx) if int(i) not in own]
        pool_labels = [labels[held[q].idx[j]] for q, j in pool]
        best: tuple[float, float, str] | None = None
        for name in smoothers:  # (``threshold`` is the argument: a threshold chosen here must not take its name)
            candidate, figure = task.choose_threshold(pool_labels, [smoothed[name][q][j] for q, j in pool])
            if best is None or figure > best[1]:
                best = (candidate, figure, name)
        assert best is not None
        chosen, _, name = best
        out.append((chosen, task.figures([labels[i] for i in h.idx], smoothed[name][r], chosen), name))
    return out


def _summary(figures: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    keys = list(figures[0])
    arr = {k: np.array([f[k] for f in figures]) for k in keys}
    return (
        {k: float(v.mean()) for k, v in arr.items()},
        {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in arr.items()},
    )


def _report(
    task: SequenceTask,
    arch: str,
    stays: list[Stay],
    n_reserve: int,
    held: list[_Held],
    seconds: list[float],
    settings: dict[str, float | int | str],
    command: str,
    *,
    n_train: list[int],
    smoothers: Sequence[str] = ("none",),
    threshold: float | None = None,
) -> ProtocolReport:
    """The report of scored repeats; ``n_train``: each repeat's training stays (all outside its held-out set, or a
    learning curve's share of them)."""
    scored = score_repeats(task, stays, held, smoothers, threshold)
    repeats = [
        RepeatResult(
            repeat=r,
            split_seed=PROTOCOL_SEED + r,
            n_train=n_train[r],
            n_test=len(h.idx),
            n_test_positive=int(sum(stays[i].labels.any() for i in h.idx)),
            threshold=threshold,
            smoother=smoother,
            figures=figures,
            seconds=sec,
        )
        for r, (h, (threshold, figures, smoother), sec) in enumerate(zip(held, scored, seconds, strict=True))
    ]
    mean, std = _summary([r.figures for r in repeats])
    return ProtocolReport(
        task=task.name,
        arch=arch,
        schema_name=task.schema.name,
        command=command,
        created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        settings=settings,
        n_development=len(stays),
        n_reserve=n_reserve,
        repeats=repeats,
        mean=mean,
        std=std,
        threshold=float(np.median([r.threshold for r in repeats])),
    )


def save_run(out: Path, report: ProtocolReport, stays: list[Stay], held: list[_Held]) -> None:
    """``report.json`` and ``predictions.npz`` (each repeat's held-out stay names and hourly probabilities)."""
    _save_predictions(out, stays, held)
    (out / "report.json").write_text(report.model_dump_json(indent=1) + "\n")


def _save_predictions(out: Path, stays: list[Stay], held: list[_Held]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for r, h in enumerate(held):
        arrays[f"r{r}_names"] = np.array([stays[i].name for i in h.idx])
        arrays[f"r{r}_lengths"] = np.array([len(p) for p in h.probs])
        arrays[f"r{r}_probs"] = np.concatenate(h.probs).astype(np.float32)
    np.savez_compressed(out / "predictions.npz", **arrays)  # type: ignore[arg-type]


def load_held(out: Path, stays: list[Stay]) -> list[_Held]:
    """The held-out predictions of a saved run, indexed into ``stays`` by name."""
    index = {s.name: i for i, s in enumerate(stays)}
    data = np.load(out / "predictions.npz")
    held = []
    r = 0
    while f"r{r}_names" in data:
        idx = np.array([index[str(n)] for n in data[f"r{r}_names"]])
        ends = np.cumsum(data[f"r{r}_lengths"])[:-1]
        held.append(_Held(idx, list(np.split(data[f"r{r}_probs"].astype(np.float64), ends))))
        r += 1
    return held


def development_stays(task: SequenceTask, data: Path, limit: int | None = None) -> tuple[list[Stay], int]:
    """(the stays outside the reserve, how many are reserved)."""
    stays = task.load(data, limit=limit)
    dev = drop_reserved(stays, exclude=True)
    return dev, len(stays) - len(dev)


#: the task's recipe settings that a run has recorded since the protocol began, and those added later (a run
#: records these only when they differ from their defaults)
_FIRST_SETTINGS = ("weighting", "target", "teacher_hours")
_LATER_SETTINGS = (
    "teacher_groups",
    "auxiliary",
    "teacher",
    "thinned_copies",
    "weight_average",
    "teacher_temperature",
    "batching",
    "head",
)
#: the recipe settings a run records and a sequence checkpoint's preprocessing keeps, with the value of either
#: when it predates the setting: the task's defaults (a setting was added with the recipe before it as default)
RECIPE_DEFAULTS: dict[str, object] = {
    f.name: f.default for f in fields(SequenceTask) if f.name in _FIRST_SETTINGS + _LATER_SETTINGS
}


#: the settings a run records only when they differ from these values, which every run made before the setting
#: existed had: resuming compares the recorded settings key for key, so a saved run's keys must stay as they were
OPTIONAL_SETTINGS: dict[str, object] = {
    **{key: RECIPE_DEFAULTS[key] for key in _LATER_SETTINGS},
    "folds": 1,
    "d_model": None,
    "train_fraction": 1.0,
    "pretrain_epochs": 0,
}


def run_protocol(
    task: SequenceTask,
    arch: str,
    data: Path,
    out: Path,
    *,
    repeats: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    teacher_weight: float,
    limit: int | None = None,
    command: str = "",
    folds: int = 1,
    d_model: int | None = None,
    train_fraction: float = 1.0,
    pretrain_epochs: int = 0,
    foreign_data: Path | None = None,
    teacher_on_all: bool = False,
) -> ProtocolReport:
    """Train and score ``repeats`` splits into ``out`` (resuming a run with the same settings saved there). With
    ``pretrain_epochs``, each split's networks are first trained on the other cohort's development stays (under
    ``foreign_data``, default its configured path: models/cohort_transfer.py)."""
    from models.train_cnn import seed_everything

    if repeats < 2:
        raise ValueError("the protocol needs at least 2 repeats: a repeat's threshold comes from the others")
    stays, n_reserve = development_stays(task, data, limit)
    settings: dict[str, float | int | str] = {
        "repeats": repeats,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "teacher_weight": teacher_weight,
        "schema": task.schema.name,
        **{key: getattr(task, key) for key in _FIRST_SETTINGS},
    }
    chosen = {
        **{key: getattr(task, key) for key in _LATER_SETTINGS},
        "folds": folds,
        "d_model": d_model,
        "train_fraction": train_fraction,
        "pretrain_epochs": pretrain_epochs,
    }
    settings |= {k: v for k, v in chosen.items() if v is not None and v != OPTIONAL_SETTINGS[k]}
    if train_fraction < 1 and teacher_on_all:
        settings["teacher_stays"] = "all"
    foreign = None
    if pretrain_epochs > 0:
        from models.cohort_transfer import foreign_stays

        foreign = foreign_stays(task, foreign_data, limit=limit)
        settings["pretrain_stays"] = len(foreign.stays)
    held, seconds = _resume(out, stays, settings)
    masks = split_masks(stays, repeats)
    training = [training_mask(stays, mask, train_fraction, r) for r, mask in enumerate(masks)]
    for r, mask in enumerate(masks):
        if r < len(held):
            continue  # done by an earlier, interrupted run with the same settings
        started = time.time()
        seed_everything(seed + r)
        probs = _fit_repeat(
            task,
            arch,
            stays,
            mask,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed + r,
            teacher_weight=teacher_weight,
            label=f"{arch} repeat {r + 1}/{repeats}",
            folds=folds,
            d_model=d_model,
            trained_on=None if train_fraction >= 1 else training[r],
            foreign=foreign,
            pretrain_epochs=pretrain_epochs,
            teacher_on_all=teacher_on_all,
        )
        held.append(_Held(np.flatnonzero(mask), probs))
        seconds.append(time.time() - started)
        _save_predictions(out, stays, held)  # an interrupted run resumes after the last saved repeat
        (out / "partial.json").write_text(json.dumps({"settings": settings, "seconds": seconds}))
        print(f"repeat {r + 1}/{repeats} done in {seconds[-1]:.0f} s", file=sys.stderr)
    trained = [int(t.sum()) for t in training]
    report = _report(task, arch, stays, n_reserve, held, seconds, settings, command, n_train=trained)
    save_run(out, report, stays, held)
    return report


def _resume(out: Path, stays: list[Stay], settings: dict[str, float | int | str]) -> tuple[list[_Held], list[float]]:
    """The repeats an earlier run with the same settings saved in ``out`` (none if the settings differ)."""
    partial = out / "partial.json"
    if not partial.is_file() or not (out / "predictions.npz").is_file():
        return [], []
    saved = json.loads(partial.read_text())
    if saved["settings"] != settings:
        print(f"{out}: an earlier run with other settings; starting again", file=sys.stderr)
        return [], []
    held = load_held(out, stays)
    print(f"{out}: resuming after {len(held)} saved repeat(s)", file=sys.stderr)
    return held, list(saved["seconds"])[: len(held)]


def ensemble_runs(task: SequenceTask, runs: list[Path], data: Path, out: Path, command: str) -> ProtocolReport:
    """The protocol figures of the mean logit of several runs on the same splits (no training)."""
    from models.risk_smoothing import logit

    reports = [read_report(r) for r in runs]
    if len({len(r.repeats) for r in reports}) != 1:
        raise ValueError("the runs have different numbers of repeats: they must share their splits")
    stays, n_reserve = development_stays(task, data)
    members = [load_held(r, stays) for r in runs]
    held = []
    for parts in zip(*members, strict=True):
        if any(not np.array_equal(p.idx, parts[0].idx) for p in parts):
            raise ValueError("the runs' held-out stays differ: they were not made on the same splits")
        mean_logit = [np.mean([logit(p.probs[j]) for p in parts], axis=0) for j in range(len(parts[0].idx))]
        held.append(_Held(parts[0].idx, [1 / (1 + np.exp(-z)) for z in mean_logit]))
    n_train = [r.n_train for r in reports[0].repeats]
    if any([r.n_train for r in rep.repeats] != n_train for rep in reports):
        raise ValueError("the runs trained on different numbers of stays per split: average runs of one training share")
    settings: dict[str, float | int | str] = {"members": " + ".join(str(r) for r in runs)}
    arch = "+".join(r.arch for r in reports)
    report = _report(task, arch, stays, n_reserve, held, [0.0] * len(held), settings, command, n_train=n_train)
    save_run(out, report, stays, held)
    return report


def rescore_run(
    task: SequenceTask,
    run: Path,
    data: Path,
    out: Path,
    command: str,
    *,
    smooth: bool = False,
    by_hour: bool = False,
    threshold: float | None = None,
) -> ProtocolReport:
    """A saved run scored again without training: as a run is scored (thresholds chosen on the other repeats);
    ``smooth``, with a causal risk smoother chosen with the threshold,
    repeat by repeat, on the other repeats (docs/sepsis-protocol.md, rule 13); ``by_hour``, the same with an
    hour-dependent threshold (models/risk_smoothing.py HOUR_TILTS, rule 25); ``threshold``, at that threshold for
    every repeat (a threshold chosen elsewhere, rule 14). ``out`` keeps the run's own (unsmoothed) predictions."""
    from models.risk_smoothing import HOUR_TILTS, SMOOTHERS

    source = read_report(run)
    stays, n_reserve = development_stays(task, data)
    held = load_held(run, stays)
    smoothers = tuple(SMOOTHERS) if smooth else ("none", *HOUR_TILTS) if by_hour else ("none",)
    # the source run's folder relative to this run's: both can move together, and be read from anywhere
    settings: dict[str, float | int | str] = {
        "source": os.path.relpath(run.resolve(), out.resolve()),
        "smoothers": " ".join(smoothers),
    }
    if threshold is not None:
        settings["threshold"] = threshold
    seconds = [r.seconds for r in source.repeats]
    n_train = [r.n_train for r in source.repeats]
    report = _report(
        task, source.arch, stays, n_reserve, held, seconds, settings, command,
        n_train=n_train, smoothers=smoothers, threshold=threshold,
    )  # fmt: skip
    save_run(out, report, stays, held)
    return report


class Comparison(BaseModel):
    """``new`` minus ``old`` on the same splits, repeat by repeat."""

    model_config = ConfigDict(extra="forbid")

    old: str
    new: str
    gain_mean: dict[str, float]
    gain_std: dict[str, float]
    gains: dict[str, list[float]]
    #: the mean over repeats of held-out stays / training stays (0.25 for 80/20 splits), which the corrected t reads
    test_share: float

    def corrected_t(self, figure: str) -> float:
        """The paired t of ``figure``'s gains, corrected for splits that share stays (Nadeau and Bengio 2003): the
        gains' variance scaled by 1 / repeats + test_share instead of 1 / repeats. Repeated 80/20 splits overlap,
        so their gains are correlated and the plain t, mean / (sd / sqrt(repeats)), overstates the evidence."""
        mean, std, n = self.gain_mean[figure], self.gain_std[figure], len(self.gains[figure])
        if std == 0.0:
            return 0.0 if mean == 0.0 else float(np.copysign(np.inf, mean))
        return float(mean / (std * np.sqrt(1.0 / n + self.test_share)))

    def corrected_p(self, figure: str) -> float:
        """One-sided p of :meth:`corrected_t` (Student's t, repeats - 1 degrees of freedom): how often a change that
        does nothing would show a gain this large. Reported beside the rule; the rule decides."""
        from scipy.stats import t

        return float(t.sf(self.corrected_t(figure), df=len(self.gains[figure]) - 1))

    def adopted(self, primary: str, corrected: bool = False) -> bool:
        """The adoption rule of docs/sepsis-protocol.md: the mean gain of the primary figure exceeds the
        standard deviation of the gains, and the mean AUROC gain is not below minus its gains' standard deviation
        (a change that cannot move AUROC, such as a threshold, passes that part). ``corrected`` (the rule from rule
        37 on): the primary figure's :meth:`corrected_p` must also be below 0.05."""
        rule = self.gain_mean[primary] > self.gain_std[primary] and self.gain_mean["auroc"] >= -self.gain_std["auroc"]
        return rule and (not corrected or self.corrected_p(primary) < 0.05)


def compare(old: Path, new: Path) -> Comparison:
    a = read_report(old)
    b = read_report(new)
    if [r.split_seed for r in a.repeats] != [r.split_seed for r in b.repeats]:
        raise ValueError("the runs were not made on the same splits")
    gains = {k: [rb.figures[k] - ra.figures[k] for ra, rb in zip(a.repeats, b.repeats, strict=True)] for k in a.mean}
    return Comparison(
        old=str(old),
        new=str(new),
        gain_mean={k: float(np.mean(v)) for k, v in gains.items()},
        gain_std={k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in gains.items()},
        gains=gains,
        test_share=float(np.mean([r.n_test / r.n_train for r in a.repeats])),
    )


def procedure_of(run: Path) -> tuple[int, float | None]:
    """(networks trained per split, the one threshold every split was scored at or None) of the run saved in
    ``run``; a rescored run's networks are its source run's."""
    report = read_report(run)
    fixed = report.settings.get("threshold")
    source = _source_of(run, report)
    folds = int(report.settings.get("folds", 1)) if source is None else procedure_of(source)[0]
    return folds, None if fixed is None else float(fixed)


def _source_of(run: Path, report: ProtocolReport) -> Path | None:
    """The folder of the run that the run in ``run`` scored again (None for a run that trained its own networks):
    recorded relative to ``run``, or, by runs rescored before that, relative to where they were rescored."""
    source = report.settings.get("source")
    if source is None:
        return None
    for folder in (run / str(source), Path(str(source))):
        if (folder / "report.json").is_file():
            return folder
    raise ValueError(
        f"{run} rescored {source}, which is neither beside it nor here: put the two runs back where they were"
    )


def _training_settings(run: Path, report: ProtocolReport) -> dict[str, float | int | str]:
    """The settings the networks of the run saved in ``run`` were trained with (a rescored run's: its source's)."""
    source = _source_of(run, report)
    return report.settings if source is None else _training_settings(source, read_report(source))


def _require_served_risk(run: Path, report: ProtocolReport, use: str) -> None:
    """Refuse a run whose figures or thresholds are not the served risk's: a smoothed risk, networks trained on a
    part of each split's training stays (a learning curve) or pretrained on another cohort. ``use``: what the run
    did with it, for the message."""
    if any(r.smoother != "none" for r in report.repeats):
        raise ValueError(f"{run} {use} a smoothed risk, which the checkpoint does not serve")
    if any(r.n_train + r.n_test != report.n_development for r in report.repeats):
        raise ValueError(f"{run} trained on a part of each split's training stays (a learning curve), not as served")
    if "pretrain_epochs" in _training_settings(run, report):
        raise ValueError(f"{run}'s networks were pretrained on another cohort; the checkpoint's were not")


def _require_checkpoint_recipe(run: Path, report: ProtocolReport, weights: Path) -> None:
    """Refuse a run whose networks were trained by another recipe than the checkpoint's at ``weights``: its feature
    schema, hour weights, target, tree teacher or width."""
    from models.checkpoint import load_checkpoint
    from models.sequence import SequenceConfig

    meta, _ = load_checkpoint(weights)
    settings = _training_settings(run, report)
    differ = [
        f"{key} {settings.get(key, default)!r} (the checkpoint's: {meta.preprocessing.get(key, default)!r})"
        for key, default in {"schema": "sepsis-v1", **RECIPE_DEFAULTS}.items()
        if settings.get(key, default) != meta.preprocessing.get(key, default)
    ]
    default_width = SequenceConfig.model_fields["d_model"].default
    run_width, width = settings.get("d_model", default_width), meta.config.get("d_model", default_width)
    if run_width != width:
        differ.append(f"d_model {run_width} (the checkpoint's: {width})")
    if differ:
        raise ValueError(f"{run} trained another recipe than {weights}: {', '.join(differ)}; attach a run of its own")


def attach(run: Path, weights: Path) -> None:
    """Write a protocol run's summary into the model card at ``weights``: a run of this checkpoint's task and
    network, one network per split or the checkpoint's own K-fold procedure, scoring the risk it serves (not a
    smoothed one). The reserve figures, this checkpoint's, are kept."""
    from models.cards import read_card, write_card
    from models.catalogue import entry
    from models.protocol_summary import ProtocolSummary

    report = read_report(run)
    card = read_card(weights)
    model = entry(card.name)
    if (report.task, report.arch) != (model.task.name, model.architecture):
        raise ValueError(
            f"{run} measured {report.task} with {report.arch}; {weights} is {model.task.name} with "
            f"{model.architecture}: attach a run of this checkpoint's task and network"
        )
    _require_served_risk(run, report, "scored")
    _require_checkpoint_recipe(run, report, weights)
    folds, fixed = procedure_of(run)
    if fixed is not None and abs(fixed - card.threshold) > 1e-9:
        raise ValueError(
            f"{run} scored every split at {fixed:.4f}, not at this checkpoint's threshold {card.threshold:.4f}: "
            "attach a run scored at the checkpoint's threshold, or whose thresholds the protocol chose"
        )
    previous = card.protocol
    card.protocol = ProtocolSummary(
        command=report.command,
        created=report.created,
        schema_name=report.schema_name,
        repeats=len(report.repeats),
        n_development=report.n_development,
        mean=report.mean,
        std=report.std,
        per_repeat={k: [r.figures[k] for r in report.repeats] for k in report.mean},
        n_reserve=report.n_reserve,
        reserve=None if previous is None else previous.reserve,
        reserve_measured=None if previous is None else previous.reserve_measured,
        reserve_command=None if previous is None else previous.reserve_command,
        earlier_reserves=[] if previous is None else previous.earlier_reserves,
        folds=folds,
        fixed_threshold=fixed,
    )
    write_card(weights, card)


def set_threshold(run: Path, model_name: str, weights: Path, data: Path | None, command: str) -> tuple[float, float]:
    """Make a protocol run's threshold (the median of its repeats', each chosen on the other repeats' held-out
    stays) the operating threshold of the checkpoint at ``weights`` (docs/sepsis-protocol.md, rule 14): in
    ``model.pt`` and the card, whose out-of-fold evaluation is recomputed at it. A reserve figure measured at the
    old threshold is kept as an earlier one, and the reserve may be scored once at the new threshold.
    Returns (old threshold, new threshold)."""
    from models.calibrate_sepsis import out_of_fold, require_training_data
    from models.cards import write_card
    from models.checkpoint import CheckpointMeta, save_checkpoint
    from models.protocol_summary import EarlierReserve
    from models.train_sequence import card_evaluation

    report = read_report(run)
    _require_served_risk(run, report, "chose its thresholds for")
    oof = out_of_fold(model_name, weights, data)
    if report.task != oof.task.name or report.schema_name != oof.task.schema.name:
        raise ValueError(
            f"{run} measured {report.task} with {report.schema_name}; {weights} is {oof.task.name} with "
            f"{oof.task.schema.name}: use a run of this checkpoint's recipe"
        )
    if oof.card is None:
        raise ValueError(f"{weights} has no card.json: train it with python -m models.train")
    require_training_data(oof, weights, data)  # the card's evaluation is recomputed on these stays
    old, new = oof.meta.threshold, report.threshold
    fixed = None if oof.card.protocol is None else oof.card.protocol.fixed_threshold
    if fixed is not None and fixed != new:
        raise ValueError(
            f"{weights}: the card's protocol figures were scored at the threshold {fixed:.4f}; attach {run} first "
            "(python -m models.protocol attach), so that they describe the new one"
        )
    rule = (
        f"the protocol's (docs/sepsis-protocol.md, rule 14): the median of the thresholds that the "
        f"{len(report.repeats)} repeats of `{report.command}` chose, each maximising the {oof.task.primary} on the "
        "other repeats' held-out stays"
    )
    preprocessing = {**oof.meta.preprocessing, "threshold_rule": rule}
    labels = [s.labels for s in oof.records]
    probs = oof.probabilities()
    preprocessing["out_of_fold"] = oof.task.figures(labels, probs, new)
    meta = CheckpointMeta.model_validate({**oof.meta.model_dump(), "threshold": new, "preprocessing": preprocessing})
    card = oof.card
    card.threshold, card.threshold_rule = new, rule
    card.evaluation, card.extra_metrics = card_evaluation(oof.task, labels, probs, new)
    card.evaluation_dataset = card.evaluation_dataset.replace(
        "the threshold was also chosen on them",
        "the threshold was chosen by the protocol, on other networks' predictions for the same stays",
    )
    p = card.protocol
    if p is not None and p.reserve is not None and new != old:
        assert p.reserve_measured is not None and p.reserve_command is not None
        p.earlier_reserves.append(
            EarlierReserve(threshold=old, figures=p.reserve, measured=p.reserve_measured, command=p.reserve_command)
        )
        p.reserve, p.reserve_measured, p.reserve_command = None, None, None
    save_checkpoint(weights, meta, oof.state)
    write_card(weights, card)
    print(f"{weights}: threshold {old:.4f} -> {new:.4f} ({command})", file=sys.stderr)
    return old, new


class ReserveAlreadyUsedError(RuntimeError):
    """The reserve was already scored for this checkpoint: a second look would make it a validation set."""


def confirm(model_name: str, weights: Path, data: Path, command: str) -> dict[str, float]:
    """Score the shipped checkpoint on the reserve, once, and write the figures into its card."""
    from models.cards import read_card, write_card
    from models.catalogue import entry
    from models.checkpoint import load_checkpoint
    from models.inference import load_predictor

    load_checkpoint(weights, expected=model_name)  # WeightsError: another model's weights, or none
    card = read_card(weights)
    if card.protocol is None:
        raise ValueError(f"{weights}: attach the protocol run first (python -m models.protocol attach RUN ...)")
    if card.protocol.reserve is not None:
        raise ReserveAlreadyUsedError(
            f"{weights}: the reserve was scored on {card.protocol.reserve_measured}; it is scored once per checkpoint."
        )
    task = sequence_task(entry(model_name).task.name, card.protocol.schema_name)
    reserve = [s for s in task.load(data) if is_reserved(s.name)]
    predictor = load_predictor(model_name, weights, "cpu", "torch-fp32")
    probs: list[np.ndarray] = []
    for start in range(0, len(reserve), 256):
        probs.extend(predictor.predict([s.values for s in reserve[start : start + 256]]))
    figures = task.figures([s.labels for s in reserve], probs, predictor.threshold)
    card.protocol.reserve = figures
    card.protocol.reserve_measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    card.protocol.reserve_command = command
    card.protocol.n_reserve = len(reserve)
    write_card(weights, card)
    return figures


def main(argv: list[str] | None = None) -> int:
    from models.catalogue import CATALOGUE, entry

    names = [e.name for e in CATALOGUE.values() if e.architecture in ("lstm", "transformer")]
    parser = argparse.ArgumentParser(prog="python -m models.protocol", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and score one network per repeated split")
    run.add_argument("model", choices=names)
    run.add_argument("--out", type=output_folder, required=True)
    run.add_argument("--data", type=Path, default=None)
    run.add_argument(
        "--repeats", type=at_least_two, default=8, help="2 or more: a repeat's threshold is chosen on the others"
    )
    add_task_options(run)  # --schema, --weighting, --target, --teacher-hours, --teacher-groups, --d-model
    run.add_argument("--epochs", type=positive_int, default=12)
    run.add_argument("--batch-size", type=positive_int, default=32)
    run.add_argument("--lr", type=positive_float, default=2e-3)
    run.add_argument("--seed", type=non_negative_int, default=0)
    run.add_argument(
        "--teacher-weight",
        type=unit_fraction,
        default=None,
        help="weight in [0, 1] of the tree teacher in the training targets (default: the model's, as models.train)",
    )
    run.add_argument(
        "--folds",
        type=positive_int,
        default=1,
        help="1: one network per split, as one member of the shipped ensemble is trained (the rule's runs); K > 1: "
        "the shipped ensemble itself per split (K fold networks, mean logit; K times the cost)",
    )
    run.add_argument(
        "--train-fraction",
        type=positive_fraction,
        default=1.0,
        help="train on this share of each split's training stays (stratified; a learning curve), scored on the "
        "same held-out stays",
    )
    run.add_argument(
        "--teacher-on-all",
        action="store_true",
        help="with --train-fraction: only the network sees the share; the tree teacher (and the normalisation) "
        "still fit on every training stay",
    )
    run.add_argument(
        "--pretrain-epochs",
        type=non_negative_int,
        default=0,
        help="first train each split's network this many epochs on the other ICU cohort's development stays "
        "(PhysioNet 2012 for sepsis, 2019 for mortality; labels only), then on the task as always",
    )
    run.add_argument("--foreign-data", type=Path, default=None, help="the other cohort's data (with --pretrain-epochs)")
    run.add_argument("--threads", type=positive_int, default=max(1, torch.get_num_threads()))
    run.add_argument("--limit", type=positive_int, default=None, help="at most this many stays (smoke runs)")
    cmp_ = sub.add_parser("compare", help="paired gains of NEW over OLD on the same splits")
    cmp_.add_argument("old", type=Path)
    cmp_.add_argument("new", type=Path)
    cmp_.add_argument("--primary", default=None, help="the figure the rule is about (default: the task's)")
    ens = sub.add_parser("ensemble", help="the mean logit of runs made on the same splits")
    ens.add_argument("runs", type=Path, nargs="+")
    ens.add_argument("--out", type=output_folder, required=True)
    ens.add_argument("--data", type=Path, default=None)
    res = sub.add_parser(
        "rescore",
        help="score a run again, without training: as the protocol scores (thresholds chosen on the other repeats), "
        "with a risk smoother, or at a threshold",
    )
    res.add_argument("run", type=Path)
    res.add_argument("--out", type=output_folder, required=True)
    how = res.add_mutually_exclusive_group()
    how.add_argument("--smooth", action="store_true", help="a causal risk smoother chosen with the threshold")
    how.add_argument("--by-hour", action="store_true", help="an hour-dependent threshold (rule 25's hour tilts)")
    how.add_argument("--threshold", type=float, help="this threshold for every repeat (one chosen elsewhere)")
    res.add_argument("--data", type=Path, default=None)
    att = sub.add_parser("attach", help="write a run's figures into a model card")
    att.add_argument("run", type=Path)
    att.add_argument("--weights", type=Path, required=True)
    thr = sub.add_parser("set-threshold", help="make a run's threshold (chosen by the protocol) a checkpoint's")
    thr.add_argument("run", type=Path)
    thr.add_argument("model", choices=names)
    thr.add_argument("--weights", type=Path, default=None)
    thr.add_argument("--data", type=Path, default=None)
    con = sub.add_parser("confirm", help="score the shipped checkpoint on the reserve, once")
    con.add_argument("model", choices=names)
    con.add_argument("--weights", type=Path, default=None)
    con.add_argument("--data", type=Path, default=None)
    args = parser.parse_args(argv)
    command = "python -m models.protocol " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.command == "run":
        from models.train_sequence import TEACHER_WEIGHT

        if args.teacher_on_all and (args.train_fraction >= 1 or args.folds > 1):
            parser.error("--teacher-on-all needs --train-fraction below 1 and one network per split (--folds 1)")
        torch.set_num_threads(args.threads)
        model = entry(args.model)
        try:
            task = task_from_options(model.task.name, args)
        except ValueError as exc:  # an option the task does not define
            parser.error(str(exc))
        data = data_folder(parser, args.data, task.default_data())
        weight = TEACHER_WEIGHT[model.architecture] if args.teacher_weight is None else args.teacher_weight
        report = run_protocol(
            task,
            model.architecture,
            data,
            args.out,
            repeats=args.repeats,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            teacher_weight=weight,
            limit=args.limit,
            command=command,
            folds=args.folds,
            d_model=args.d_model,
            train_fraction=args.train_fraction,
            pretrain_epochs=args.pretrain_epochs,
            foreign_data=args.foreign_data,
            teacher_on_all=args.teacher_on_all,
        )
        print(f"{args.model} ({task.schema.name}), {args.repeats} repeats: {report.line()}")
        return 0
    try:  # a missing or foreign run or checkpoint, mismatched splits, a used reserve: usage errors, not tracebacks
        return _reporting_command(args, command)
    except (ReserveAlreadyUsedError, ValueError, WeightsError, FileNotFoundError) as exc:
        parser.error(str(exc))


def _reporting_command(args: argparse.Namespace, command: str) -> int:
    """Every command but ``run``: they read saved runs or checkpoints and print what they found."""
    from models.catalogue import entry

    if args.command == "attach":
        attach(args.run, args.weights)
        print(f"wrote the protocol's figures into {args.weights}/card.json and card.md")
        return 0
    if args.command == "set-threshold":
        model = entry(args.model)
        old, new = set_threshold(args.run, model.name, args.weights or model.default_weights, args.data, command)
        print(f"{model.name}: operating threshold {old:.4f} -> {new:.4f}; the card's out-of-fold evaluation is at it")
        return 0
    if args.command == "confirm":
        model = entry(args.model)
        weights = args.weights or model.default_weights
        figures = confirm(model.name, weights, args.data or sequence_task(model.task.name).default_data(), command)
        print(f"{model.name} on the reserve: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
        return 0
    if args.command == "compare":
        result = compare(args.old, args.new)
        report = read_report(args.old)
        primary = args.primary or sequence_task(report.task).primary
        for k in result.gain_mean:
            print(f"{k}: gain {result.gain_mean[k]:+.4f} ± {result.gain_std[k]:.4f}  per repeat "
                  + " ".join(f"{g:+.3f}" for g in result.gains[k])
                  + f"  corrected t {result.corrected_t(k):+.2f}, one-sided p {result.corrected_p(k):.3f}")  # fmt: skip
        verdicts = (result.adopted(primary), result.adopted(primary, corrected=True))
        print(f"adopted by the rule ({primary}): {'yes' if verdicts[0] else 'no'}; with its corrected p below 0.05 "
              f"as well (the rule from rule 37 on): {'yes' if verdicts[1] else 'no'}")  # fmt: skip
        print(json.dumps(result.model_dump(), indent=1), file=sys.stderr)
        return 0
    if args.command == "rescore":
        source = read_report(args.run)
        task = sequence_task(source.task, source.schema_name)
        data = args.data or task.default_data()
        report = rescore_run(
            task, args.run, data, args.out, command, smooth=args.smooth, by_hour=args.by_hour, threshold=args.threshold
        )
        scoring = (
            f"at threshold {args.threshold:g}"
            if args.threshold is not None
            else "with a risk smoother chosen per repeat"
            if args.smooth
            else "with an hour tilt chosen per repeat"
            if args.by_hour
            else "with thresholds chosen on the other repeats"
        )
        print(f"{args.run} {scoring} ({' '.join(r.smoother for r in report.repeats)}): {report.line()}")
        return 0
    reports = [read_report(r) for r in args.runs]
    task = sequence_task(reports[0].task, reports[0].schema_name)
    report = ensemble_runs(task, args.runs, args.data or task.default_data(), args.out, command)
    print(f"ensemble of {len(args.runs)} runs: {report.line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
