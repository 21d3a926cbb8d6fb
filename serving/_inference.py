"""The model side of a replica: decode raw uploads, batch them through the predictor, answer per item.

One template (:class:`Runner`) does what every model does the same way: decode each upload inside the
batch and take its model input and what its answer needs of it there and then, one upload at a time (a
failure in any of these is that item's :class:`ItemError`, never a failed batch, and no decoded upload is
kept whole until the batch is answered), one forward pass over the good ones, each item alone if that pass
fails, each answer made on its own (a failure is that item's error), a separate explainer copy for
explanations, and a health count of failed batches. :class:`ImageRunner`, :class:`SeriesRunner` and
:class:`EventsRunner` only say how an input of their kind becomes a model input, what its answer keeps of
it, and how a result becomes a response.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from models.catalogue import ModelEntry, models_for
from models.cnn import resize_gray
from models.errors import MedLensInputError, PayloadTooLargeError, SeriesFormatError, WeightsError
from models.inference import MortalityPredictor, Predictor, SepsisPredictor, XrayPredictor, resolve_device
from models.input_glossary import InputGlossary
from models.mortality_io import GENDERS, HOURS, ICU_TYPES
from models.mortality_io import GLOSSARY as MORTALITY_GLOSSARY
from models.sepsis_io import FEATURES, VITALS, SepsisRecord
from models.sepsis_io import GLOSSARY as SEPSIS_GLOSSARY
from models.synthetic_mark import SyntheticMark
from models.trust import SepsisAssessment, XrayAssessment
from models.xray_io import XrayImage
from serving._protocol import ItemError, Upload, input_error, model_failure, undecodable
from serving.images import encode_gray_png
from serving.schemas import (
    MORTALITY_LABELS,
    FeatureContribution,
    HeadlineMetrics,
    HourRisk,
    ModelInfo,
    ModelMetrics,
    MortalityHour,
    MortalityPrediction,
    SepsisPrediction,
    XrayPrediction,
)

logger = logging.getLogger("ray.serve")

TOP_FEATURES = 5
#: Longer side of ``preview_png``.
#: After this many consecutive batches that failed inside the model, check_health reports the replica
#: unhealthy and Ray Serve replaces it.
MAX_CONSECUTIVE_FAILURES = 3
_ICULOS = FEATURES.index("ICULOS")

ItemT = TypeVar("ItemT")
KeptT = TypeVar("KeptT")
ResponseT = TypeVar("ResponseT")


def replica_device(gpu_ids: Sequence[object]) -> torch.device:
    """CUDA only when Ray gave this replica a GPU (``ray_actor_options.num_gpus`` > 0), else CPU."""
    return resolve_device("auto" if len(gpu_ids) > 0 else "cpu")


def device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda:N`` (an index even when torch was given plain ``cuda``)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}"
    return device.type


def configure_torch(threads: int) -> None:
    """Deliberate thread counts: replicas share the machine's cores with each other."""
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already ran here
        torch.set_num_interop_threads(1)


