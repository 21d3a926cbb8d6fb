"""The HTTP contract of MedLens serving (pydantic). Serving returns these; the client parses them."""

from __future__ import annotations

import contextlib
import hashlib
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from models import mortality_io, sepsis_io
from models.catalogue import InputKind, ModelEntry, ModelName
from models.errors import MedLensInputError
from models.metrics import BinaryEvaluation
from models.protocol_summary import ProtocolSummary
from models.trust_report import EnsembleReport, SepsisTrustReport, TrustReport

if TYPE_CHECKING:  # models.cards pulls in torch; the dashboard imports these schemas without it
    from models.cards import ModelCard


#: The kinds of uploaded case: a radiograph, a sepsis stay (hourly record), a 2012 ICU stay (mortality).
CaseKind = Literal["xray", "sepsis", "mortality"]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ErrorResponse(_Schema):
    """Body of every 4xx/5xx answer."""

    error: str = Field(description="machine-readable kind, e.g. invalid_image, queue_full")
    detail: str = Field(description="what is wrong and what to do, for a person")


class Health(_Schema):
    status: Literal["ok"]
    models: list[ModelName]


class CardSummary(BaseModel):
    """What serving answers from a model card (``card.json`` beside the checkpoint), read without torch: the
    ingress describes a model scaled to zero from it, without starting a replica."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    name: ModelName
    version: str
    task: str
    created: str
    labels: list[str] | None = None  # absent on cards written before they carried the checkpoint's labels
    threshold: float
    evaluation_dataset: str
    evaluation: BinaryEvaluation
    trust: TrustReport | SepsisTrustReport | None = None
    ensemble: EnsembleReport | None = None
    protocol: ProtocolSummary | None = None

    @classmethod
    def read(cls, directory: Path) -> CardSummary | None:
        """The card in checkpoint directory ``directory``; None when it has none (or one that does not parse)."""
        try:
            return cls.model_validate_json((directory / "card.json").read_bytes())
        except (OSError, ValueError):
            return None


class HeadlineMetrics(_Schema):
    dataset: str
    auroc: float
    auprc: float
    sensitivity: float
    specificity: float
    utility: float | None = None

    @classmethod
    def from_card(cls, card: ModelCard | CardSummary) -> HeadlineMetrics:
        ev = card.evaluation
        return cls(
            dataset=card.evaluation_dataset,
            auroc=ev.auroc,
            auprc=ev.auprc,
            sensitivity=ev.sensitivity,
            specificity=ev.specificity,
            utility=ev.utility,
        )


class ModelInfo(_Schema):
    name: ModelName
    title: str = Field(description="what a reader sees: task, then architecture (e.g. `Sepsis early warning · LSTM`)")
    task_name: str = Field(description="the task: pneumonia, sepsis, mortality")
    input_kind: InputKind = Field(
        description="image (PNG, JPEG, DICOM), series (hourly PSV / CSV) or events (PhysioNet 2012 "
        "Time,Parameter,Value records)"
    )
    predict_route: str = Field(description="POST a file here for a prediction")
    colour: str = Field(description="display colour of this model (hex)")
    version: str
    task: str = Field(
        description="what the model predicts, in its model card's words (the checkpoint's own without a card); "
        "the same whether a replica answers or the model is scaled to zero"
    )
    device: str | None = Field(
        description="where this model's replicas run: cpu or cuda:N (null: scaled to zero, and no replica has run "
        "since serving started)"
    )
    backend: str | None = Field(
        description="execution path of predictions: torch-fp32, torch-bf16 or onnxruntime (null: as `device`)"
    )
    precision: str | None = Field(description="fp32 or bf16 (null: as `device`)")
    items_per_s: dict[str, float] = Field(
        description="predictions per second measured at each batch size when the path was chosen (empty when "
        "the backend was set explicitly, or no replica has run yet)"
    )
    threshold: float
    labels: list[str]
    headline: HeadlineMetrics | None
    scaled_to_zero: bool = Field(
        default=False,
        description="true: the model's deployment scales to zero when idle and has no replica now; the next "
        "prediction starts one (a few seconds). `device`, `backend`, `precision` and `items_per_s` are then its "
        "last replica's (null / empty when none has run since serving started); the rest is its model card's",
    )

    @classmethod
    def of(cls, entry: ModelEntry, **fields: Any) -> ModelInfo:
        """The catalogue's part of a model's info (name, title, task, route, colour), with ``fields``, the
        checkpoint's and the replica's part."""
        return cls(
            name=entry.name,
            title=entry.title,
            task_name=entry.task.name,
            input_kind=entry.task.input_kind,
            predict_route=entry.predict_route,
            colour=entry.colour,
            **fields,
        )


class ModelList(_Schema):
    models: list[ModelInfo]
    case_models: dict[CaseKind, ModelName] = Field(
        description="the model that scores each kind of uploaded case (`POST /v1/cases`): a review agrees or "
        "disagrees with that model's label"
    )


class ModelMetrics(_Schema):
    """The model card's evaluation: scalars plus ROC / PR / calibration points and the confusion matrix."""

    name: ModelName
    version: str
    dataset: str = Field(description="data set and split behind every figure")
    created: str = Field(description="when the evaluation was computed")
    threshold: float
    evaluation: BinaryEvaluation
    trust: TrustReport | SepsisTrustReport | None = Field(
        default=None,
        description="models that say when not to trust them. X-ray CNN: out-of-distribution scores compared, "
        "calibration before and after (ECE, Brier, reliability diagrams), conformal coverage per class "
        "(cross-fitted on the validation patients). Sepsis models: the hourly calibration before and after on "
        "the out-of-fold predictions (cross-fitted by stay) and the fold-ensemble spread",
    )
    ensemble: EnsembleReport | None = Field(
        default=None,
        description="a deep ensemble's study: every ensemble size on the validation patients (mean and standard "
        "deviation over subsets of the trained members), the adoption rule and the size served",
    )
    protocol: ProtocolSummary | None = Field(
        default=None,
        description="sequence models: the evaluation protocol's figures on held-out stays (docs/sepsis-protocol.md), "
        "each repeated split's and their mean and standard deviation, with the reserve's, scored once: the figures "
        "to believe, where `evaluation` is out-of-fold on stays that also chose the threshold",
    )

    @classmethod
    def from_card(cls, card: ModelCard | CardSummary) -> ModelMetrics:
        return cls(
            name=card.name,
            version=card.version,
            dataset=card.evaluation_dataset,
            created=card.created,
            threshold=card.threshold,
            evaluation=card.evaluation,
            trust=card.trust,
            ensemble=card.ensemble,
            protocol=card.protocol,
        )


