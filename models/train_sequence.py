"""Train the sepsis LSTM or Transformer on PhysioNet 2019 ``.psv`` stays."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.checkpoint import CheckpointMeta, save_checkpoint
from models.metrics import BinaryEvaluation
from models.risk_smoothing import logit
from models.sequence import (
    N_INPUT,
    N_PLE,
    PLE_BINS,
    SIGNATURE_WINDOW,
    NormStats,
    SepsisLSTM,
    SepsisTransformer,
    SequenceConfig,
    SequenceEnsemble,
    SequenceModel,
    build_sequence_model,
    engineer,
    pad_batch,
    to_probability,
)
from models.sequence_options import Batching, task_from_options
from models.sequence_tasks import AUXILIARY_WEIGHT, HORIZONS, SEPSIS_TASK, THIN_DROP, Labelled, SequenceTask, Stay
from models.train_cnn import seed_everything

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier

POS_WEIGHT = 4.0  # weight of positive hours in the BCE
WEIGHT_DECAY = 0.05
# Each stay that becomes septic appears this many times per epoch. Oversampling x6 (with positive
# weight 2) looked better on one fold (+0.015 AUROC) but not across folds (mean -0.002): left at 1.
SEPTIC_REPEAT = 1
# Knowledge distillation from gradient-boosted trees: every member learns from (1 - w) * label + w * teacher,
# where the teacher is a tree ensemble that never saw the stay it scores nor the member's held-out fold.
# Inference stays a pure network.
# The trees are kept small: hourly rows of one stay are strongly alike, and larger trees learn stays, not sepsis.
# Trees fitted on folds 2-4 and scored on fold 1 / on folds 1, 3, 4 and scored on fold 2 (AUROC, best-threshold
# utility; fold 0 kept out of every screen): 31 leaves (the first teacher) 0.833 / 0.361 and 0.824 / 0.314;
# 15 leaves, >= 200 rows a leaf, L2 1: 0.847 / 0.409 and 0.852 / 0.364; 7 leaves 0.860 / 0.451 and 0.852 / 0.373;
# 4 leaves 0.862 / 0.455 and 0.858 / 0.384 (these); 600 rounds of 4 leaves 0.856 / 0.451 and 0.855 / 0.377.
# One member on held-out fold 1, the first teacher at w 0.7 against these trees: LSTM 0.843 / 0.386 -> 0.859 /
# 0.428 (w 0.7) and 0.863 / 0.430 (w 0.9); Transformer at w 0.9 0.867 / 0.445. Fold 2, LSTM: first teacher at
# w 0.7 0.853 / 0.373, these trees at w 0.9 0.858 / 0.375.
TEACHER_WEIGHT = {"lstm": 0.9, "transformer": 0.9}


class TrainingDataError(ValueError):
    """The stays of a training folder cannot train the ensemble asked for; raised before any training."""


#: how a stay's positive outcome is said, per task
POSITIVE_WORDS = {"sepsis": "septic", "mortality": "died in hospital"}


def fold_outcomes_problem(task: SequenceTask, stays: Sequence[Stay], folds: int) -> str | None:
    """Why ``stays`` cannot train a ``folds``-fold ensemble, or None: every fold needs a stay of each outcome, or a
    member trains on one outcome, or fewer folds than asked are made, and the threshold has no positive stay to be
    chosen on (``models.train.limited_stays_problem`` applies it to a ``--limit``). Said as "(N septic, M the
    others): each of the k folds needs one of each outcome, so at least k of each"."""
    positive = sum(bool(s.labels.any()) for s in stays)
    counts = {POSITIVE_WORDS[task.name]: positive, "the others": len(stays) - positive}
    if min(counts.values()) >= folds:
        return None
    said = ", ".join(f"{n} {what}" for what, n in counts.items())
    return f"({said}): each of the {folds} folds needs one of each outcome, so at least {folds} of each"


TEACHER_COLUMNS = N_INPUT - N_PLE  # sepsis-v1: the teacher sees the channels before the piecewise-linear ones
TEACHER_PARAMS = {
    "max_iter": 300,
    "learning_rate": 0.05,
    "max_leaf_nodes": 4,
    "min_samples_leaf": 200,
    "l2_regularization": 1.0,
}
#: the stay-level trees of the mortality teacher "hourly+stay" (one row per stay, so smaller leaves than the
#: hourly trees'); the settings of scripts/mortality_teacher_screen.py
AGGREGATE_PARAMS = {
    "max_iter": 300,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
}


@dataclass
class SequenceTrainResult:
    meta: CheckpointMeta
    val_labels: list[np.ndarray]  # every stay's labels
    val_probs: list[np.ndarray]  # out-of-fold: each stay scored by the fold model that never saw it
    n_stays: int
    folds: int
    history: list[dict[str, float]]
    seconds: float
    teacher_weight: float  # weight of the tree teacher in the training targets (0: labels only)


def stay_folds(records: Sequence[Labelled], folds: int, seed: int) -> np.ndarray:
    """Fold index (0..folds-1) of every stay, stratified by whether the stay becomes septic."""
    rng = np.random.default_rng(seed)
    septic = np.array([bool(r.labels is not None and r.labels.any()) for r in records])
    fold_of = np.zeros(len(records), dtype=np.int64)
    for flag in (False, True):
        idx = np.flatnonzero(septic == flag)
        rng.shuffle(idx)
        fold_of[idx] = np.arange(len(idx)) % folds
    return fold_of