class Runner(Generic[ItemT, KeptT, ResponseT]):
    """``predictor`` serves batched predictions; ``explainer``, a second copy of the same checkpoint,
    serves explanations (they hook the model and take seconds), so a replica can run both at once and
    a batch of predictions never waits behind an explanation. ``ItemT``: a decoded upload; ``KeptT``: what
    an answer reads of it (:meth:`_kept`); ``ResponseT``: the answer."""

    #: what the input is, in error messages ("image", "time series")
    what = "input"
    #: the predictor takes ``explain_max_hours`` (records of any length, explained in a time that grows with it)
    takes_explain_max_hours = False

    def __init__(
        self, entry: ModelEntry, weights: Path, device: torch.device, backend: str = "auto", **options: Any
    ) -> None:
        self.entry = entry
        self._weights, self._device, self._options = weights, device, options
        # predictions on the execution path chosen for this machine; explanations (loaded when first asked
        # for) need torch's gradients
        self.predictor: Predictor = entry.load(weights, str(device), backend=backend, **options)
        self._explainer: Predictor | None = None
        self.consecutive_failures = 0
        try:
            self._predict(self.predictor, [self._warm_up_input()])  # compiles kernels, proves the checkpoint runs
        except Exception as exc:
            raise WeightsError(
                f"The {entry.name} checkpoint in {self.predictor.weights_dir} does not run with the current model "
                f"code ({type(exc).__name__}: {exc}); retrain it with `python -m models.train {entry.name}`."
            ) from exc

    @property
    def explainer(self) -> Predictor:
        """A second copy of the checkpoint on torch fp32, made on the first explanation."""
        if self._explainer is None:
            self._explainer = self.entry.load(self._weights, str(self._device), backend="torch-fp32", **self._options)
        return self._explainer

    # -- what a kind of input says ---------------------------------------------------------------------
    def _warm_up_input(self) -> Any:
        raise NotImplementedError

    def _model_input(self, item: ItemT) -> Any:
        raise NotImplementedError

    def _kept(self, item: ItemT, include: frozenset[str]) -> KeptT:
        """What :meth:`_respond` reads of a decoded item, taken together with its model input: the batch keeps
        this and the model input, not the decoded item, until it is answered."""
        raise NotImplementedError

    def _explain(self, explain_input: Any, hour: int | None = None) -> np.ndarray:
        """The explainer's attributions of one input (what :meth:`_respond` reads as ``explanation``); ``hour``:
        of that hour alone (hourly series only: :meth:`hour_problem` refuses it elsewhere)."""
        attribution: np.ndarray = self.explainer.explain(explain_input)
        return attribution

    def hour_problem(self, item: ItemT, hour: int) -> str | None:
        """Why ``hour`` cannot be explained alone for ``item`` (None when it can)."""
        return f"explain_hour applies to hourly series; a {self.what} is explained whole: leave it out."

    def _explain_input(self, item: ItemT) -> Any:
        """What the explainer reads (the model input unless a kind says otherwise)."""
        return self._model_input(item)

    def _predict(self, predictor: Predictor, inputs: list[Any]) -> list[Any]:
        """One batched forward pass: one output per input."""
        return list(predictor.predict(inputs))

    def _respond(self, kept: KeptT, output: Any, explanation: np.ndarray | None, include: frozenset[str]) -> ResponseT:
        raise NotImplementedError

    # -- the template ----------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self.consecutive_failures < MAX_CONSECUTIVE_FAILURES

    def _input_error(self, exc: MedLensInputError, upload: Upload) -> ItemError:
        """The answer to an upload the predictor refused (a kind may add what to do)."""
        return input_error(exc)

    def decode(self, upload: Upload, explain: bool = False) -> ItemT | ItemError:
        try:
            item: ItemT = self.predictor.decode(upload.data, upload.filename)
        except MedLensInputError as exc:
            return self._input_error(exc, upload)
        except Exception as exc:
            return undecodable(exc, self.what)
        problem = self.predictor.size_problem(item, explain)
        return input_error(PayloadTooLargeError(problem)) if problem else item

    def predict_batch(self, uploads: Sequence[Upload]) -> list[ResponseT | ItemError]:
        """One answer per upload, in order: each upload prepared alone (:meth:`_prepare`), one forward pass over
        the prepared ones, then each answer made alone (:meth:`_answer`)."""
        answers: dict[int, ResponseT | ItemError] = {}
        prepared: list[tuple[int, KeptT]] = []
        inputs: list[Any] = []
        for i, upload in enumerate(uploads):
            ready = self._prepare(upload)
            if isinstance(ready, ItemError):
                answers[i] = ready
            else:
                inputs.append(ready[0])
                prepared.append((i, ready[1]))
        outputs = self._forward(inputs) if inputs else []
        inputs.clear()
        for (i, kept), output in zip(prepared, outputs, strict=True):
            include = uploads[i].include
            answers[i] = output if isinstance(output, ItemError) else self._answer(kept, output, None, include)
        return [answers[i] for i in range(len(uploads))]

    def _prepare(self, upload: Upload) -> tuple[Any, KeptT] | ItemError:
        """An upload decoded, then its model input and what its answer keeps of it; the decoded item itself is
        dropped when this returns, before the next upload is decoded. An undecodable upload is its own input
        error; a failure after decoding, its own ``model_error``."""
        item = self.decode(upload)
        if isinstance(item, ItemError):
            return item
        try:
            return self._model_input(item), self._kept(item, upload.include)
        except Exception as exc:
            return model_failure(exc, self.entry.name)

    def _answer(
        self, kept: KeptT, output: Any, explanation: np.ndarray | None, include: frozenset[str]
    ) -> ResponseT | ItemError:
        """:meth:`_respond`, or this item's ``model_error`` when it fails (the other items still get theirs)."""
        try:
            return self._respond(kept, output, explanation, include)
        except Exception as exc:
            return model_failure(exc, self.entry.name)

    def explain_one(self, upload: Upload) -> ResponseT | ItemError:
        """The answer the upload gets without explain, with the explainer's attributions beside it."""
        explained = self.explanation_of(upload)
        if isinstance(explained, ItemError):
            return explained
        return self.respond_explained(upload, *explained)

    def explanation_of(self, upload: Upload) -> tuple[ItemT, np.ndarray] | ItemError:
        """Decode within the explanation's size limits, then attribute on the explainer (the fp32 copy)."""
        hour = upload.explain_hour
        item = self.decode(upload, explain=hour is None)  # one hour's explanation fits any record the model reads
        if isinstance(item, ItemError):
            return item
        if hour is not None and (problem := self.hour_problem(item, hour)):
            return input_error(SeriesFormatError(problem))
        try:
            explanation = self._explain(self._explain_input(item), hour)
        except Exception as exc:
            self._record(False)
            return model_failure(exc, self.entry.name)
        return item, explanation

    def respond_explained(self, upload: Upload, item: ItemT, explanation: np.ndarray) -> ResponseT | ItemError:
        """The predictor's own output for an explained item, so the risk and label a reader sees do not
        change with the explain toggle (the explainer may run another precision than the predictor)."""
        try:
            model_input, kept = self._model_input(item), self._kept(item, upload.include)
        except Exception as exc:
            return model_failure(exc, self.entry.name)
        (output,) = self._forward([model_input])
        if isinstance(output, ItemError):
            return output
        return self._answer(kept, output, explanation, upload.include)

    def _forward(self, inputs: list[Any]) -> list[Any | ItemError]:
        """One batched pass; if it fails, each input alone, so one bad item cannot fail the others."""
        try:
            outputs = self._predict(self.predictor, inputs)
            self._record(True)
            return outputs
        except Exception as batch_exc:
            if len(inputs) == 1:
                self._record(False)
                return [model_failure(batch_exc, self.entry.name)]
        out: list[Any | ItemError] = []
        for model_input in inputs:
            try:
                out.append(self._predict(self.predictor, [model_input])[0])
            except Exception as exc:
                out.append(model_failure(exc, self.entry.name))
        self._record(any(not isinstance(o, ItemError) for o in out))
        return out

    def _record(self, ok: bool) -> None:
        self.consecutive_failures = 0 if ok else self.consecutive_failures + 1

    def info(self) -> ModelInfo:
        p, e = self.predictor, self.entry
        return ModelInfo.of(
            e,
            version=p.meta.version,
            task=p.meta.task if p.card is None else p.card.task,  # the card's words, as for a model at zero
            device=device_name(p.device),
            backend=p.execution.backend,
            precision=p.execution.precision,
            items_per_s={str(k): round(v, 1) for k, v in p.execution.items_per_s.items()},
            threshold=p.meta.threshold,
            labels=list(p.meta.labels),
            headline=None if p.card is None else HeadlineMetrics.from_card(p.card),
        )

    def metrics(self) -> ModelMetrics | None:
        card = self.predictor.card
        return None if card is None else ModelMetrics.from_card(card)