class IdentityView(_Schema):
    """One row of the trail of who saw a DICOM file's patient identifiers (never the identifiers themselves)."""

    id: int
    image_id: str = Field(description="SHA-256 of the file's bytes (the case id of a case made of it)")
    reader: str = Field(description="the reader who asked, as they named themselves")
    viewed_at: str = Field(description="UTC, ISO 8601")


class IdentityViews(_Schema):
    """The trail of identity views (``GET /v1/dicom/identity/views``), newest first."""

    views: list[IdentityView]


class DicomIdentity(_Schema):
    """Whom a DICOM file says it belongs to (``POST /v1/dicom/identity``): for the reader who asks, to check the
    image against the request. The identifiers are answered only, never stored or logged; the view is recorded."""

    fields: dict[str, str] = Field(
        description="those of PatientName, PatientID, PatientBirthDate, PatientSex, AccessionNumber, StudyDate, "
        "StudyDescription and InstitutionName that the header holds (a name's components spaced, dates YYYY-MM-DD); "
        "empty when it holds none"
    )
    view: IdentityView = Field(description="this view, as the trail records it")


class XrayPrediction(_Schema):
    model: ModelName
    version: str
    probability: float = Field(
        ge=0.0,
        le=1.0,
        description="the model's pneumonia score, compared with `threshold` for `label`; training balanced the "
        "classes, so it is not the probability of pneumonia: that is `calibrated_probability`",
    )
    label: Literal["PNEUMONIA", "NORMAL"]
    threshold: float
    image_width: int
    image_height: int
    source_format: str
    calibrated_probability: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="probability of pneumonia calibrated on the validation patients (null: uncalibrated checkpoint)",
    )
    prediction_set: list[Literal["NORMAL", "PNEUMONIA"]] | None = Field(
        default=None,
        description="conformal prediction set at the checkpoint's alpha: one label, or both (uncertain: needs a "
        "reader). Covers the truth with probability >= 1 - alpha on data like the calibration data; no "
        "guarantee under shift",
    )
    set_coverage: float | None = Field(
        default=None, description="1 - alpha: the coverage the prediction set is built for (e.g. 0.9)"
    )
    in_distribution: bool | None = Field(
        default=None,
        description="false: the input is unlike the training radiographs (image features or DICOM header); its "
        "label must not be relied on",
    )
    ood_score: float | None = Field(
        default=None, description="distance from the training radiographs (higher: farther)"
    )
    ood_reason: str | None = Field(default=None, description="why the input is out of distribution")
    member_probabilities: list[float] | None = Field(
        default=None,
        description="a deep ensemble's members' probabilities of pneumonia (`probability` is from their mean "
        "logit); null for a single network or an uncalibrated checkpoint",
    )
    ensemble_std: float | None = Field(
        default=None,
        ge=0.0,
        description="standard deviation of `member_probabilities`: how much the ensemble's members disagree",
    )
    heatmap_png: str | None = Field(
        default=None,
        description="Grad-CAM as base64 PNG (8-bit gray), the size of the image as the model read it: the input "
        "image's, area-reduced to at most 1024 px on its longer side (the preview's size); scale it to overlay a "
        "larger original",
    )
    preview_png: str | None = Field(
        default=None,
        description="with `preview=true`: the image as the model read it (windowed, MONOCHROME1 inverted), "
        "base64 8-bit gray PNG, longer side at most 1024 px",
    )
    dicom: dict[str, str] | None = Field(
        default=None,
        description="de-identified DICOM header fields (modality, view, the study's year, spacing, "
        "`BurnedInAnnotation`; never a name, an ID or a date)",
    )
    synthetic: bool = Field(
        default=False,
        description="true: the PNG carries MedLens's `MedLens-Synthetic` text chunk: a generated image, never a "
        "real patient (POST /v1/synthetic/xray makes them); never counted in a metric of real data",
    )
    synthetic_mark: str | None = Field(
        default=None,
        description="what that chunk says, `<generator version>; seed=<seed>; label=<label>`, when MedLens wrote "
        "it; null for a real image or a chunk in another form",
    )

    @property
    def burned_in(self) -> bool:
        """Text that may identify the patient may be burned into the pixels: a case keeps no copy of them. Fails
        closed: any ``BurnedInAnnotation`` but NO counts (YES, a lower-case "yes" the header cannot hold legibly, a
        multi-valued or malformed one); a DICOM without the field, or an image that is no DICOM, does not."""
        said = (self.dicom or {}).get("BurnedInAnnotation")
        return said is not None and said.strip().upper() != "NO"