@torch.no_grad()
def predict_features(model: SequenceModel, features: list[np.ndarray], batch_size: int = 64) -> list[np.ndarray]:
    """Hourly probabilities for engineered records, batched by similar length."""
    model.eval()
    order = np.argsort([f.shape[0] for f in features])
    out: list[np.ndarray] = [np.empty(0)] * len(features)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        x, mask = pad_batch([features[i] for i in chunk])
        prob = to_probability(model(x, mask)).numpy()
        for j, i in enumerate(chunk):
            out[i] = prob[j, : features[i].shape[0]]
    return out


def thin(values: np.ndarray, n_measured: int, rng: np.random.Generator, drop: float = THIN_DROP) -> np.ndarray:
    """A thinned copy of a stay's raw ``values`` (hours, columns): each measured value of the first ``n_measured``
    (time-varying) columns is left out (NaN) with probability ``drop``; the static columns are kept."""
    out = values.copy()
    measured = out[:, :n_measured]  # a view: (hours, n_measured)
    measured[~np.isnan(measured) & (rng.random(measured.shape) < drop)] = np.nan
    return out


def with_thinned_copies(
    task: SequenceTask,
    records: Sequence[Stay],
    features: list[np.ndarray],
    fold_of: np.ndarray,
    trained: list[int],
    stats: NormStats,
    seed: int,
) -> tuple[list[Stay], list[np.ndarray], np.ndarray]:
    """``records`` and ``features`` followed by ``task.thinned_copies`` thinned copies of every stay that one of
    the ``trained`` members trains on (engineered with ``stats``) -> (stays, features, source): ``source[i]`` is the
    original stay of row i (i itself for the originals, which come first)."""
    copied = np.flatnonzero([any(fold_of[i] != k for k in trained) for i in range(len(records))])
    rng = np.random.default_rng(seed + 7919)
    copies = [
        Stay(stay.name, thin(stay.values, task.schema.n_measured, rng), stay.labels)
        for _ in range(task.thinned_copies)
        for stay in (records[int(i)] for i in copied)
    ]
    source = np.concatenate([np.arange(len(records)), np.tile(copied, task.thinned_copies)])
    extra = [engineer(c.values, stats, task.schema) for c in tqdm(copies, desc="thinned copies", unit="stay")]
    return [*records, *copies], [*features, *extra], source


def _teacher_groups(records: Sequence[Labelled], fold_of: np.ndarray, seed: int) -> np.ndarray:
    """Group of every stay for cross-fitting the teacher. With 3+ folds the groups are the folds themselves:
    member k's teacher for a stay in fold j is fitted on the folds other than j and k, so one fit serves
    the pair {j, k} from both sides (10 fits for 5 folds). With 2 folds each fold is halved."""
    folds = int(fold_of.max()) + 1
    if folds >= 3:
        return fold_of
    groups = fold_of * 2
    for fold in range(folds):
        idx = np.flatnonzero(fold_of == fold)
        groups[idx] += stay_folds([records[int(i)] for i in idx], 2, seed + 1)
    return groups


