"""What ``python -m models.calibrate`` measured about trusting a model, as stored in its card
(``card.json``'s ``trust``). CNN (:class:`TrustReport`): the out-of-distribution scores compared,
calibration before and after, and conformal coverage. Sepsis (:class:`SepsisTrustReport`): the hourly
calibration before and after on the out-of-fold predictions. Plain pydantic (no torch): serving returns
it and the dashboard draws it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from models.metrics import CurvePoints


class OodRow(BaseModel):
    """One out-of-distribution score measured by ``python -m models.calibrate cnn``."""

    model_config = ConfigDict(extra="forbid")

    method: str
    threshold: float
    auroc_in_vs_out: float  # validation radiographs vs the non-chest-radiograph set, on pixels alone
    validation_pass: float  # share of validation radiographs in distribution (the design: >= pass rate)
    training_pass: float
    fullres_pass: float | None  # the 40 full-resolution originals of training-folder radiographs
    chest_dicom_pass: float  # pydicom-data's chest CR (RG1_*: an adult chest, another scanner)
    non_cxr_flag: float  # share of the non-chest-radiograph set flagged (pixels alone)
    dicom_flag: float
    generated_flag: float
    adopted: bool


class CalibrationRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str  # "uncalibrated" | "temperature" | "platt" | "isotonic"
    ece: float  # 10 equal-width bins, cross-fitted over validation folds (sepsis: over folds of stays)
    brier: float
    adopted: bool
    #: sequence models: the mean cross-fitted probability over the alerting predictions (raw risk at or above the
    #: operating threshold), to set beside :attr:`SepsisTrustReport.alert_observed` (None: not measured)
    alert_mean: float | None = None


class ConformalRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str
    n: int
    coverage: float  # cross-fitted over validation folds
    mean_set_size: float


class TrustReport(BaseModel):
    """What ``python -m models.calibrate cnn`` measured (docs/trust.md)."""

    model_config = ConfigDict(extra="forbid")

    measured: str  # date, UTC
    command: str
    machine: str
    folds: int
    non_cxr_set: str
    n_validation: int
    n_dicom: int
    n_generated: int
    ood_rule: str
    ood: list[OodRow]
    ood_pass_rate: float
    dicom_flag_with_header: float  # the adopted score or the DICOM header evidence
    calibration_rule: str
    calibration: list[CalibrationRow]
    temperature: float
    alpha: float
    conformal: list[ConformalRow]
    #: Reliability diagrams (10 equal-width bins) of cross-fitted probabilities per calibration method
    #: ("uncalibrated", "temperature", "isotonic"); thresholds hold the bin counts. Empty in older cards.
    reliability: dict[str, CurvePoints] = {}
    uncertain_rate: float  # share of validation sets with both labels (cross-fitted)
    empty_rate: float  # share that were empty before "empty = both labels"


class OutOfFoldCheck(BaseModel):
    """The out-of-fold predictions recomputed from the checkpoint against the figures of the training card."""

    model_config = ConfigDict(extra="forbid")

    n_stays: int
    n_hours: int
    auroc: float
    card_auroc: float
    utility: float | None  # sepsis: normalised challenge utility at the checkpoint's threshold
    card_utility: float | None
    brier: float
    card_brier: float


class SepsisTrustReport(BaseModel):
    """What ``python -m models.calibrate lstm|transformer`` measured (docs/trust.md)."""

    model_config = ConfigDict(extra="forbid")

    measured: str  # date, UTC
    command: str
    machine: str
    folds: int  # cross-fitting folds: the training run's stay folds
    out_of_fold: OutOfFoldCheck
    calibration_rule: str
    calibration: list[CalibrationRow]
    #: Reliability diagrams (10 equal-width bins) of the cross-fitted hourly probabilities per method
    #: ("uncalibrated", "temperature", "platt", "isotonic"); thresholds hold the bin counts.
    reliability: dict[str, CurvePoints]
    caveat: str  # fitted on single-member out-of-fold scores, applied to the members' mean
    threshold_note: str  # how the operating threshold relates to the calibrated risk
    #: fold-ensemble spread (std of the members' hourly probabilities) over every hour of every stay
    spread_mean: float
    spread_p90: float
    #: the alerting predictions (raw risk at or above the operating threshold): how many, of how many stays, and
    #: the fraction whose label is 1. The ECE is dominated by the many low-risk hours; this is where alerts are
    #: read (None: not measured)
    alert_hours: int | None = None
    alert_stays: int | None = None
    alert_observed: float | None = None


class EnsembleRow(BaseModel):
    """Ensembles of ``size`` members: each figure the mean (and standard deviation) over every subset of
    that many of the trained members, on the validation patients, each subset at its own threshold."""

    model_config = ConfigDict(extra="forbid")

    size: int
    subsets: int
    auroc: tuple[float, float]  # (mean, std) over subsets
    brier: tuple[float, float]  # raw probabilities (before calibration)
    ece: tuple[float, float]
    specificity: tuple[float, float]  # at the subset's own threshold (sensitivity rule)
    #: mean over the acquisition shifts (models/shifts.py) of |change of sensitivity| + |change of
    #: specificity| at the unshifted threshold: how far the operating point moves
    drift: tuple[float, float]
    worst_specificity: tuple[float, float]  # the lowest specificity under any shift
    adopted: bool


class EnsembleReport(BaseModel):
    """What ``python -m models.ensemble`` measured before choosing how many members to serve."""

    model_config = ConfigDict(extra="forbid")

    measured: str
    command: str
    machine: str
    members: list[str]  # each trained member: its training command and time
    n_validation: int
    rule: str
    rows: list[EnsembleRow]
    spread: float  # mean over validation radiographs of the adopted members' probability std


__all__ = [
    "CalibrationRow",
    "ConformalRow",
    "EnsembleReport",
    "EnsembleRow",
    "OodRow",
    "OutOfFoldCheck",
    "SepsisTrustReport",
    "TrustReport",
]