class FeatureContribution(_Schema):
    feature: str = Field(description="the model's input column (the source's parameter name, or the model's own)")
    attribution: float = Field(description="integrated-gradients contribution to this hour's risk logit")
    value: float | None = Field(description="the feature's last observed value at that hour, if any")
    name: str = Field(description="the input as a reader says it, e.g. `Weight at admission` for `Weight0`")
    unit: str | None = Field(description="the unit of `value` (the source's), null for a code or a pure number")
    value_text: str = Field(
        description="`value` as shown to a reader: with its unit (`58 mg/dL`), a code in words (`female`, `yes`), "
        "or `not measured`"
    )


class HourRisk(_Schema):
    hour: int = Field(description="row index, 0-based")
    iculos: float | None
    probability: float = Field(
        ge=0.0,
        le=1.0,
        description="the hour's sepsis score: the sigmoid of the fold members' mean logit (decides `label`); "
        "training weighs septic hours 4 times, so it runs above the risk: that is `calibrated_probability`",
    )
    label: int = Field(description="1 = alert at the model's threshold (on `probability`, never the calibrated risk)")
    calibrated_probability: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="the risk calibrated on the out-of-fold hours of the training stays (null: uncalibrated "
        "checkpoint); for reading as a frequency, not for the alert",
    )
    ensemble_std: float | None = Field(
        default=None,
        ge=0.0,
        description="standard deviation of the fold members' probabilities this hour (null: a single network)",
    )
    member_min: float | None = Field(
        default=None, ge=0.0, le=1.0, description="lowest fold member's probability this hour (<= `probability`)"
    )
    member_max: float | None = Field(
        default=None, ge=0.0, le=1.0, description="highest fold member's probability this hour (>= `probability`)"
    )
    top_features: list[FeatureContribution] | None = None