def fit_teacher_trees(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    seed: int,
    params: dict[str, float | int] | None = None,
) -> tuple[HistGradientBoostingClassifier, np.ndarray]:
    """The teacher's trees (``params``, default TEACHER_PARAMS) on rows ``x`` (hours, columns) towards ``y``
    (hours,), rows weighted by ``w`` (hours,) or alike -> (the trees, the columns they read (columns,): one
    unmeasured in every row is left out, scikit-learn's binning cannot take it)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    read = ~np.isnan(x).all(axis=0)  # (columns,)
    clf = HistGradientBoostingClassifier(**(params or TEACHER_PARAMS), random_state=seed)
    return clf.fit(x[:, read], y, sample_weight=w), read


def teacher_targets(
    features: list[np.ndarray],
    labels: list[np.ndarray],
    fold_of: np.ndarray,
    groups: np.ndarray,
    seed: int,
    columns: int = TEACHER_COLUMNS,
    members: list[int] | None = None,
    hour_weights: list[np.ndarray] | None = None,
    params: dict[str, float | int] | None = None,
    fit_on: np.ndarray | None = None,
) -> list[list[np.ndarray]]:
    """Cross-fitted tree predictions: ``out[k][i]`` is the teacher's hourly probability for stay i as a
    training stay of member k (empty for member k's own held-out stays), from trees that saw neither
    stay i's group nor fold k. The trees read the first ``columns`` engineered channels (the schema's dense
    block); only the members listed are served (default: every fold). ``hour_weights`` (per stay, (hours,))
    weight the trees' rows (default: every hour alike). ``params``: the trees' settings (default TEACHER_PARAMS).
    ``fit_on`` (one flag per stay): only the flagged stays are fitted on, every stay is scored (default: all)."""
    from threadpoolctl import threadpool_limits

    folds = int(fold_of.max()) + 1
    out: list[list[np.ndarray]] = [[np.empty(0, dtype=np.float32)] * len(features) for _ in range(folds)]
    #: per fit set: the trees and the columns they read (a column unmeasured in the whole fit set is left out:
    #: scikit-learn's binning cannot take one), or the base rate of a one-class fit set
    fitted: dict[bytes, tuple[HistGradientBoostingClassifier, np.ndarray] | float] = {}
    jobs = [(k, g) for k in (range(folds) if members is None else members) for g in np.unique(groups[fold_of != k])]
    with threadpool_limits(limits=torch.get_num_threads(), user_api="openmp"):  # the trees use --threads cores
        for k, g in tqdm(jobs, desc="teacher (trees)", unit="fit"):
            fit_mask = (fold_of != k) & (groups != g) & (True if fit_on is None else fit_on)
            key = fit_mask.tobytes()
            if key not in fitted:
                fit_idx = np.flatnonzero(fit_mask)
                x = np.concatenate([features[i][:, :columns] for i in fit_idx])  # (hours, columns)
                y = np.concatenate([labels[i] for i in fit_idx]).astype(np.int64)  # (hours,)
                if y.min() == y.max():  # a tiny fit set with one class: the teacher is its base rate
                    fitted[key] = float(y[0])
                else:
                    w = None if hour_weights is None else np.concatenate([hour_weights[i] for i in fit_idx])
                    fitted[key] = fit_teacher_trees(x, y, w, seed, params)
            teacher = fitted[key]
            scored = np.flatnonzero((fold_of != k) & (groups == g))
            x = np.concatenate([features[i][:, :columns] for i in scored])  # (hours, columns)
            if isinstance(teacher, float):
                prob = np.full(len(x), teacher, dtype=np.float32)  # (hours,)
            else:
                prob = teacher[0].predict_proba(x[:, teacher[1]])[:, 1].astype(np.float32)  # (hours,)
            ends = np.cumsum([len(labels[i]) for i in scored])
            for i, part in zip(scored, np.split(prob, ends[:-1]), strict=True):
                out[k][i] = part
    return out


def task_teacher(
    task: SequenceTask,
    stays: Sequence[Stay],
    features: list[np.ndarray],
    fold_of: np.ndarray,
    seed: int,
    members: list[int] | None = None,
    source: np.ndarray | None = None,
) -> list[list[np.ndarray]]:
    """:func:`teacher_targets` as ``task`` asks for them: trees fitted towards its training labels, on its
    schema's dense channels, with its row weights; with ``task.teacher`` "hourly+stay", the last hour's
    probability is the mean logit of those trees' and of stay-level trees' on the stays' aggregates. ``source``
    (from :func:`with_thinned_copies`): the trees fit on the original stays only, grouped as without copies, and
    score each copy as the stay it was made from."""
    labels = [s.labels for s in stays]
    n = len(stays) if source is None else int(np.sum(source == np.arange(len(source))))
    if source is not None and not (source[:n] == np.arange(n)).all():
        raise ValueError("the original stays must come first, then their copies (with_thinned_copies)")
    originals, index = stays[:n], np.arange(len(stays)) if source is None else source
    groups = (
        _teacher_groups(originals, fold_of[:n], seed)
        if task.teacher_groups is None
        else stay_folds(originals, task.teacher_groups, seed + 1)
    )[index]
    fit_on = None if source is None else np.arange(len(stays)) < n
    hourly = teacher_targets(
        features,
        [task.training_labels(y) for y in labels],
        fold_of,
        groups,
        seed,
        columns=task.schema.n_dense,
        members=members,
        hour_weights=task.teacher_rows(labels),
        fit_on=fit_on,
    )
    if task.teacher == "hourly":
        return hourly
    from models.mortality_features import stay_aggregates

    rows = [stay_aggregates(s.values, task.schema)[None, :] for s in stays]  # per stay (1, n_aggregates)
    stay_level = teacher_targets(
        rows, [y[-1:] for y in labels], fold_of, groups, seed, columns=rows[0].shape[1], members=members,
        params=AGGREGATE_PARAMS, fit_on=fit_on,
    )  # fmt: skip
    for per_stay, stay_probs in zip(hourly, stay_level, strict=True):
        for i, (p_hours, p_stay) in enumerate(zip(per_stay, stay_probs, strict=True)):
            if len(p_hours):  # a training stay of this member: its last hour gets the mean logit of both
                both = 0.5 * float(logit(np.array([p_hours[-1], p_stay[0]])).sum())
                per_stay[i] = np.concatenate([p_hours[:-1], [1.0 / (1.0 + np.exp(-both))]]).astype(np.float32)
    return hourly


def _fit_member(
    config: SequenceConfig,
    x_train: list[np.ndarray],
    y_train: list[np.ndarray],
    x_val: list[np.ndarray],
    y_val: list[np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    label: str,
    targets: list[np.ndarray] | None = None,
    task: SequenceTask = SEPSIS_TASK,
    init: dict[str, torch.Tensor] | None = None,
    tempered: TemperedTeacher | None = None,
) -> tuple[SequenceModel, list[dict[str, float]]]:
    """Train one network for a fixed number of epochs (one-cycle schedule); the held-out stays are
    only scored for the log, never used to choose anything for this member. ``targets`` (soft, in [0, 1])
    replace ``y_train`` in the loss when given; sampling still follows the hard labels. ``tempered``: the
    teacher's share of the loss at a temperature (:func:`hour_loss`). Each hour's loss is weighted by
    ``task.hour_weights``. ``init``: start from these weights (a pretrained network of the same config) with a
    freshly initialised head."""

    seed_everything(seed)
    model = build_sequence_model(config)
    assert isinstance(model, SepsisLSTM | SepsisTransformer)
    if init is not None:
        model.load_state_dict(init)
        for layer in model.head.modules():
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
    # the auxiliary head (task.auxiliary) learns beside the served one and is discarded after training
    aux_head = None if task.auxiliary == "none" else nn.Linear(model.representation_size, len(HORIZONS) + 1)
    params = [*model.parameters(), *([] if aux_head is None else aux_head.parameters())]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
    pool = np.concatenate(
        [np.arange(len(y_train))] + [np.flatnonzero([y.any() for y in y_train])] * (SEPTIC_REPEAT - 1)
    )
    lengths = np.array([len(y) for y in y_train])  # (stays,)
    rng = np.random.default_rng(seed)
    draw = _batch_drawer(pool, lengths, batch_size, task.batching, rng)
    steps = -(-len(pool) // batch_size)  # batches per epoch, whichever the batching
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps, pct_start=0.1)
    # task.weight_average "ema": a moving average of the weights after every step, over about one epoch
    averaged = (
        torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(1.0 - 1.0 / steps)
        )
        if task.weight_average == "ema"
        else None
    )
    hour_weights = [task.hour_weights(y) for y in y_train]  # per stay (hours,)
    aux_targets = None if aux_head is None else [task.auxiliary_targets(y) for y in y_train]  # per stay (hours, 3)
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for idx in tqdm(draw(), desc=f"{label} epoch {epoch + 1}/{epochs}", unit="batch"):
            x, mask = pad_batch([x_train[i] for i in idx])  # (batch, hours, F), (batch, hours)
            y, _ = pad_batch([(y_train if targets is None else targets)[i][:, None] for i in idx])  # (batch, hours, 1)
            w, _ = pad_batch([hour_weights[i][:, None] for i in idx])  # (batch, hours, 1), 0 on padding
            weight = w.squeeze(-1) * mask  # (batch, hours)
            rep = model.representation(x, mask)  # (batch, hours, representation_size)
            logits = model.head(rep).squeeze(-1)  # (batch, hours)
            # (batch, hours): the tempered teacher's targets of these hours, when the loss has that share
            soft = None if tempered is None else pad_batch([tempered.targets[i][:, None] for i in idx])[0].squeeze(-1)
            loss_h = hour_loss(logits, y.squeeze(-1), tempered, soft)
            loss = (loss_h * weight).sum() / weight.sum()
            if aux_head is not None and aux_targets is not None:
                aux_y, _ = pad_batch([aux_targets[i] for i in idx])  # (batch, hours, outputs)
                aux_h = F.binary_cross_entropy_with_logits(aux_head(rep), aux_y, reduction="none").mean(-1)
                loss = loss + AUXILIARY_WEIGHT * (aux_h * mask).sum() / mask.sum()  # every real hour alike
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total += loss.item() * float(mask.sum())
            count += int(mask.sum())
        entry = {"epoch": epoch + 1, "train_loss": total / count}
        if x_val:
            scored = model if averaged is None else averaged.module  # what the member keeps, so far
            assert isinstance(scored, SepsisLSTM | SepsisTransformer)
            probs = predict_features(scored, x_val)
            try:
                threshold, _ = task.choose_threshold(y_val, probs)
                entry |= {f"val_{k}": v for k, v in task.figures(y_val, probs, threshold).items()}
            except ValueError:  # a tiny held-out fold with one class: nothing to score
                pass
        history.append(entry)
        tqdm.write(f"{label}: {entry}")
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
    return model, history


#: ``SequenceTask.batching`` "shuffled": each epoch's stays are sorted by length within pools of this many batches
BATCH_POOL = 8


def _batch_drawer(
    pool: np.ndarray, lengths: np.ndarray, batch_size: int, batching: Batching, rng: np.random.Generator
) -> Callable[[], list[np.ndarray]]:
    """A function that returns one epoch's batches of stay indices (each (<= batch_size,)), in the order they
    train, drawing on ``rng``: ``pool`` (stay indices, a stay repeated when oversampled) with the stays' hours
    ``lengths``. "fixed": the pool sorted by length and cut once, the same batches in a new order every epoch.
    "shuffled": the pool shuffled every epoch, cut into pools of ``BATCH_POOL`` batches, each sorted by length
    (little padding) and cut, then the batches in a random order; every epoch has as many batches as "fixed"."""
    if batching == "fixed":
        order_by_len = pool[np.argsort(lengths[pool], kind="stable")]
        batches = [order_by_len[i : i + batch_size] for i in range(0, len(order_by_len), batch_size)]
        return lambda: [batches[b] for b in rng.permutation(len(batches))]
    chunk = batch_size * BATCH_POOL

    def shuffled() -> list[np.ndarray]:
        order = rng.permutation(pool)
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        return [batches[b] for b in rng.permutation(len(batches))]

    return shuffled


@dataclass(frozen=True)
class TemperedTeacher:
    """The teacher's share of a member's loss at a temperature T > 1 (``SequenceTask.teacher_temperature``):
    ``targets`` per training stay (hours,) are sigmoid((logit(teacher) + log POS_WEIGHT) / T), so the share's
    optimum is the label term's log-odds offset, logit(teacher) + log POS_WEIGHT, at every T."""

    targets: list[np.ndarray]
    weight: float
    temperature: float


