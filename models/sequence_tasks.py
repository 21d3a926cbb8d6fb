"""What a sequence task asks of the LSTM and the Transformer: its records, labels, loss weights, threshold rule
and figures. Training (models/train_sequence.py), the evaluation protocol (models/protocol.py) and the CLIs
read one :class:`SequenceTask`; the networks and the feature engineering (models/sequence.py) are shared.

- ``sepsis``: hourly risk (PhysioNet 2019 ``SepsisLabel``), scored hour by hour with AUROC and the
  challenge's normalised utility; threshold: the utility's best.
- ``mortality``: in-hospital death from the first 48 hours (PhysioNet 2012); every hour is trained towards
  the stay's outcome (the risk as the 48 hours unfold), the stay's prediction is its last hour's; scored per
  stay with AUROC and the challenge's event-1 score min(sensitivity, positive predictive value); threshold:
  the event-1 score's best.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

import numpy as np

from models.metrics import threshold_below
from models.sequence import SEPSIS_V1, FeatureSchema
from models.sequence_options import (
    Auxiliary,
    Batching,
    Head,
    Target,
    TeacherHours,
    TeacherKind,
    WeightAverage,
    Weighting,
)

TaskName = Literal["sepsis", "mortality"]


class Labelled(Protocol):
    """A stay with hourly labels (a :class:`Stay`, a labelled ``SepsisRecord``)."""

    @property
    def labels(self) -> np.ndarray | None: ...


@dataclass
class Stay:
    """One ICU stay as the networks see it: ``values`` (hours, len(schema.columns)) raw with NaN and ``labels``
    (hours,) 0/1 training targets (sepsis: the hourly label; mortality: the outcome on every hour)."""

    name: str
    values: np.ndarray
    labels: np.ndarray


def stay_outcome(labels: np.ndarray) -> int:
    return int(labels.any())


def event1(y: np.ndarray, pred: np.ndarray) -> float:
    """The 2012 challenge's event-1 score: min(sensitivity, positive predictive value) of 0/1 predictions."""
    tp = float(np.sum((pred == 1) & (y == 1)))
    se = tp / max(1.0, float(np.sum(y == 1)))
    ppv = tp / max(1.0, float(np.sum(pred == 1)))
    return min(se, ppv)