class SepsisPrediction(_Schema):
    model: ModelName
    version: str
    threshold: float
    n_hours: int
    first_alert_hour: int | None = Field(description="first row index whose risk crosses the threshold")
    ensemble_members: int | None = Field(
        default=None, description="fold networks averaged into each hour's risk (their spread is per hour)"
    )
    hours: list[HourRisk]
    warnings: list[str] = Field(default_factory=list, description="input problems that were tolerated")
    vitals: dict[str, list[float | None]] | None = Field(
        default=None,
        description="with `vitals=true`: each vital sign's hourly values as the model read them (null = not "
        "measured that hour), one per row",
    )
    sepsis_label: list[int] | None = Field(
        default=None, description="with `vitals=true`, when the file carries SepsisLabel: its value per row"
    )

    @property
    def peak(self) -> HourRisk | None:
        """The highest-scoring hour (the first of equals), which a stay's case and summary stand for; None: no
        hour."""
        return max(self.hours, key=lambda h: h.probability, default=None)

    @property
    def stay_label(self) -> str:
        """The stay's label, as its case stores it: an alert at any hour, or none."""
        return "SEPSIS_ALERT" if self.first_alert_hour is not None else "NO_ALERT"


# -- ICU in-hospital mortality (PhysioNet 2012 records) ------------------------------------------------------
MortalityLabel = Literal["SURVIVED", "DIED_IN_HOSPITAL"]
#: The mortality models' labels, in the checkpoint's order (serving/_inference.py refuses a checkpoint with others).
MORTALITY_LABELS: tuple[str, ...] = get_args(MortalityLabel)


class MortalityHour(_Schema):
    """The score and risk after one more hour of the stay: the trajectory that ends in the stay's prediction."""

    hour: int = Field(ge=1, le=48, description="hours of the stay read: 1 (the first hour) to 48")
    probability: float = Field(
        ge=0.0,
        le=1.0,
        description="score for death in hospital from the first `hour` hours (the members' mean logit); not calibrated",
    )
    calibrated_probability: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="the 48th hour's risk: `probability` calibrated, as the answer's `calibrated_probability`; null "
        "before the 48th hour (the calibration is fitted on the stays' 48th hour, and applied to earlier hours it "
        "read about a fifth too high) and from an uncalibrated checkpoint",
    )
    ensemble_std: float | None = Field(
        default=None, ge=0.0, description="standard deviation of the fold members' risks (null: a single network)"
    )
    member_min: float | None = Field(default=None, ge=0.0, le=1.0, description="lowest fold member's risk")
    member_max: float | None = Field(default=None, ge=0.0, le=1.0, description="highest fold member's risk")