def hour_loss(
    logits: torch.Tensor, y: torch.Tensor, tempered: TemperedTeacher | None, soft: torch.Tensor | None
) -> torch.Tensor:
    """(batch, hours) loss of each hour before its hour weight. Without ``tempered``: the BCE (positive weight
    POS_WEIGHT) of ``logits`` against ``y``, the labels or their blend with the teacher. With it: (1 - w) x that
    BCE against the labels + w x T^2 x the BCE of logits / T against ``soft`` (the tempered targets of the same
    hours, (batch, hours)). As T grows the share approaches w x (logit - logit(teacher) - log POS_WEIGHT)^2 / 8
    plus a constant: it matches log-odds, so the teacher's ranking of low-risk hours counts as much as of high."""
    labelled = F.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor(POS_WEIGHT), reduction="none")
    if tempered is None:
        return labelled
    assert soft is not None
    t = tempered.temperature
    taught = F.binary_cross_entropy_with_logits(logits / t, soft, reduction="none") * (t * t)
    return (1 - tempered.weight) * labelled + tempered.weight * taught


def member_targets(
    labels: list[np.ndarray],
    teacher: list[np.ndarray] | None,
    idx: np.ndarray,
    weight: float,
    temperature: float = 1.0,
) -> tuple[list[np.ndarray], TemperedTeacher | None]:
    """Targets of the training stays ``idx`` and the teacher's tempered share. At temperature 1: (1 - weight) x
    label + weight x teacher, or the labels without a teacher, and no tempered share. Above 1: the labels, and
    the teacher's share as a :class:`TemperedTeacher`. ``labels`` are the task's training labels
    (``SequenceTask.training_labels``)."""
    hard = [labels[i].astype(np.float32) for i in idx]
    if teacher is None:
        return hard, None
    if temperature == 1:
        return [(1 - weight) * h + weight * teacher[i] for h, i in zip(hard, idx, strict=True)], None
    shifted = [(logit(teacher[i]) + np.log(POS_WEIGHT)) / temperature for i in idx]  # per stay (hours,)
    soft = [(1.0 / (1.0 + np.exp(-z))).astype(np.float32) for z in shifted]
    return hard, TemperedTeacher(soft, weight, temperature)


