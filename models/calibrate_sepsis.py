"""Calibrate a sequence model's risk on its out-of-fold predictions and store the calibrator.

python -m models.calibrate lstm|transformer|mortality-lstm|mortality-transformer [--weights DIR] [--data DIR]

Sepsis models are calibrated on every hour; mortality models on each stay's last (48th) hour, their prediction.

The checkpoint holds one network per training fold (``SequenceConfig.members``) and the folds are
deterministic (``models.train_sequence.stay_folds`` with the card's seed), so the out-of-fold predictions of
training are recomputed from the checkpoint without retraining: every stay is scored by the member that never
saw it. They are checked against the training card (AUROC, utility, Brier) and then

* calibrators (temperature, Platt, isotonic; models/calibration.py) are cross-fitted over the same folds of
  stays: each fold's hours are calibrated by a calibrator fitted on the other folds' hours, so no stay's hours
  straddle fit and score; the rule of :data:`CALIBRATION_RULE` picks one, which is then fitted on every hour;
* the fold-ensemble spread (std of the members' hourly probabilities) is summarised over every hour;
* ``model.pt`` (``meta.trust``: :class:`models.trust.SepsisTrustSettings`), ``card.json`` and ``card.md``
  (:class:`models.trust_report.SepsisTrustReport`) are rewritten. The weights and the threshold are unchanged.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.backends import this_machine
from models.calibration import CalibrationMethod, Calibrator, brier, cross_fitted, fit_calibrator
from models.cards import ModelCard, read_card, write_card
from models.catalogue import entry
from models.checkpoint import CARD_JSON, CheckpointMeta, load_checkpoint, save_checkpoint
from models.errors import WeightsError
from models.metrics import expected_calibration_error, normalized_utility, reliability_curve
from models.protocol import is_reserved
from models.sequence import (
    PROB_EPS,
    NormStats,
    SequenceConfig,
    SequenceEnsemble,
    build_sequence_model,
    engineer,
    pad_batch,
    schema_of,
)
from models.sequence_tasks import SequenceTask, Stay, sequence_task
from models.train_sequence import stay_folds
from models.trust import SEPSIS_CALIBRATION_CAVEAT, SepsisTrustSettings
from models.trust_report import CalibrationRow, OutOfFoldCheck, SepsisTrustReport

#: Simplest first; a later method is adopted only if it beats the one adopted so far on both figures.
METHODS: tuple[CalibrationMethod, ...] = ("temperature", "platt", "isotonic")
CALIBRATION_RULE = (
    "Rule: temperature scaling, unless Platt scaling has both a lower cross-fitted ECE and a lower Brier score; "
    "then isotonic regression if it has both lower than the one adopted so far."
)
THRESHOLD_NOTE = (
    "The alert label stays on the raw risk at the operating threshold (unchanged by calibration): the calibrated "
    "risk is shown beside it and never decides a label."
)


def member_logits(model: SequenceEnsemble, features: list[np.ndarray], batch_size: int = 64) -> list[np.ndarray]:
    """Engineered records -> each record's (members, hours) logits of every member, batched by length."""
    order = np.argsort([f.shape[0] for f in features], kind="stable")
    out: list[np.ndarray] = [np.empty((0, 0))] * len(features)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            x, mask = pad_batch([features[i] for i in chunk])  # (b, hours, F), (b, hours)
            logits = model.member_logits(x, mask).double().numpy()  # (members, b, hours)
            for j, i in enumerate(chunk):
                out[i] = logits[:, j, : features[i].shape[0]]
    return out