class MortalityPrediction(_Schema):
    """In-hospital mortality from the first 48 hours of one ICU stay (PhysioNet 2012). The stay's prediction is
    the risk after the 48th hour; `hours` is how it got there. Carries no record identifier."""

    model: ModelName
    version: str
    threshold: float
    probability: float = Field(
        ge=0.0,
        le=1.0,
        description="score for death in hospital after the 48th hour, compared with `threshold` for `label`; "
        "training weighs deaths 4 times, so it runs above the risk: that is `calibrated_probability`",
    )
    label: MortalityLabel = Field(description="DIED_IN_HOSPITAL when `probability` >= `threshold`, else SURVIVED")
    calibrated_probability: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="the risk of death in hospital: `probability` calibrated out of fold (null: uncalibrated "
        "checkpoint)",
    )
    ensemble_members: int | None = Field(
        default=None, description="fold networks averaged into each hour's risk (null: a single network)"
    )
    ensemble_std: float | None = Field(
        default=None, ge=0.0, description="standard deviation of the members' risks after the 48th hour"
    )
    member_min: float | None = Field(default=None, ge=0.0, le=1.0, description="lowest member's risk after hour 48")
    member_max: float | None = Field(default=None, ge=0.0, le=1.0, description="highest member's risk after hour 48")
    hours: list[MortalityHour] = Field(description="the risk after each hour, 1 to 48, with the members' band")
    hours_observed: int = Field(ge=0, le=48, description="hours with at least one measurement")
    top_features: list[FeatureContribution] | None = Field(
        default=None,
        description="with `explain=true`: the variables with the largest |integrated gradients| on the 48th hour's "
        "risk logit (summed over the 48 hours), each with its last observed value",
    )
    age: float | None = Field(default=None, description="years (90: 90 or older); null: unknown")
    gender: Literal["female", "male"] | None = Field(default=None, description="null: unknown")
    icu_type: str | None = Field(
        default=None, description="Coronary care, Cardiac surgery recovery, Medical or Surgical; null: unknown"
    )
    warnings: list[str] = Field(default_factory=list, description="input problems that were tolerated")


class DeploymentState(_Schema):
    name: str = Field(description="Ray Serve deployment name")
    model: ModelName | None = Field(description="the model it serves, None for the ingress")
    status: str = Field(description="Ray Serve status: HEALTHY, UPDATING, UPSCALING, DOWNSCALING, UNHEALTHY")
    replicas: int = Field(description="running replicas now")
    starting: int = Field(
        0, ge=0, description="replicas added (by autoscaling or a redeploy) that are still starting: not serving yet"
    )
    stopping: int = Field(
        0,
        ge=0,
        description="replicas being stopped (by autoscaling or a redeploy), not counted in `replicas`: each finishes "
        "the requests it holds and, behind Ray Serve's direct ingress, may still answer new ones while it drains "
        "(at least 30 s)",
    )
    device: str | None = None


class EndpointStats(_Schema):
    endpoint: str = Field(description="route template, e.g. POST /v1/xray/predict")
    requests: int = Field(description="requests finished inside the window")
    errors: int = Field(description="of which answered 5xx")
    rejected: int = Field(description="of which answered 4xx")
    rate_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class ReplicaSample(_Schema):
    t: float = Field(description="unix time of the sample")
    replicas: dict[str, int] = Field(description="running replicas per deployment name")


class ServiceStatus(_Schema):
    """What an operator checks during a load test (GET /v1/service)."""

    window_s: float = Field(description="request statistics cover this many recent seconds")
    deployments: list[DeploymentState]
    endpoints: list[EndpointStats]
    history: list[ReplicaSample] = Field(description="replica counts sampled every few seconds, oldest first")


# -- cases, the worklist and reviews (serving/store) ---------------------------------------------------------
CaseStatus = Literal["unreviewed", "reviewed", "disagreed"]
Verdict = Literal["agree", "disagree"]
#: The model labels that flag a case (a finding, an alert, a predicted death): the worklist puts them first.
POSITIVE_LABELS = ("PNEUMONIA", "SEPSIS_ALERT", "DIED_IN_HOSPITAL")
#: The model's labels as a reader's labels where they differ (the sepsis model says ALERT, a reader says SEPSIS).
MODEL_TO_READER = {"SEPSIS_ALERT": "SEPSIS", "NO_ALERT": "NO_SEPSIS"}
#: A reader's own label, per kind of case.
REVIEW_LABELS: dict[str, tuple[str, ...]] = {
    "xray": ("NORMAL", "PNEUMONIA"),
    "sepsis": ("NO_SEPSIS", "SEPSIS"),
    "mortality": MORTALITY_LABELS,
}
MAX_COMMENT_CHARS = 2000
MAX_REVIEWER_CHARS = 100