@dataclass(frozen=True)
class Pretraining:
    """Stays of another cohort to train a network on before it learns the task (models/cohort_transfer.py):
    their engineered features (hours_i, n_input) on the task's normalisation, their labels and the task that
    weights their hours, and the number of epochs."""

    features: list[np.ndarray]
    labels: list[np.ndarray]
    task: SequenceTask
    epochs: int


def fit_fold_members(
    task: SequenceTask,
    arch: str,
    records: Sequence[Stay],
    features: list[np.ndarray],
    fold_of: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    teacher_weight: float,
    label: str,
    members: list[int] | None = None,
    score_held: bool = True,
    d_model: int | None = None,
    pretraining: Pretraining | None = None,
    network_mask: np.ndarray | None = None,
    stats: NormStats | None = None,
) -> tuple[SequenceModel, list[np.ndarray], list[dict[str, float]]]:
    """The shipped recipe on these stays: one network per fold, each trained on the other folds towards the
    cross-fitted tree teacher -> (the ensemble of the fold networks (mean logit), every stay's out-of-fold
    hourly probabilities (empty for the stays of folds not trained), the training history).

    ``members``: train only these folds' networks (the protocol's one network per split is member 0 of a
    held-out/training split). ``score_held``: score each network's held-out fold after every epoch, for the log.
    ``d_model``: the networks' width (default: :class:`SequenceConfig`'s). ``pretraining``: one network is first
    trained on those stays (labels only, no teacher) and every member starts from its weights. ``network_mask``
    (one flag per stay): the members train only on the flagged stays of their training folds, while the teacher
    is fitted on every stay as without it (a learning curve of the networks alone). ``stats``: the normalisation
    ``features`` were engineered with (needed for ``task.thinned_copies``, whose copies are engineered alike)."""
    folds = int(fold_of.max()) + 1
    trained = list(range(folds)) if members is None else members
    n_stays = len(records)
    source = None
    if task.thinned_copies > 0:
        if stats is None:
            raise ValueError("thinned copies are engineered with the features' normalisation: pass stats")
        records, features, source = with_thinned_copies(task, records, features, fold_of, trained, stats, seed)
        fold_of = fold_of[source]
        network_mask = None if network_mask is None else network_mask[source]
    original = np.arange(len(records)) < n_stays  # held-out folds are scored on the original stays only
    labels = [r.labels for r in records]
    train_labels = [task.training_labels(y) for y in labels]  # what the teacher and the members learn
    # An MLP per-hour encoder for both: on a held-out fold it gave the Transformer a higher utility than a
    # linear one (0.336 vs 0.307) at a similar AUROC (0.821 vs 0.824); the LSTM always used it.
    width = {} if d_model is None else {"d_model": d_model}
    config = SequenceConfig(
        arch=arch, members=len(trained), encoder="mlp", head=task.head, n_input=task.schema.n_input, **width
    )
    single = config.model_copy(update={"members": 1})
    teacher: list[list[np.ndarray]] | None = None
    if teacher_weight > 0:
        teacher = task_teacher(task, records, features, fold_of, seed, members=members, source=source)
    states: list[dict[str, torch.Tensor]] = []
    history: list[dict[str, float]] = []
    oof: list[np.ndarray] = [np.empty(0)] * len(records)
    init = None
    if pretraining is not None:
        pretrained, pre_history = _fit_member(
            single, pretraining.features, [y.astype(np.float32) for y in pretraining.labels], [], [],
            epochs=pretraining.epochs, batch_size=batch_size, lr=lr, seed=seed, label=f"{label} pretraining",
            task=pretraining.task,
        )  # fmt: skip
        init = pretrained.state_dict()
        history.extend({"pretraining": 1, **h} for h in pre_history)
    for fold in trained:
        outside = fold_of != fold
        train_idx = np.flatnonzero(outside if network_mask is None else outside & network_mask)
        held_idx = np.flatnonzero((fold_of == fold) & original)
        x_held = [features[i] for i in held_idx]
        targets, tempered = member_targets(
            train_labels, None if teacher is None else teacher[fold], train_idx, teacher_weight,
            task.teacher_temperature,
        )  # fmt: skip
        member, member_history = _fit_member(
            single,
            [features[i] for i in train_idx],
            [labels[i].astype(np.float32) for i in train_idx],
            x_held if score_held else [],
            [labels[i] for i in held_idx] if score_held else [],
            epochs=epochs, batch_size=batch_size, lr=lr, seed=seed + fold, label=f"{label} fold {fold + 1}/{folds}",
            targets=targets, task=task, init=init, tempered=tempered,
        )  # fmt: skip
        for i, prob in zip(held_idx, predict_features(member, x_held), strict=True):
            oof[i] = prob
        states.append(member.state_dict())
        history.extend({"fold": fold + 1, **h} for h in member_history)
    model = build_sequence_model(config)
    if len(states) > 1:
        assert isinstance(model, SequenceEnsemble)
        for sub, state in zip(model.members, states, strict=True):
            sub.load_state_dict(state)
    else:
        model.load_state_dict(states[0])
    return model, oof[:n_stays], history