# ----------------------------------------------------------------------------------------------------------
# images (chest X-ray CNN)
# ----------------------------------------------------------------------------------------------------------
def _checked_mark(mark: str | None) -> str | None:
    """The synthetic mark as MedLens writes it, else None (the chunk came with an upload: never echoed as is)."""
    parsed = None if mark is None else SyntheticMark.parse(mark)
    return None if parsed is None else parsed.text()


def _coverage(p: Predictor) -> float | None:
    """1 - alpha of the predictor's conformal sets (its own alpha, else the checkpoint's)."""
    if not isinstance(p, XrayPredictor) or p.trust is None:
        return None
    return round(1.0 - (p.alpha if p.alpha is not None else p.trust.alpha), 6)


@dataclass(frozen=True, slots=True)
class Radiograph:
    """What an X-ray answer reads of its decoded image besides the model's output: all but its pixels."""

    size: tuple[int, int]  # (height, width) of the upload (XrayImage.size), not of the kept pixels
    source_format: str
    dicom_fields: dict[str, str]
    synthetic_mark: str | None
    preview_png: str | None  # the image as the model read it, XrayImage.pixels (asked for: "preview")


class ImageRunner(Runner[XrayImage, Radiograph, XrayPrediction]):
    what = "image"

    def _warm_up_input(self) -> np.ndarray:
        return np.zeros((64, 64), dtype=np.float32)

    def _model_input(self, item: XrayImage) -> XrayImage:
        """The image at the network's input side, with the DICOM header evidence the OOD check reads: the
        predictor's own resize (models/cnn.py ``resize_gray``, which gives an image already at that side back
        unchanged), done here so that a batch holds the network's small images until its forward pass."""
        predictor = self.predictor
        assert isinstance(predictor, XrayPredictor)
        return replace(item, pixels=resize_gray(item.pixels, predictor.config.image_size))

    def _kept(self, item: XrayImage, include: frozenset[str]) -> Radiograph:
        # the decoded pixels are kept at most models.xray_io.KEPT_SIDE a side: the preview as it is
        preview = encode_gray_png(item.pixels) if "preview" in include else None
        return Radiograph(item.size, item.source_format, dict(item.dicom_fields), item.synthetic_mark, preview)

    def _explain_input(self, item: XrayImage) -> np.ndarray:
        return item.pixels

    def _predict(self, predictor: Predictor, inputs: list[Any]) -> list[Any]:
        """Assessments (calibrated probability, prediction set, OOD evidence) from a calibrated checkpoint;
        bare probabilities from one that is not (``python -m models.calibrate cnn`` makes it one)."""
        assert isinstance(predictor, XrayPredictor)
        if predictor.trust is None:
            return list(predictor.predict([x.pixels if isinstance(x, XrayImage) else x for x in inputs]))
        return list(predictor.assess(inputs))

    def _respond(
        self, item: Radiograph, output: Any, explanation: np.ndarray | None, include: frozenset[str]
    ) -> XrayPrediction:
        p = self.predictor
        assessment = output if isinstance(output, XrayAssessment) else None
        prob = min(1.0, max(0.0, float(assessment.probability if assessment else output)))
        height, width = item.size
        return XrayPrediction(
            model=self.entry.name,
            version=p.meta.version,
            probability=prob,
            label="PNEUMONIA" if prob >= p.threshold else "NORMAL",
            threshold=p.threshold,
            image_width=width,
            image_height=height,
            source_format=item.source_format,
            calibrated_probability=assessment.calibrated_probability if assessment else None,
            prediction_set=assessment.prediction_set if assessment else None,
            set_coverage=_coverage(p) if assessment else None,
            in_distribution=assessment.in_distribution if assessment else None,
            ood_score=assessment.ood_score if assessment else None,
            ood_reason=assessment.ood_reason if assessment else None,
            member_probabilities=list(assessment.member_probabilities)
            if assessment and len(assessment.member_probabilities) > 1
            else None,
            ensemble_std=assessment.spread if assessment and len(assessment.member_probabilities) > 1 else None,
            heatmap_png=None if explanation is None else encode_gray_png(explanation),
            preview_png=item.preview_png,
            dicom=dict(item.dicom_fields) if item.source_format == "dicom" else None,
            synthetic=item.synthetic_mark is not None,
            synthetic_mark=_checked_mark(item.synthetic_mark),
        )