def _no_control_characters(allowed: str) -> AfterValidator:
    """Refuse control characters (Unicode category Cc) other than ``allowed``: a NUL cannot be stored in
    PostgreSQL's text, and the others have no place in a name or a note that an export and every screen show."""

    def check(text: str) -> str:
        for index, char in enumerate(text):
            if unicodedata.category(char) == "Cc" and char not in allowed:
                raise ValueError(
                    f"holds the control character U+{ord(char):04X} at position {index}: send plain text"
                    + (" (line breaks and tabs are kept)" if allowed else "")
                )
        return text

    return AfterValidator(check)


def error_words(error: Mapping[str, Any]) -> str:
    """One pydantic validation error's message for a person: a validator's own words, without the "Value error, "
    pydantic puts before them."""
    if error.get("type") == "extra_forbidden":
        return "is not one this request takes (check its spelling, or the API's documentation at /docs)"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


#: zero-width non-joiner and joiner: part of the spelling of names in several scripts
_JOINERS = frozenset("\u200c\u200d")


def name_spelling(name: str) -> str:
    """``name`` in NFC with its blanks collapsed and stripped: how a reader's name is stored and compared since API
    1.15, and how a name stored before is read where readers are counted."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def _one_spelling(name: str) -> str:
    """A reader's name in the one spelling that reviews store and filters compare: NFC (a composed "é", however it
    was typed), blanks collapsed to single spaces and stripped. Invisible format characters (Unicode category Cf:
    zero-width spaces, text-direction controls) are refused, not dropped: they may hide a different name. The
    zero-width non-joiner and joiner are kept: Persian, Indic and other scripts spell names with them. Case is kept:
    a name is shown as its reader wrote it."""
    for index, char in enumerate(name):
        if unicodedata.category(char) == "Cf" and char not in _JOINERS:
            raise ValueError(
                f"holds the invisible formatting character U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')}) "
                f"at position {index}, as text pasted from another program may: type the name without it"
            )
    spelled = name_spelling(name)
    if len(spelled) > MAX_REVIEWER_CHARS:  # NFC may lengthen a few characters
        raise ValueError(f"is longer than {MAX_REVIEWER_CHARS} characters: send a shorter name")
    return spelled


#: A reader's name as a review, a deletion or a worklist filter gives it, in its one spelling (:func:`_one_spelling`).
ReaderName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_REVIEWER_CHARS, pattern=r"\S"),
    _no_control_characters(""),
    AfterValidator(_one_spelling),
]
#: The start of a case id as a reader quotes it (the worklist shows 16 of its 64 hex digits), in either case.
CaseIdPrefix = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{4,64}$")]
#: An ``Idempotency-Key``: a token the client makes for one request and sends again with its retries.
RequestKey = Annotated[str, Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
#: A reader's free-text note: line breaks and tabs allowed, no other control character.
ReaderNote = Annotated[str, Field(max_length=MAX_COMMENT_CHARS), _no_control_characters("\n\r\t")]
#: A case's status by its latest review, or every case.
WorklistStatus = Literal["unreviewed", "reviewed", "disagreed", "all"]
#: the worklist's synthetic (generated) cases: listed with the others, left out, or listed alone
SyntheticFilter = Literal["include", "exclude", "only"]


class WorklistQuery(_Schema):
    """Which cases of the worklist, and which page of them: the query of ``GET /v1/worklist``, which the client
    sends, the route checks and the store runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: WorklistStatus = Field(
        "unreviewed", description="by the latest review: none, agree (reviewed) or disagree (disagreed), or all"
    )
    kind: CaseKind | None = Field(None, description="only cases of this kind (X-rays, sepsis or mortality records)")
    not_reviewed_by: ReaderName | None = Field(
        None,
        description="only cases this reader (a reviewer's name, as in reviews) has not reviewed yet: a second reading",
    )
    id_prefix: Annotated[CaseIdPrefix, AfterValidator(str.lower)] | None = Field(
        None,
        description="only cases whose id starts with these hex digits (4 to 64, either case; the worklist shows "
        "16), as a reader quotes a case",
    )
    synthetic: SyntheticFilter = Field(
        "include",
        description="synthetic cases (GAN-generated images, never a patient): include them with the others, exclude "
        "them, or list only them",
    )
    limit: int = Field(200, ge=1, le=5000, description="cases per page")
    offset: int = Field(0, ge=0, le=1_000_000_000, description="cases to skip, in the worklist's order")