def train_sequence(
    arch: str,
    data: Path,
    out: Path,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    folds: int = 5,
    limit: int | None = None,
    teacher_weight: float | None = None,
    task: SequenceTask = SEPSIS_TASK,
    name: str | None = None,
    exclude_reserve: bool = False,
    d_model: int | None = None,
) -> SequenceTrainResult:
    """Train ``folds`` networks of ``arch`` on ``task``'s stays in ``data`` (each on the other folds; the
    checkpoint averages them) and choose the threshold on their out-of-fold predictions. With
    ``exclude_reserve`` the protocol's reserve (models/protocol.py) is left out entirely."""
    from models.protocol import RECIPE_DEFAULTS, drop_reserved

    seed_everything(seed)
    started = time.time()
    schema = task.schema
    all_records = task.load(data, limit=limit)
    records = drop_reserved(all_records, exclude_reserve)
    problem = fold_outcomes_problem(task, records, folds)
    if problem is not None:  # before any fold is trained, not when the threshold finds no positive stay
        which = f" (the first {limit} read)" if limit is not None else ""
        kept = " outside the protocol's reserve" if exclude_reserve else ""
        raise TrainingDataError(
            f"{data} holds {len(records)} stay(s){which}{kept} {problem}; pass a --data folder with more stays of "
            "each outcome, or lower --folds"
        )
    fold_of = stay_folds(records, folds, seed)
    labels = [r.labels for r in records]
    stats = NormStats.fit_records([r.values for r in records], schema)
    features = [engineer(r.values, stats, schema) for r in tqdm(records, desc="features", unit="stay")]

    if teacher_weight is None:
        teacher_weight = TEACHER_WEIGHT[arch]
    model, oof, history = fit_fold_members(
        task, arch, records, features, fold_of,
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, teacher_weight=teacher_weight, label=arch,
        d_model=d_model, stats=stats,
    )  # fmt: skip
    config = model.config
    threshold, _ = task.choose_threshold(labels, oof)
    name = name or arch
    meta = CheckpointMeta(
        kind=name,
        version=time.strftime(f"{name}-%Y%m%d"),
        task=task.description,
        labels=list(task.labels),
        threshold=float(threshold),
        config=config.model_dump(mode="json"),
        preprocessing={
            "schema": schema.name,
            **{key: getattr(task, key) for key in RECIPE_DEFAULTS},  # the recipe, as the protocol records it
            "features": list(schema.columns),
            "engineering": "forward fill; z-score with training mean/std; measured-this-hour masks; "
            "hours since last measurement (capped at 72, /72); measurement counts; trends of the first "
            f"{schema.n_trend} variables; static columns z-scored (flags 0/1)"
            + (f"; derived ratios {', '.join(d[0] for d in schema.derived)}" if schema.derived else "")
            + (
                "; running min / max / mean of what was measured, change from the first value and from the "
                "last day's mean"
                if schema.summaries
                else ""
            )
            + (
                f"; level-2 log-signature (increments, Levy areas) of time and {', '.join(schema.signature)} "
                f"over the last {SIGNATURE_WINDOW} hours, signed log scale"
                if schema.signature
                else ""
            )
            + f"; piecewise-linear encoding in {PLE_BINS} training-quantile bins of the forward-filled "
            f"measurements and of {', '.join(schema.ple_static)}",
            "norm_stats": stats.model_dump(mode="json"),
            "threshold_rule": task.threshold_rule,
            "out_of_fold": task.figures(labels, oof, threshold),
            "reserve_excluded": len(all_records) - len(records),
        },
    )
    save_checkpoint(out, meta, model.state_dict())
    return SequenceTrainResult(
        meta=meta,
        val_labels=labels,
        val_probs=oof,
        n_stays=len(records),
        folds=folds,
        history=history,
        seconds=time.time() - started,
        teacher_weight=teacher_weight,
    )