# ----------------------------------------------------------------------------------------------------------
# hourly series (sepsis LSTM and Transformer)
# ----------------------------------------------------------------------------------------------------------
class SeriesRunner(Runner[SepsisRecord, SepsisRecord, SepsisPrediction]):
    what = "time series"
    takes_explain_max_hours = True

    def _warm_up_input(self) -> np.ndarray:
        values = np.full((3, len(FEATURES)), np.nan, dtype=np.float32)  # (hours, 40)
        values[:, _ICULOS] = [1, 2, 3]
        return values

    def _model_input(self, item: SepsisRecord) -> np.ndarray:
        return item.values  # (hours, 40)

    def _kept(self, item: SepsisRecord, include: frozenset[str]) -> SepsisRecord:
        return item  # its values are the model input: keeping the record costs nothing more

    def hour_problem(self, item: SepsisRecord, hour: int) -> str | None:
        if 0 <= hour < item.hours:
            return None
        return (
            f"explain_hour {hour} is not a row of the record: it has {item.hours} hourly rows (0 to {item.hours - 1})."
        )

    def _explain(self, explain_input: Any, hour: int | None = None) -> np.ndarray:
        """(hours, len(schema.explained_columns)) attributions of every hour, or of ``hour`` alone (NaN in the other
        rows: no attributions)."""
        explainer = self.explainer
        assert isinstance(explainer, SepsisPredictor)
        if hour is None:
            return explainer.explain(explain_input)
        out = np.full((explain_input.shape[0], len(explainer.schema.explained_columns)), np.nan, dtype=np.float32)
        # the hour's risk reads the rows up to it alone (the models are causal): integrated gradients of one hour
        out[hour] = explainer.explain(explain_input[: hour + 1], first_hour=hour)[hour]
        return out

    def _predict(self, predictor: Predictor, inputs: list[Any]) -> list[Any]:
        """Assessments: hourly risk, calibrated risk (calibrated checkpoints) and the fold members' spread."""
        assert isinstance(predictor, SepsisPredictor)
        return list(predictor.assess(inputs))

    def _respond(
        self, item: SepsisRecord, output: Any, explanation: np.ndarray | None, include: frozenset[str]
    ) -> SepsisPrediction:
        """``output``: a :class:`SepsisAssessment` of (hours,) arrays; ``explanation``: (hours,
        len(schema.explained_columns)) or None: the 40 columns, then a schema's derived ratios."""
        p = self.predictor
        assert isinstance(p, SepsisPredictor) and isinstance(output, SepsisAssessment)
        risk = np.asarray(output.probability)
        threshold = p.threshold
        # the last value seen by each hour of what the explanation names: (hours, len(schema.explained_columns))
        last_seen = p.explained_values(item.values) if explanation is not None else None
        hours: list[HourRisk] = []
        for t in range(item.hours):
            iculos = float(item.values[t, _ICULOS])
            top = None
            if explanation is not None and last_seen is not None and np.isfinite(explanation[t]).all():
                # a NaN row: that hour was not explained
                top = top_features(explanation[t], last_seen[t], names=p.schema.explained_columns)
            prob = float(risk[t])
            hours.append(
                HourRisk(
                    hour=t,
                    iculos=iculos if np.isfinite(iculos) else None,
                    probability=prob,
                    label=int(prob >= threshold),
                    calibrated_probability=_at(output.calibrated_probability, t),
                    ensemble_std=_at(output.member_std, t),
                    member_min=_at(output.member_min, t),
                    member_max=_at(output.member_max, t),
                    top_features=top,
                )
            )
        alerts = np.flatnonzero(risk >= threshold)
        vitals = None
        labels = None
        if "vitals" in include:
            vitals = {name: _nullable(item.values[:, FEATURES.index(name)]) for name in VITALS}
            labels = None if item.labels is None else [int(v) for v in item.labels]
        return SepsisPrediction(
            model=self.entry.name,
            version=self.predictor.meta.version,
            threshold=threshold,
            n_hours=item.hours,
            first_alert_hour=int(alerts[0]) if alerts.size else None,
            ensemble_members=output.members,
            hours=hours,
            warnings=list(item.warnings),
            vitals=vitals,
            sepsis_label=labels,
        )