class CaseSummary(_Schema):
    """One row of the worklist."""

    id: str = Field(description="SHA-256 of the uploaded file's bytes: the same file is the same case")
    kind: CaseKind
    model: ModelName
    model_version: str
    created_at: str = Field(description="when the case was created, UTC, ISO 8601")
    source_format: str
    risk: float = Field(
        description="the model's score (`probability` of its answer): the X-ray's pneumonia score, the stay's "
        "highest hourly sepsis score, the mortality score after 48 h; not calibrated"
    )
    calibrated_risk: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="the calibrated probability beside `risk`: the answer's `calibrated_probability` (a sepsis "
        "stay's at its highest-scoring hour); the risk to read. Null: an uncalibrated checkpoint",
    )
    threshold: float | None = Field(default=None, description="the model's threshold on `risk` for its label")
    threshold_margin: float | None = Field(
        default=None,
        description="log-odds of `risk` minus log-odds of the model's threshold (> 0: past it); unlike `risk`, "
        "comparable across kinds: the worklist orders by it",
    )
    label: str = Field(description="the model's label at its threshold")
    in_distribution: bool | None = Field(description="false: the input looks unlike the training data; null: unknown")
    uncertain: bool | None = Field(description="true: the model's prediction set holds both labels; null: unknown")
    synthetic: bool = Field(description="a generated image, never a real patient")
    status: CaseStatus = Field(
        description="from the latest review: unreviewed (none), reviewed (agree, or a reader's own label of a case "
        "whose label is withheld) or disagreed"
    )
    reviews: int = Field(description="reviews so far")
    last_verdict: Verdict | None

    @property
    def label_withheld(self) -> bool:
        return label_withheld(self.in_distribution)


def kept_record(kind: CaseKind, data: bytes) -> bytes:
    """An ICU file as its case keeps it, and as its id is computed: a 2012 record without the RecordID rows
    (:func:`models.mortality_io.deidentified`), either kind with an age over 89 written as its challenge's code for
    90 or older (:func:`models.sepsis_io.deidentified`). Raises ``MedLensInputError`` for a file that is no text
    or a table its loader would refuse for its size or shape (checked before it is parsed); an X-ray's bytes come
    back as they are (its case keeps no file)."""
    if kind == "mortality":
        return mortality_io.deidentified(data)
    if kind == "sepsis":
        return sepsis_io.deidentified(data)
    return data


def kept_and_id(kind: CaseKind, data: bytes) -> tuple[bytes, str]:
    """What the case a file makes keeps (:func:`kept_record`; a file its model cannot read, as it is: refused,
    never a case) and the case's id, its SHA-256, so that the id, which every reader and export sees, cannot give
    the RecordID or an exact age over 89 back by trying each candidate."""
    with contextlib.suppress(MedLensInputError):
        data = kept_record(kind, data)
    return data, hashlib.sha256(data).hexdigest()


def case_id_for(kind: CaseKind, data: bytes) -> str:
    """The id of the case a file makes (:func:`kept_and_id`)."""
    return kept_and_id(kind, data)[1]


def as_reader_label(model_label: str) -> str:
    """A model's label as a reader's label (:data:`MODEL_TO_READER`: the sepsis model says SEPSIS_ALERT, a reader
    SEPSIS)."""
    return MODEL_TO_READER.get(model_label, model_label)


def contradicted_verdict(review: ReviewIn, model_label: str) -> Verdict | None:
    """The verdict of ``review`` that its own label contradicts, about ``model_label`` (the case's label as its
    model says it): "agree" with a label other than the model's, "disagree" with the model's own; None when they
    agree, or either is missing. Serving refuses such a review; the dashboard stops it before it is sent."""
    if review.verdict is None or review.label is None:
        return None
    said = as_reader_label(model_label)
    if (review.verdict == "agree") != (review.label == said):
        return review.verdict
    return None


def label_withheld(in_distribution: bool | None) -> bool:
    """Readers are not shown the model's label (the input is out of distribution): it confirms nothing, is not
    compared with theirs, and a review gives the reader's own label instead of a verdict."""
    return in_distribution is False