def cross_fit(logits: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict[str, np.ndarray]:
    """Method -> cross-fitted hourly probabilities ("uncalibrated": the raw risk). ``folds`` (hours,) is each
    hour's stay fold, so a stay's hours are never both fitted on and scored."""
    raw = np.clip(1.0 / (1.0 + np.exp(-logits)), PROB_EPS, 1.0 - PROB_EPS)
    return {"uncalibrated": raw, **cross_fitted(METHODS, logits, labels, folds)}


def adopt(figures: dict[str, tuple[float, float]]) -> CalibrationMethod:
    """:data:`CALIBRATION_RULE` on method -> (ECE, Brier)."""
    adopted = METHODS[0]
    for method in METHODS[1:]:
        if figures[method][0] < figures[adopted][0] and figures[method][1] < figures[adopted][1]:
            adopted = method
    return adopted


@dataclass
class OutOfFold:
    """A fold-ensemble checkpoint and its training stays, every stay scored by each member."""

    meta: CheckpointMeta
    state: dict[str, Any]
    config: SequenceConfig
    card: ModelCard | None
    task: SequenceTask
    records: list[Stay]  # the stays it was trained on (without the protocol's reserve if it was left out)
    stay_fold: np.ndarray  # (stays,) the fold of each stay: the member that never saw it
    every: list[np.ndarray]  # per stay (members, hours) logits

    def logits(self) -> list[np.ndarray]:
        """Per stay (hours,): the out-of-fold hourly logits, from the member trained without the stay's fold."""
        return [logits[self.stay_fold[i]] for i, logits in enumerate(self.every)]

    def probabilities(self) -> list[np.ndarray]:
        """Per stay (hours,): the out-of-fold hourly risk."""
        return [_risk(z) for z in self.logits()]


def _risk(logits: np.ndarray) -> np.ndarray:
    """Logits -> the raw risk, kept inside (0, 1) as the served risk is."""
    return np.clip(1.0 / (1.0 + np.exp(-logits)), PROB_EPS, 1.0 - PROB_EPS)


def out_of_fold(model_name: str, weights: Path, data: Path | None) -> OutOfFold:
    """Rebuild training's out-of-fold predictions from the checkpoint at ``weights`` (no retraining)."""
    meta, state = load_checkpoint(weights, expected=model_name)
    card = read_card(weights) if (weights / CARD_JSON).is_file() else None
    config = SequenceConfig.model_validate(meta.config)
    if config.members < 2:
        raise WeightsError(f"{weights} holds one network, not one per fold: out-of-fold predictions cannot be rebuilt.")
    model = build_sequence_model(config)
    assert isinstance(model, SequenceEnsemble)
    model.load_state_dict(state)
    model.eval()
    stats = NormStats.model_validate(meta.preprocessing["norm_stats"])
    seed = card.seed if card is not None else 0
    schema = schema_of(meta.preprocessing)
    task = sequence_task(entry(model_name).task.name, schema.name)
    records = task.load(data or task.default_data())
    if meta.preprocessing.get("reserve_excluded"):  # trained without the protocol's reserve: so are its folds
        records = [r for r in records if not is_reserved(r.name)]
    stay_fold = stay_folds(records, config.members, seed)
    features = [engineer(r.values, stats, schema) for r in records]
    return OutOfFold(meta, state, config, card, task, records, stay_fold, member_logits(model, features))


#: how far the recomputed out-of-fold AUROC and Brier score may lie from the card's (float summation order)
SAME_FIGURE = 1e-6


class TrainingDataMismatchError(ValueError):
    """The data given are not the stays the checkpoint was trained on: its members would score stays they trained
    on, and a calibrator fitted on those in-sample scores would be stored."""


@dataclass
class Predictions:
    """What calibration reads of an :class:`OutOfFold`: the predictions scored (every hour for sepsis, the last
    hour of each stay for mortality, the stay's prediction)."""

    every: list[np.ndarray]  # per stay (members, predictions) logits of every member
    oof: list[np.ndarray]  # per stay (predictions,) out-of-fold logits
    labels: list[np.ndarray]  # per stay (predictions,) 0/1

    @classmethod
    def of(cls, fit: OutOfFold) -> Predictions:
        every, oof = fit.every, fit.logits()
        labels = [r.labels.astype(np.int64) for r in fit.records]
        if fit.task.name == "mortality":  # the stay's prediction is its last hour: calibrate that one
            every = [logits[:, -1:] for logits in every]
            oof = [logits[-1:] for logits in oof]
            labels = [lab[-1:] for lab in labels]
        return cls(every, oof, labels)

    def check(self, fit: OutOfFold) -> OutOfFoldCheck:
        """The out-of-fold figures beside the training card's (nan / None without a card)."""
        from sklearn.metrics import roc_auc_score

        y, raw = np.concatenate(self.labels), _risk(np.concatenate(self.oof))
        per_stay_raw = np.split(raw, np.cumsum([len(lab) for lab in self.labels])[:-1])
        card = fit.card
        return OutOfFoldCheck(
            n_stays=len(fit.records),
            n_hours=len(raw),
            auroc=float(roc_auc_score(y, raw)) if 0 < y.sum() < len(y) else float("nan"),
            card_auroc=card.evaluation.auroc if card is not None else float("nan"),
            utility=(
                normalized_utility(self.labels, [p >= fit.meta.threshold for p in per_stay_raw])
                if fit.task.name == "sepsis" and y.any()
                else None
            ),
            card_utility=card.evaluation.utility if card is not None else None,
            brier=brier(y, raw),
            card_brier=card.evaluation.brier if card is not None else float("nan"),
        )


def require_training_data(fit: OutOfFold, weights: Path, data: Path | None) -> OutOfFoldCheck:
    """The out-of-fold check, if the stays are those the checkpoint at ``weights`` was trained on: the card's
    evaluation (the out-of-fold predictions of training) has the same number of predictions and positives, and
    AUROC and Brier score within :data:`SAME_FIGURE`. Else :class:`TrainingDataMismatchError`, which says what to
    pass. Without a card, the AUROC the checkpoint's preprocessing recorded at training is compared."""
    predictions = Predictions.of(fit)
    check = predictions.check(fit)
    n_positive = int(np.concatenate(predictions.labels).sum())
    recorded = fit.meta.preprocessing.get("out_of_fold", {}).get("auroc")
    if fit.card is not None:
        ev = fit.card.evaluation
        expected = f"{ev.n} predictions ({ev.n_positive} positive), AUROC {ev.auroc:.6f}, Brier {ev.brier:.6f}"
        same = (
            (check.n_hours, n_positive) == (ev.n, ev.n_positive)
            and abs(check.auroc - ev.auroc) <= SAME_FIGURE
            and abs(check.brier - ev.brier) <= SAME_FIGURE
        )
    elif recorded is not None:
        expected, same = f"AUROC {recorded:.6f}", abs(check.auroc - float(recorded)) <= SAME_FIGURE
    else:
        raise TrainingDataMismatchError(
            f"{weights} has neither a card.json nor a recorded out-of-fold AUROC: nothing tells whether --data holds "
            "the stays it was trained on. Train it with `python -m models.train` (which writes both)."
        )
    if same:
        return check
    trained_on = fit.card.data_path if fit.card is not None else "the data it was trained on"
    raise TrainingDataMismatchError(
        f"--data {data or fit.task.default_data()} is not the training data of {weights}: its out-of-fold "
        f"predictions there are {check.n_hours} ({n_positive} positive, {check.n_stays} stays), AUROC "
        f"{check.auroc:.6f}, Brier {check.brier:.6f}; training's were {expected}. On other stays the members "
        f"score stays they trained on, and a calibrator fitted on those scores would be stored. Pass the training "
        f"data the card names (--data {trained_on}, the same files); nothing was written."
    )


def calibrate_sequence(model_name: str, weights: Path, data: Path | None, argv: list[str]) -> int:
    """Everything in this module's docstring; prints the figures. Data other than the checkpoint's training stays
    raise :class:`TrainingDataMismatchError` before anything is written."""
    started = time.time()
    oof_fit = out_of_fold(model_name, weights, data)
    check = require_training_data(oof_fit, weights, data)
    meta, state, card, records = oof_fit.meta, oof_fit.state, oof_fit.card, oof_fit.records
    predictions = Predictions.of(oof_fit)
    every, oof, labels = predictions.every, predictions.oof, predictions.labels

    z = np.concatenate(oof)
    y = np.concatenate(labels)
    hour_fold = np.concatenate([np.full(len(lab), oof_fit.stay_fold[i]) for i, lab in enumerate(labels)])
    raw = _risk(z)

    # calibration, cross-fitted over the stay folds
    probs = cross_fit(z, y, hour_fold)
    figures = {m: (expected_calibration_error(y, p), brier(y, p)) for m, p in probs.items()}
    method = adopt(figures)
    calibrator: Calibrator = fit_calibrator(method, z, y)

    # the served ensemble's spread: std of the members' probabilities, every hour of every stay
    member_prob = 1.0 / (1.0 + np.exp(-np.concatenate(every, axis=1)))  # (members, hours)
    spread = member_prob.std(axis=0)

    # the alerting predictions: the ECE is dominated by the many low-risk hours, and alerts are read here
    alerting = raw >= meta.threshold
    stay_of = np.concatenate([np.full(len(lab), i) for i, lab in enumerate(labels)])
    alert_means = {m: float(p[alerting].mean()) if alerting.any() else None for m, p in probs.items()}

    command = "python -m models.calibrate " + " ".join(shlex.quote(a) for a in argv)
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    fitted_on = (
        f"{method} on the out-of-fold hourly logits of {len(records)} stays ({len(z)} hours). "
        + SEPSIS_CALIBRATION_CAVEAT
    )
    trust = SepsisTrustSettings(calibration=calibrator, fitted=f"{measured}: {command}", fitted_on=fitted_on)
    new_meta = CheckpointMeta.model_validate({**meta.model_dump(), "trust": trust.model_dump(mode="json")})
    save_checkpoint(weights, new_meta, state)
    report = SepsisTrustReport(
        measured=measured,
        command=command,
        machine=this_machine().describe(),
        folds=oof_fit.config.members,
        out_of_fold=check,
        calibration_rule=CALIBRATION_RULE + f" Adopted: {method}.",
        calibration=[
            CalibrationRow(method=m, ece=e, brier=b, adopted=m == method, alert_mean=alert_means[m])
            for m, (e, b) in figures.items()
        ],
        reliability={m: reliability_curve(y, p) for m, p in probs.items()},
        caveat=SEPSIS_CALIBRATION_CAVEAT,
        threshold_note=THRESHOLD_NOTE,
        spread_mean=float(spread.mean()),
        spread_p90=float(np.quantile(spread, 0.9)),
        alert_hours=int(alerting.sum()),
        alert_stays=int(np.unique(stay_of[alerting]).size),
        alert_observed=float(y[alerting].mean()) if alerting.any() else None,
    )
    if card is not None:
        card.trust = report
        write_card(weights, card)
    _print(report, calibrator, time.time() - started)
    return 0


def _print(r: SepsisTrustReport, calibrator: Calibrator, seconds: float) -> None:
    c = r.out_of_fold
    print(f"out of fold: {c.n_stays} stays, {c.n_hours} hours")
    print(f"  AUROC   {c.auroc:.6f} (card {c.card_auroc:.6f})")
    if c.utility is not None:
        shown = c.card_utility if c.card_utility is None else round(c.card_utility, 6)
        print(f"  utility {c.utility:.6f} (card {shown})")
    print(f"  Brier   {c.brier:.6f} (card {c.card_brier:.6f})")
    for row in r.calibration:
        at_alerts = "" if row.alert_mean is None else f"  mean at alerts {row.alert_mean:.3f}"
        print(f"calibration {row.method:12s}{'*' if row.adopted else ' '} ECE {row.ece:.4f}  Brier {row.brier:.5f}"
              + at_alerts)  # fmt: skip
    if r.alert_observed is not None:
        print(f"alerts: {r.alert_hours} predictions of {r.alert_stays} stays, label 1 in {r.alert_observed:.3f}")
    print(f"adopted: {calibrator.model_dump(exclude={'x', 'y'})} ({len(calibrator.x)} isotonic breakpoints)")
    print(f"ensemble spread (std of member probabilities): mean {r.spread_mean:.4f}, p90 {r.spread_p90:.4f}")
    print(f"({seconds:.0f} s) wrote model.pt and the card", file=sys.stderr)


__all__ = [
    "CALIBRATION_RULE",
    "METHODS",
    "SAME_FIGURE",
    "OutOfFold",
    "Predictions",
    "TrainingDataMismatchError",
    "adopt",
    "calibrate_sequence",
    "cross_fit",
    "member_logits",
    "out_of_fold",
    "require_training_data",
]