#: what the model card says of each task
_CARD_TEXT: dict[str, dict[str, object]] = {
    "sepsis": {
        "task": "Sepsis in the ICU, hour by hour: a score that the patient has or will develop sepsis within 6 hours "
        "(PhysioNet 2019 shifted SepsisLabel), from the record up to that hour, and its calibrated probability",
        "evaluation_dataset": "out-of-fold predictions on all stays (hourly): each stay scored by the fold model "
        "that never saw it; the threshold was also chosen on them",
        "intended_use": "Research and demonstration of early-warning scores: an hourly sepsis risk for adult ICU "
        "patients, reviewed by a clinician. Not for clinical use.",
        "limitations": [
            "Trained on one hospital system (challenge set B); other hospitals differ in case mix, "
            "measurement frequency and sepsis definition (Sepsis-3 as computed by the challenge).",
            "The label is already shifted 6 hours earlier than clinical onset.",
            "Missingness patterns carry signal (what clinicians chose to measure): workflow changes shift the model.",
            "The out-of-fold stays also chose the threshold, and normalisation statistics and quantile bin edges "
            "used all stays: the utility is slightly optimistic; AUROC is not tuned. The evaluation protocol "
            "(python -m models.protocol) gives the honest figures with their spread.",
            "Not for clinical use.",
        ],
    },
    "mortality": {
        "task": "Death in hospital for an adult ICU stay, from its first 48 hours (PhysioNet 2012 In-hospital_death): "
        "a score, and its calibrated probability, also hour by hour as the 48 hours unfold",
        "evaluation_dataset": "out-of-fold predictions on all stays (one per stay, the 48th hour's risk): each stay "
        "scored by the fold model that never saw it; the threshold was also chosen on them",
        "intended_use": "Research and demonstration of ICU outcome prediction: a mortality risk after 48 hours "
        "for a clinician's review, not a triage or treatment-limiting decision. Not for clinical use.",
        "limitations": [
            "Four ICU types of one US hospital (MIMIC-II era data, 2001-2008); practice and case mix have changed.",
            "The outcome depends on decisions after 48 h (treatment, limitation of care) that the model cannot see.",
            "Missingness carries signal (an arterial line, a lactate drawn): workflow changes shift the model.",
            "The out-of-fold stays also chose the threshold: event-1 is slightly optimistic; AUROC is not tuned. "
            "The evaluation protocol (python -m models.protocol) gives the honest figures with their spread.",
            "Not for clinical use.",
        ],
    },
}


def card_evaluation(
    task: SequenceTask, labels: list[np.ndarray], probs: list[np.ndarray], threshold: float
) -> tuple[BinaryEvaluation, dict[str, float]]:
    """The model card's evaluation of out-of-fold hourly ``probs`` at ``threshold``: sepsis every hour (and the
    utility), mortality each stay's last hour (and event-1, the card's extra metric)."""
    from models.metrics import binary_evaluation, normalized_utility

    if task.name == "sepsis":
        evaluation = binary_evaluation(np.concatenate(labels), np.concatenate(probs), threshold)
        evaluation.utility = normalized_utility(labels, [p >= threshold for p in probs])
        return evaluation, {}
    outcome = np.array([int(y.any()) for y in labels])
    evaluation = binary_evaluation(outcome, task.stay_scores(probs), threshold)
    return evaluation, {"Event-1 score min(Se, +P)": task.figures(labels, probs, threshold)["event1"]}