class ReviewIn(_Schema):
    """A reader's review. The reader's name is what they gave, not an authenticated identity unless the
    dashboard's sign-in is configured."""

    reviewer: ReaderName
    verdict: Verdict | None = Field(
        default=None,
        description="agree or disagree with the model's label; required unless the label is withheld from readers "
        "(an out-of-distribution case, `in_distribution` false), where a review gives `label` instead",
    )
    label: str | None = Field(
        default=None, description="the reader's own label: NORMAL / PNEUMONIA (X-ray), NO_SEPSIS / SEPSIS (sepsis)"
    )
    comment: ReaderNote = ""


class Review(_Schema):
    """One row of the audit trail: a review, or (``action="delete"``) the tombstone of a deleted case."""

    id: int
    case_id: str
    action: Literal["review", "delete"]
    reviewer: str
    created_at: str
    verdict: Verdict | None
    label: str | None
    comment: str | None
    model: ModelName
    model_version: str = Field(description="the model version whose prediction the reader saw")


class CaseDetail(CaseSummary):
    prediction: XrayPrediction | SepsisPrediction | MortalityPrediction = Field(
        description="the stored prediction (X-ray: with `preview_png`, the image as the model read it)"
    )
    explainable: bool = Field(
        description="the case keeps what its model read (an X-ray's image, an ICU stay's record), so "
        "`GET /v1/cases/{id}/explanation` can explain it"
    )
    history: list[Review] = Field(description="every review of this case, oldest first")


class CaseExplanation(_Schema):
    """A stored case explained again by its model, from what the case keeps of its input."""

    case_id: str
    prediction: XrayPrediction | SepsisPrediction | MortalityPrediction = Field(
        description="the model's answer now for the case's stored input, with its attributions (X-ray: "
        "`heatmap_png`, at the stored image's size; ICU stays: `top_features`). Its `version` is the model's now, "
        "which may be newer than the case's"
    )


class RejectedFile(_Schema):
    """A file of a case upload that made no case (the others still did)."""

    file: str = Field(
        description="which file: its position in the upload (and in the zip), never its name: `file 2`, "
        "`file 1, member 4`"
    )
    status: int
    error: str
    detail: str = Field(description="what is wrong, beginning with `file` ('File 2: line 3: ...')")


class CaseUpload(_Schema):
    cases: list[CaseSummary]
    created: int = Field(description="cases that are new (the others existed: the same file was uploaded before)")
    rejected: list[RejectedFile] = Field(default_factory=list)


class Worklist(_Schema):
    cases: list[CaseSummary] = Field(
        description="out-of-distribution first, then uncertain, then the model's positive labels (PNEUMONIA, "
        "SEPSIS_ALERT, DIED_IN_HOSPITAL) before the others, then by `threshold_margin` (furthest past its own model's "
        "threshold first), then by risk, then oldest first"
    )
    total: int = Field(description="cases matching the filter (the page may hold fewer)")


class KappaSummary(_Schema):
    kappa: float | None = Field(
        description="Cohen's kappa (Scott's pi between readers); null when undefined (no pairs, or one label only)"
    )
    pairs: int = Field(description="pairs of reads compared")
    observed_agreement: float | None


class Agreement(_Schema):
    """Agreement on reviewed cases of one kind, from each reader's latest review of each case. A reader who
    disagrees without giving a label is read as choosing the other label (the tasks are binary). An
    out-of-distribution case, whose model label readers were not shown, counts only with a reader's own label and
    never against the model."""

    kind: CaseKind
    model: ModelName | None = Field(
        default=None, description="the model whose cases these are (null: every model's cases of the kind)"
    )
    labels: list[str] = Field(description="the two labels, in the order of the confusion matrix")
    cases: int = Field(description="cases with at least one counted read")
    readers: int = Field(description="readers with at least one counted read")
    model_vs_reader: KappaSummary
    confusion: list[list[int]] = Field(description="rows: the model's label; columns: the readers' labels")
    inter_reader: KappaSummary = Field(
        description="Scott's pi over every pair of readers of the same case, pooled (chance agreement from the "
        "pooled label frequencies: which reader of a pooled pair comes first means nothing)"
    )