def _at(values: np.ndarray | None, t: int) -> float | None:
    """Hour ``t`` of an optional (hours,) array, within [0, 1]."""
    return None if values is None else min(1.0, max(0.0, float(values[t])))


def _nullable(column: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in column]


def top_features(
    attribution: np.ndarray,
    last_values: np.ndarray,
    k: int = TOP_FEATURES,
    names: Sequence[str] = FEATURES,
    glossary: InputGlossary = SEPSIS_GLOSSARY,
) -> list[FeatureContribution]:
    """``attribution``, ``last_values``: one value per column of ``names`` (the sepsis record's 40 by default)
    for one hour -> the k columns with the largest |attribution|, each in words by ``glossary``."""
    order = np.argsort(-np.abs(attribution), kind="stable")[:k]
    return [
        contribution(
            names[j],
            float(attribution[j]),
            float(last_values[j]) if np.isfinite(last_values[j]) else None,
            glossary,
        )
        for j in order
    ]


def contribution(column: str, attribution: float, value: float | None, glossary: InputGlossary) -> FeatureContribution:
    """One column's attribution and last value (None: not measured), with both in ``glossary``'s words."""
    return FeatureContribution(
        feature=column,
        attribution=attribution,
        value=value,
        name=glossary.name(column),
        unit=glossary.unit(column),
        value_text=glossary.value_text(column, value),
    )