def train_sequence_cli(args: argparse.Namespace, command: str) -> int:
    from models.cards import MORTALITY_SOURCE, SEPSIS_SOURCE, ModelCard, write_card
    from models.catalogue import entry

    model = entry(args.model)
    task = task_from_options(model.task.name, args)
    data = args.data or task.default_data()
    epochs, batch_size, lr = args.epochs or 12, args.batch_size or 32, args.lr or 2e-3
    try:
        result = train_sequence(
            model.architecture,
            data,
            args.out,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=args.seed,
            folds=args.folds,
            limit=args.limit,
            teacher_weight=args.teacher_weight,
            task=task,
            name=model.name,
            exclude_reserve=True,
            d_model=args.d_model,
        )
    except TrainingDataError as exc:  # found when the stays are read, before any training: a usage error
        print(f"python -m models.train: error: {exc}", file=sys.stderr)
        return 2
    meta, teacher_weight = result.meta, result.teacher_weight
    text = _CARD_TEXT[task.name]
    evaluation, extra = card_evaluation(task, result.val_labels, result.val_probs, meta.threshold)
    n_positive = sum(int(y.any()) for y in result.val_labels)
    folds = result.folds
    excluded = int(meta.preprocessing["reserve_excluded"])
    reserve = f"; the protocol's reserve ({excluded} stays, models/protocol.py) left out" if excluded else ""
    card = ModelCard(
        name=model.name,
        version=meta.version,
        task=str(text["task"]),
        created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        data=SEPSIS_SOURCE if task.name == "sepsis" else MORTALITY_SOURCE,
        data_path=str(data),
        split=(
            f"{folds}-fold stay-level cross-validation stratified by outcome over {result.n_stays} stays "
            f"({n_positive} {'septic' if task.name == 'sepsis' else 'died in hospital'}), seed {args.seed}; "
            f"the checkpoint is the ensemble of the {folds} fold models (mean logit){reserve}"
        ),
        command=command,
        seed=args.seed,
        training_seconds=result.seconds,
        hyperparameters={
            "features": f"{task.schema.name}: {task.schema.n_input} channels per hour",
            "epochs": epochs,
            "members": f"{folds} fold models, each trained on {folds - 1}/{folds} of the stays",
            "epochs kept": "last (fixed schedule, nothing chosen on held-out stays)",
            "batch_size": batch_size,
            "max_lr": lr,
            "optimizer": f"AdamW (wd {WEIGHT_DECAY}), one-cycle schedule, grad-norm clip 1.0",
            "loss": f"hourly BCE, positive weight {POS_WEIGHT}"
            + ("; half the weight on the 48th hour, half over the hours before" if task.name == "mortality" else "")
            + ("; septic stays' hours weighted 1 + |U(alarm) - U(no alarm)|" if task.weighting == "utility" else "")
            + (
                f"; plus {AUXILIARY_WEIGHT:g} x the BCE of an auxiliary head (onset within "
                f"{' and '.join(map(str, HORIZONS))} h, the stay becomes septic), discarded after training"
                if task.auxiliary == "horizons"
                else ""
            ),
            "targets": (
                (
                    f"{1 - teacher_weight:g} x label + {teacher_weight:g} x teacher; teacher: gradient-boosted trees "
                    f"(scikit-learn HistGradientBoostingClassifier, {TEACHER_PARAMS}, seed {args.seed}) on the first "
                    f"{task.schema.n_dense} engineered channels, cross-fitted so that no stay is scored by trees that "
                    "saw it or the member's held-out fold; used in training only"
                    + ("; the trees' rows weighted as the loss's hours" if task.teacher_hours == "task" else "")
                    + (
                        f"; at the 48th hour, the mean logit of those trees and of trees on the stay's aggregates "
                        f"({AGGREGATE_PARAMS})"
                        if task.teacher == "hourly+stay"
                        else ""
                    )
                    + (
                        f"; cross-fitted in {task.teacher_groups} groups of stays"
                        if task.teacher_groups is not None
                        else ""
                    )
                    + (
                        f"; the teacher's share learnt at temperature {task.teacher_temperature:g}: "
                        f"{1 - teacher_weight:g} x the labels' BCE + {teacher_weight:g} x T^2 x the BCE of logit / T "
                        f"against (logit(teacher) + log {POS_WEIGHT:g}) / T"
                        if task.teacher_temperature != 1
                        else ""
                    )
                    if teacher_weight > 0
                    else "labels"
                )
                + (
                    "; label: SepsisLabel or the utility's rewarded alarm window from t_sepsis - 12 h"
                    if task.target == "window"
                    else ""
                )
            ),
            "sampling": f"positive stays repeated {SEPTIC_REPEAT}x per epoch"
            + (
                f"; batches drawn afresh every epoch, alike lengths within random pools of {BATCH_POOL} batches"
                if task.batching == "shuffled"
                else "; batches of alike lengths, the same every epoch"
            )
            + (
                f"; each training stay also as {task.thinned_copies} thinned copies (each measured value left out "
                f"with probability {THIN_DROP:g}), each with the teacher's targets for the copy"
                if task.thinned_copies
                else ""
            )
            + (
                "; each network keeps a moving average of its weights over the last epoch's steps (EMA)"
                if task.weight_average == "ema"
                else ""
            ),
            **meta.config,
        },
        labels=meta.labels,
        threshold=meta.threshold,
        threshold_rule=str(meta.preprocessing["threshold_rule"]),
        evaluation_dataset=str(text["evaluation_dataset"]),
        evaluation=evaluation,
        extra_metrics=extra,
        intended_use=str(text["intended_use"]),
        limitations=list(text["limitations"]),  # type: ignore[call-overload]
    )
    write_card(args.out, card)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in meta.preprocessing["out_of_fold"].items())
    print(f"wrote {args.out}: out-of-fold {shown}")
    return 0