def best_event1_threshold(y: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """(threshold, event-1) maximising min(Se, +P) of ``prob >= threshold``; ties: the largest threshold (the fewest
    stays flagged). The threshold is no score itself: it lies midway between the lowest flagged score and the next
    lower one, both in float32 (what the predictors return), so a stay's score computed in float64 or in float32
    falls on the same side (unless it moves by half the gap); with no lower score, midway between it and 0."""
    p32 = np.asarray(prob).astype(np.float32)
    order = np.argsort(-p32, kind="stable")
    p_sorted, y_sorted = p32[order], y[order]
    tp = np.cumsum(y_sorted)  # flagging the k + 1 highest
    k = np.arange(1, len(y) + 1)
    score = np.minimum(tp / max(1, int(y.sum())), tp / k)
    # only cut between distinct float32 probabilities: a threshold flags every stay at or above it
    last_of_run = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    score = np.where(last_of_run, score, -1.0)
    best = int(np.argmax(score))
    return threshold_below(p32, float(p_sorted[best])), float(score[best])


LABEL_HORIZON = 6  # SepsisLabel is 1 from 6 hours before onset
HORIZONS = (12, 24)  # the auxiliary head's onset horizons, in hours (SequenceTask.auxiliary)
AUXILIARY_WEIGHT = 0.5  # the auxiliary head's share of the loss, beside the served head's 1
#: SequenceTask.thinned_copies: each measured value of a time-varying variable is left out of a thinned copy with
#: this probability (fixed with rule 26 in docs/sepsis-protocol.md, before its run; not tuned)
THIN_DROP = 0.2


@dataclass(frozen=True)
class SequenceTask:
    name: TaskName
    schema: FeatureSchema
    labels: tuple[str, str]
    description: str  # the checkpoint's ``task``
    threshold_rule: str
    primary: str  # the figure the threshold maximises, one of figures()' keys
    #: sepsis: "uniform" (every hour alike) or "utility" (each hour of a septic stay also weighted by how much
    #: the challenge's utility gains from a right answer there: 1 + |U(alarm) - U(no alarm)|, up to 4 at onset)
    weighting: Weighting = "uniform"
    #: sepsis: what the networks and the tree teacher are trained towards. "label": SepsisLabel. "window": also
    #: the hours of the challenge's best-possible alarm window before it, from t_sepsis - 12 h (6 h before
    #: SepsisLabel turns 1), where the utility already rewards an alarm. Scoring always uses SepsisLabel.
    target: Target = "label"
    #: the tree teacher's row weights: "uniform" (every hour alike) or "task" (``hour_weights``: for mortality
    #: half the weight on the 48th hour, the stay's prediction, as in the networks' loss)
    teacher_hours: TeacherHours = "uniform"
    #: how the tree teacher is cross-fitted. None: by the training folds themselves (5-fold training: a stay's
    #: trees for member k are fitted on the folds other than the stay's and k's, 3/5 of the stays; the protocol's
    #: one member: on the other half of its training stays, 2/5). G: every stay is put in one of G groups
    #: (stratified), and member k's trees for a stay are fitted on k's training stays outside the stay's group,
    #: (G - 1)/G of them: folds x G tree fits.
    teacher_groups: int | None = None
    #: sepsis: a second head trained beside the served one, on the same representation, and discarded after
    #: training. "horizons": onset within 12 h, within 24 h (both "or ongoing") and "the stay becomes septic"
    #: (``auxiliary_targets``), at weight ``AUXILIARY_WEIGHT`` in the loss. "none": no second head.
    auxiliary: Auxiliary = "none"
    #: mortality: "hourly" (trees on the schema's dense channels, every hour) or "hourly+stay": the 48th hour's
    #: teacher probability is the mean logit of those trees and of trees on the stay's 48-hour aggregates
    #: (``models.mortality_features.stay_aggregates``), cross-fitted in the same groups
    teacher: TeacherKind = "hourly"
    #: consistent teaching on thinned copies: each training stay of a network is joined by this many copies in
    #: which every measured value of a time-varying variable is left out with probability ``THIN_DROP`` (static
    #: and administrative columns kept), with the stay's labels and the teacher's probabilities for the copy from
    #: the same cross-fitted trees that score the stay (fitted on the original stays only). 0: none
    thinned_copies: int = 0
    #: what a network keeps after training: "none" (its last weights) or "ema" (an exponential moving average of
    #: its weights after every step, with a horizon of one epoch: decay 1 - 1 / steps per epoch)
    weight_average: WeightAverage = "none"
    #: how a network learns its teacher's share: 1, one BCE on the blend (1 - w) x label + w x teacher; T > 1,
    #: (1 - w) x the labels' BCE + w x T^2 x the BCE of logits / T against the teacher's shifted log-odds / T
    #: (``models.train_sequence.TemperedTeacher``), which approaches matching the teacher's log-odds as T grows
    teacher_temperature: float = 1.0
    #: which stays share a training step: "fixed", the stays sorted by length and cut into batches once, the same
    #: batches every epoch in a new order; "shuffled", drawn afresh every epoch: the stays shuffled, cut into pools
    #: of ``BATCH_POOL`` batches, each pool sorted by length and cut into batches (as many steps as "fixed")
    batching: Batching = "fixed"
    #: the networks' per-hour output head, written into their ``SequenceConfig.head`` (which rebuilds them):
    #: "linear", one layer on the representation; "mlp", a hidden layer of 2 x d_model (GELU) first
    head: Head = "linear"

    def training_labels(self, labels: np.ndarray) -> np.ndarray:
        """(hours,) 0/1 training targets of a stay with hourly ``labels`` (see ``target``)."""
        if self.target == "label" or not labels.any():
            return labels
        from models.metrics import _hourly_utilities

        _, _, best, _ = _hourly_utilities([labels])
        return (labels.astype(bool) | best).astype(labels.dtype)  # (hours,)

    def auxiliary_targets(self, labels: np.ndarray) -> np.ndarray:
        """(hours,) hourly SepsisLabel -> (hours, AUXILIARY_OUTPUTS) 0/1 targets of the auxiliary head: onset
        within 12 h, within 24 h (SepsisLabel is onset within 6 h), and whether the stay becomes septic."""
        hours = len(labels)
        out = np.zeros((hours, len(HORIZONS) + 1), dtype=np.float32)
        if labels.any():
            first = int(np.argmax(labels))  # the first hour of SepsisLabel = t_sepsis - 6 h
            for j, horizon in enumerate(HORIZONS):
                out[max(0, first - (horizon - LABEL_HORIZON)) :, j] = 1.0
            out[:, -1] = 1.0
        return out

    def teacher_rows(self, labels: list[np.ndarray]) -> list[np.ndarray] | None:
        """Row weights of the tree teacher for stays with these hourly labels (None: every hour alike)."""
        return None if self.teacher_hours == "uniform" else [self.hour_weights(y) for y in labels]

    def load(self, data: Path, limit: int | None = None) -> list[Stay]:
        if self.name == "sepsis":
            from models.sepsis_io import load_labelled_dir

            return [
                Stay(r.name, r.values, r.labels.astype(np.int64))
                for r in load_labelled_dir(data, limit=limit)
                if r.labels is not None
            ]
        from models.mortality_features import load_mortality_stays

        return load_mortality_stays(data, limit=limit, columns=self.schema.columns)

    def default_data(self) -> Path:
        from models.config import data_paths

        return data_paths().sepsis_training if self.name == "sepsis" else data_paths().mortality

    def hour_weights(self, labels: np.ndarray) -> np.ndarray:
        """(hours,) weights of each hour's loss: sepsis every hour alike; mortality half on the last hour (the
        stay's prediction) and half spread over the hours before it."""
        hours = len(labels)
        if self.name == "sepsis" and self.weighting == "utility" and labels.any():
            from models.metrics import _hourly_utilities

            u1, u0, _, _ = _hourly_utilities([labels])
            return (1.0 + np.abs(u1 - u0)).astype(np.float32)  # (hours,)
        if self.name == "sepsis" or hours == 1:
            return np.ones(hours, dtype=np.float32)
        w = np.full(hours, 0.5 / (hours - 1), dtype=np.float32)
        w[-1] = 0.5
        return w * hours  # mean weight 1 per hour, like sepsis

    def stay_scores(self, probs: list[np.ndarray]) -> np.ndarray:
        """Mortality: the last hour's risk of every stay."""
        return np.array([p[-1] for p in probs], dtype=np.float64)

    def choose_threshold(self, labels: list[np.ndarray], probs: list[np.ndarray]) -> tuple[float, float]:
        """(threshold, its primary figure) chosen on these predictions."""
        if self.name == "sepsis":
            from models.metrics import best_utility_threshold

            return best_utility_threshold(labels, probs)
        y = np.array([stay_outcome(y) for y in labels])
        return best_event1_threshold(y, self.stay_scores(probs))

    def figures(self, labels: list[np.ndarray], probs: list[np.ndarray], threshold: float) -> dict[str, float]:
        """The task's headline figures at ``threshold`` (AUROC threshold-free)."""
        from sklearn.metrics import roc_auc_score

        if self.name == "sepsis":
            from models.metrics import normalized_utility

            y = np.concatenate(labels)
            return {
                "auroc": float(roc_auc_score(y, np.concatenate(probs))),
                "utility": normalized_utility(labels, [p >= threshold for p in probs]),
            }
        outcome = np.array([stay_outcome(y) for y in labels])
        score = self.stay_scores(probs)
        return {
            "auroc": float(roc_auc_score(outcome, score)),
            "event1": event1(outcome, (score >= threshold).astype(np.int64)),
        }


SEPSIS_TASK = SequenceTask(
    name="sepsis",
    schema=SEPSIS_V1,
    labels=("NO_ALERT", "SEPSIS_ALERT"),
    description="hourly sepsis risk (PhysioNet 2019 SepsisLabel: sepsis within the next 6 hours or ongoing)",
    threshold_rule="maximises the challenge's normalised utility on the out-of-fold predictions",
    primary="utility",
    weighting="utility",  # adopted by the protocol's rule on 2026-12-05 (docs/sepsis-protocol.md)
)


def _mortality_task() -> SequenceTask:
    from models.mortality_features import MORTALITY_V1

    return SequenceTask(
        name="mortality",
        schema=MORTALITY_V1,
        labels=("SURVIVED", "DIED_IN_HOSPITAL"),
        description="in-hospital death from the first 48 ICU hours (PhysioNet 2012 In-hospital_death)",
        threshold_rule="maximises the challenge's event-1 score min(Se, +P) on the out-of-fold predictions",
        primary="event1",
        teacher="hourly+stay",  # adopted by the protocol's rule 23 on 2026-12-05 (docs/sepsis-protocol.md)
    )


_TASKS: dict[str, Callable[[], SequenceTask]] = {
    "sepsis": lambda: SEPSIS_TASK,
    "mortality": _mortality_task,
}


#: the recipe settings that are one of a few names, open to every task: what each is, and its choices
_CHOICES: dict[str, tuple[str, object]] = {
    "teacher_hours": ("teacher row weights", TeacherHours),
    "weight_average": ("weight averaging", WeightAverage),
    "batching": ("batching", Batching),
    "head": ("output head", Head),
}


def sequence_task(
    task: str,
    schema: str | None = None,
    weighting: str | None = None,
    target: str | None = None,
    teacher_hours: str | None = None,
    teacher_groups: int | None = None,
    auxiliary: str | None = None,
    teacher: str | None = None,
    thinned_copies: int | None = None,
    weight_average: str | None = None,
    teacher_temperature: float | None = None,
    batching: str | None = None,
    head: str | None = None,
) -> SequenceTask:
    """The task of a catalogue task name, with another feature schema, hour weighting, target, teacher row
    weights, teacher cross-fitting groups, auxiliary head, tree teacher, number of thinned copies, weight averaging,
    teacher temperature, batching or output head when given."""
    base = _TASKS[task]()
    changes: dict[str, object] = {}
    if schema is not None and schema != base.schema.name:
        from models.sequence import known_schemas

        schemas = {k: v for k, v in known_schemas().items() if k.startswith(f"{task}-")}
        if schema not in schemas:
            raise ValueError(f"feature schema {schema!r} is not one of {task}'s: choose one of {', '.join(schemas)}")
        changes["schema"] = schemas[schema]
    if weighting is not None and weighting != base.weighting:
        if weighting == "utility" and task != "sepsis":
            raise ValueError(f"hour weighting {weighting!r} is not defined for {task}")
        changes["weighting"] = weighting
    if target is not None and target != base.target:
        if target not in get_args(Target) or task != "sepsis":
            raise ValueError(f"training target {target!r} is not defined for {task}")
        changes["target"] = target
    if teacher_groups is not None and teacher_groups != base.teacher_groups:
        if teacher_groups < 2:
            raise ValueError(f"teacher groups {teacher_groups}: the teacher needs at least 2 groups to cross-fit")
        changes["teacher_groups"] = teacher_groups
    if auxiliary is not None and auxiliary != base.auxiliary:
        if auxiliary not in get_args(Auxiliary) or task != "sepsis":
            raise ValueError(f"auxiliary head {auxiliary!r} is not defined for {task}")
        changes["auxiliary"] = auxiliary
    if teacher is not None and teacher != base.teacher:
        if teacher not in get_args(TeacherKind) or task != "mortality":
            raise ValueError(f"tree teacher {teacher!r} is not defined for {task}")
        changes["teacher"] = teacher
    if thinned_copies is not None and thinned_copies != base.thinned_copies:
        if thinned_copies < 0:
            raise ValueError(f"thinned copies {thinned_copies}: give 0 (none) or more copies of each training stay")
        changes["thinned_copies"] = thinned_copies
    if teacher_temperature is not None and teacher_temperature != base.teacher_temperature:
        if not 1 <= teacher_temperature < float("inf"):
            raise ValueError(f"teacher temperature {teacher_temperature}: give a finite number of at least 1")
        changes["teacher_temperature"] = float(teacher_temperature)
    chosen = {"teacher_hours": teacher_hours, "weight_average": weight_average, "batching": batching, "head": head}
    for key, value in chosen.items():
        if value is not None and value != getattr(base, key):
            what, choices = _CHOICES[key]
            if value not in get_args(choices):
                raise ValueError(f"{what} {value!r}: choose {' or '.join(get_args(choices))}")
            changes[key] = value
    return SequenceTask(**{**base.__dict__, **changes}) if changes else base