# ----------------------------------------------------------------------------------------------------------
# ICU records of events (in-hospital mortality LSTM and Transformer, PhysioNet 2012)
# ----------------------------------------------------------------------------------------------------------
#: First bytes of a PhysioNet 2019 hourly record (pipe-separated, one column per variable): sent to a mortality
#: route, it is refused with a pointer to the sepsis routes.
_SEPSIS_HEADER_HINTS = (b"|", b"ICULOS")


class EventsRunner(Runner[Any, Any, MortalityPrediction]):
    """A stay's first 48 hours as ``Time,Parameter,Value`` rows -> the risk after every hour; the stay's prediction
    is the last hour's. The record's identifier (``RecordID``) is read by the loader and never leaves it here."""

    what = "ICU record"

    def __init__(
        self, entry: ModelEntry, weights: Path, device: torch.device, backend: str = "auto", **options: Any
    ) -> None:
        super().__init__(entry, weights, device, backend, **options)
        labels = tuple(self.predictor.meta.labels)
        if labels != MORTALITY_LABELS:
            raise WeightsError(
                f"The {entry.name} checkpoint in {self.predictor.weights_dir} has labels {list(labels)}; serving "
                f"answers {list(MORTALITY_LABELS)} (survived first): retrain it with `python -m models.train "
                f"{entry.name}`."
            )

    @property
    def mortality(self) -> MortalityPredictor:
        assert isinstance(self.predictor, MortalityPredictor)
        return self.predictor

    def _warm_up_input(self) -> np.ndarray:
        values = np.full((HOURS, len(self.mortality.schema.columns)), np.nan, dtype=np.float32)
        values[:, self.mortality.schema.columns.index("Hour")] = np.arange(1, HOURS + 1)
        return values

    def _model_input(self, item: Any) -> np.ndarray:
        return self.mortality.model_values(item)  # (48, len(schema.columns))

    def _kept(self, item: Any, include: frozenset[str]) -> Any:
        return item  # a record of at most 48 hours of events, small

    def _explain(self, explain_input: Any, hour: int | None = None) -> np.ndarray:
        """(len(schema.columns),): the 48th hour's attributions only (one hour of integrated gradients, not 48)."""
        explainer = self.explainer
        assert isinstance(explainer, MortalityPredictor)
        return explainer.explain_stay(explain_input)

    def _predict(self, predictor: Predictor, inputs: list[Any]) -> list[Any]:
        assert isinstance(predictor, MortalityPredictor)
        return list(predictor.assess(inputs))

    def _input_error(self, exc: MedLensInputError, upload: Upload) -> ItemError:
        error = input_error(exc)
        head = upload.data[:4096]
        if isinstance(exc, SeriesFormatError) and all(hint in head for hint in _SEPSIS_HEADER_HINTS):
            routes = " or ".join(e.predict_route for e in models_for("series"))
            return ItemError(
                error.status,
                error.error,
                f"{error.detail} This looks like a PhysioNet 2019 hourly record (pipe-separated, with ICULOS): "
                f"sepsis models read those, at {routes}.",
            )
        return error

    def _respond(
        self, item: Any, output: Any, explanation: np.ndarray | None, include: frozenset[str]
    ) -> MortalityPrediction:
        """``output``: a :class:`SepsisAssessment` of (48,) arrays; ``explanation``: the 48th hour's,
        (len(schema.explained_columns),)."""
        assert isinstance(output, SepsisAssessment)
        p = self.mortality
        risk = np.asarray(output.probability, dtype=np.float64)
        last = len(risk) - 1
        probability = min(1.0, max(0.0, float(risk[last])))
        hours = [
            MortalityHour(
                hour=t + 1,
                probability=min(1.0, max(0.0, float(risk[t]))),
                # the calibration is fitted on the stays' 48th hour: read earlier, it ran about a fifth too high
                calibrated_probability=_at(output.calibrated_probability, t) if t == last else None,
                ensemble_std=_at(output.member_std, t),
                member_min=_at(output.member_min, t),
                member_max=_at(output.member_max, t),
            )
            for t in range(len(risk))
        ]
        top = None
        if explanation is not None:  # a derived ratio (PaO2/FiO2 ...) is named as itself, with its own value
            values = p.explained_values(self._model_input(item))[last]
            top = top_features(explanation, values, names=p.schema.explained_columns, glossary=MORTALITY_GLOSSARY)
        static = item.static
        age, gender, icu = static.get("Age", math.nan), static.get("Gender", math.nan), _icu_type(static)
        return MortalityPrediction(
            model=self.entry.name,
            version=p.meta.version,
            threshold=p.threshold,
            probability=probability,
            label=MORTALITY_LABELS[1] if probability >= p.threshold else MORTALITY_LABELS[0],
            calibrated_probability=_at(output.calibrated_probability, last),
            ensemble_members=output.members,
            ensemble_std=_at(output.member_std, last),
            member_min=_at(output.member_min, last),
            member_max=_at(output.member_max, last),
            hours=hours,
            hours_observed=item.hours_observed,
            top_features=top,
            age=age if math.isfinite(age) else None,
            gender=GENDERS.get(int(gender)) if math.isfinite(gender) else None,
            icu_type=icu,
            warnings=list(item.warnings),
        )


def _icu_type(static: dict[str, float]) -> str | None:
    """The ICU type of a record's one-hot ``ICUType1..4`` descriptors; None when unknown."""
    for code, name in ICU_TYPES.items():
        if static.get(f"ICUType{code}") == 1.0:
            return name
    return None


RUNNERS: dict[str, type[Runner[Any, Any, Any]]] = {"image": ImageRunner, "series": SeriesRunner, "events": EventsRunner}
