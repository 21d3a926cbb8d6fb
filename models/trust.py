"""What a checkpoint carries to say when not to trust it, and what each prediction says.

CNN: :class:`TrustSettings` is stored in ``model.pt`` (``CheckpointMeta.trust``; the Mahalanobis head's
tensors under ``ood_head.`` in the state dict) by ``python -m models.calibrate cnn``; :class:`XrayAssessment`
is one prediction of :meth:`models.inference.XrayPredictor.assess`.

Sepsis (LSTM, Transformer): :class:`SepsisTrustSettings` (the hourly calibrator) is stored in the same place
by ``python -m models.calibrate lstm|transformer``; :class:`SepsisAssessment` is one record's hourly risk,
calibrated risk and fold-ensemble spread from :meth:`models.inference.SepsisPredictor.assess`.
docs/trust.md has the methods and figures.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.calibration import Calibrator, conformal_quantile, prediction_sets, set_labels
from models.ood import OodMethod

#: A conformal quantile of ``+inf`` (too few calibration items for 1 - alpha) is stored as this.
ALWAYS = 1e30


class TrustSettings(BaseModel):
    """Everything a predictor needs besides the weights: OOD score and threshold, calibrator, conformal
    calibration scores. Stored in the checkpoint (``CheckpointMeta.trust``)."""

    model_config = ConfigDict(extra="forbid")

    ood_method: OodMethod
    ood_threshold: float = Field(description="in distribution: ood_score <= ood_threshold")
    ood_pass_rate: float = Field(description="share of validation radiographs the threshold lets pass (its design)")
    calibration: Calibrator
    alpha: float = Field(0.1, gt=0, lt=1, description="conformal miscoverage: sets cover with >= 1 - alpha")
    #: sorted nonconformity scores of the calibration (validation) items, per class: NORMAL (``z``) and
    #: PNEUMONIA (``-z``), so any alpha can be served
    conformal_scores: tuple[list[float], list[float]]
    empty_set: Literal["both labels"] = "both labels"
    fitted: str = Field(description="when and by which command")

    @model_validator(mode="after")
    def _scores_sorted(self) -> TrustSettings:
        for scores in self.conformal_scores:
            if any(b < a for a, b in itertools.pairwise(scores)):
                raise ValueError("conformal_scores must be sorted")
        return self

    def quantiles(self, alpha: float | None = None) -> tuple[float, float]:
        """(q_NORMAL, q_PNEUMONIA) at ``alpha`` (the stored default if None)."""
        a = self.alpha if alpha is None else alpha
        q0, q1 = (min(conformal_quantile(np.asarray(s), a), ALWAYS) for s in self.conformal_scores)
        return q0, q1

    def sets(self, logits: np.ndarray, labels: list[str], alpha: float | None = None) -> list[list[str]]:
        return set_labels(prediction_sets(logits, self.quantiles(alpha)), labels)


@dataclass(frozen=True)
class XrayAssessment:
    """One radiograph's prediction with what says whether to trust it.

    ``label`` is the raw model label at the operating threshold, always present: when ``in_distribution``
    is False a consumer must withhold it (:attr:`reportable_label`) and show ``ood_reason``."""

    probability: float  # model probability of pneumonia (uncalibrated, as before)
    label: str  # "NORMAL" | "PNEUMONIA" at the operating threshold
    calibrated_probability: float  # probability of pneumonia after calibration on validation patients
    prediction_set: list[str]  # conformal set: ["NORMAL"], ["PNEUMONIA"] or ["NORMAL", "PNEUMONIA"]
    in_distribution: bool  # False: not like the training radiographs (image score or DICOM header)
    ood_score: float  # higher = farther from the training radiographs; compare with ood_threshold
    ood_reason: str | None  # why it is out of distribution (None when in distribution)
    #: each ensemble member's probability of pneumonia (one entry for a single CNN)
    member_probabilities: tuple[float, ...] = ()

    @property
    def spread(self) -> float:
        """Standard deviation of the members' probabilities (0 for a single CNN): how much they disagree."""
        return float(np.std(self.member_probabilities)) if len(self.member_probabilities) > 1 else 0.0

    @property
    def uncertain(self) -> bool:
        """The conformal set holds both labels: needs a reader."""
        return len(self.prediction_set) != 1

    @property
    def reportable_label(self) -> str | None:
        """The label a consumer may show: None when the input is out of distribution."""
        return self.label if self.in_distribution else None


#: What every sepsis calibration says about itself (model card, docs/trust.md).
SEPSIS_CALIBRATION_CAVEAT = (
    "The calibrator is fitted on single-member out-of-fold scores (each stay scored by the one fold member "
    "that never saw it) and applied to the mean logit of all members. Averaging logits pulls them towards the "
    "members' consensus, and every member saw 4 of the 5 folds, so on new stays the calibrated risk is close "
    "to, not exactly, what the cross-fitted figures show."
)


class SepsisTrustSettings(BaseModel):
    """The hourly calibrator of a sepsis checkpoint (``CheckpointMeta.trust``), written by
    ``python -m models.calibrate lstm|transformer``. The alert label stays on the raw risk at the
    checkpoint's threshold: calibration never changes a label."""

    model_config = ConfigDict(extra="forbid")

    calibration: Calibrator
    fitted: str = Field(description="when and by which command")
    fitted_on: str = Field(description="what the calibrator was fitted on, and the caveat of applying it")


@dataclass(frozen=True)
class SepsisAssessment:
    """One record's hourly risk with its calibrated value and the fold members' spread, each (hours,)."""

    probability: np.ndarray  # sigmoid of the members' mean logit: the served risk (labels use it)
    calibrated_probability: np.ndarray | None  # None: the checkpoint was not calibrated
    member_std: np.ndarray | None  # std of the members' probabilities; None for a single network
    member_min: np.ndarray | None  # lowest member probability (<= probability)
    member_max: np.ndarray | None  # highest member probability (>= probability)
    members: int  # networks averaged (1: no spread)


__all__ = [
    "ALWAYS",
    "SEPSIS_CALIBRATION_CAVEAT",
    "SepsisAssessment",
    "SepsisTrustSettings",
    "TrustSettings",
    "XrayAssessment",
]
