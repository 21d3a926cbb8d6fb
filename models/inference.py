"""Load a checkpoint and predict / explain: the one entry point serving, the CLIs and the benchmarks use.

A predictor is built from its catalogue entry (``models.catalogue.entry(name).load(weights, device)``).
It holds a model on a device, reads the raw upload of its input kind (:meth:`Predictor.decode`),
takes plain numpy input and returns numpy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.backends import BackendError, Choice, ModelSpec, choose
from models.cards import ModelCard, read_card
from models.catalogue import BACKENDS, MODEL_NAMES, BackendName, ModelEntry
from models.catalogue import entry as catalogue_entry
from models.checkpoint import CARD_JSON, CHECKPOINT_FILE, CheckpointMeta, load_checkpoint
from models.cnn import CnnConfig, build_cnn, to_tensor
from models.errors import WeightsError
from models.ood import OodHead, TrustedCNN, header_reason
from models.sepsis_io import SepsisRecord, parse_series_bytes
from models.sequence import (
    PROB_EPS,
    MemberOutputs,
    NormStats,
    SequenceConfig,
    SequenceEnsemble,
    SequenceModel,
    baseline_features,
    build_sequence_model,
    engineer,
    forward_fill,
    pad_batch,
    schema_of,
    to_probability,
)
from models.trust import SepsisAssessment, SepsisTrustSettings, TrustSettings, XrayAssessment
from models.xray_io import XrayImage, load_xray_bytes

#: Fewest hourly rows a sepsis record needs: the first hour of a stay gets a risk (when an early warning
#: matters most); trends start from the second.
MIN_SERIES_HOURS = 1
#: the column that counts the hours of a stay, by schema kind (the probe records fill it)
_TIME_COLUMNS = ("ICULOS", "Hour")


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA when a GPU is visible to this process, else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(requested)


class Predictor:
    """What every predictor shares: its catalogue entry, checkpoint meta, card, device, and the execution
    path its predictions take (chosen on first use by :func:`models.backends.choose`; explanations always
    run the torch fp32 module)."""

    #: the batch sizes the execution path is measured at (what serving batches up to)
    batch_sizes: tuple[int, ...] = (1, 16)

    def __init__(self, entry: ModelEntry, weights: Path | None, device: str, backend: BackendName = "auto") -> None:
        self.entry = entry
        self.backend_requested: BackendName = backend
        self._execution: tuple[Choice, Any] | None = None
        self.weights_dir = Path(weights) if weights is not None else entry.default_weights
        meta, state = load_checkpoint(self.weights_dir, expected=entry.name)
        self.meta: CheckpointMeta = meta
        self._state = state
        self.device = resolve_device(device)
        self.card: ModelCard | None = read_card(self.weights_dir) if (self.weights_dir / CARD_JSON).is_file() else None

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    def spec(self) -> ModelSpec:
        """How the execution paths run this model: its fp32 module, inputs and probe batch."""
        raise NotImplementedError

    @property
    def execution(self) -> Choice:
        """The execution path of predictions: backend, precision, what was measured."""
        return self._choose()[0]

    def _run(self, *inputs: torch.Tensor) -> np.ndarray:
        """Logits of the model inputs on the chosen execution path."""
        run: Any = self._choose()[1]
        out: np.ndarray = run(*inputs)
        return out

    def _choose(self) -> tuple[Choice, Any]:
        if self._execution is None:
            self._execution = choose(self.spec(), self.backend_requested, self.device, torch.get_num_threads())
        return self._execution

    def decode(self, data: bytes, filename: str) -> Any:
        """Raw upload -> this model's input; a typed :class:`~models.errors.MedLensInputError` if unusable."""
        raise NotImplementedError

    def size_problem(self, item: Any, explain: bool) -> str | None:
        """Why a decoded input is too large for this model (None when it fits)."""
        return None

    def predict(self, items: list[Any]) -> Any:
        """A batch of model inputs -> one output per input (an array or a list)."""
        raise NotImplementedError

    def explain(self, item: Any) -> np.ndarray:
        raise NotImplementedError


class XrayPredictor(Predictor):
    """Chest X-ray CNN: probabilities of pneumonia, Grad-CAM heatmaps and, for a calibrated checkpoint
    (``python -m models.calibrate cnn``), :meth:`assess`: calibrated probability, conformal set and
    out-of-distribution evidence, all from one forward pass on the chosen execution path."""

    def __init__(
        self,
        weights: Path | None = None,
        device: str = "auto",
        backend: BackendName = "auto",
        entry: ModelEntry | None = None,
        alpha: float | None = None,
    ) -> None:
        super().__init__(entry or catalogue_entry("cnn"), weights, device, backend)
        self.config = CnnConfig.model_validate(self.meta.config)
        self.model = build_cnn(self.config)
        head_state = {k.removeprefix("ood_head."): v for k, v in self._state.items() if k.startswith("ood_head.")}
        self.model.load_state_dict({k: v for k, v in self._state.items() if not k.startswith("ood_head.")})
        self.model.eval().to(self.device)
        self.trust: TrustSettings | None = None
        self.alpha = alpha
        self._served: nn.Module = self.model
        if self.meta.trust is not None:
            self.trust = TrustSettings.model_validate(self.meta.trust)
            head = None
            if head_state:
                head = OodHead(*head_state["centres"].shape)
                head.load_state_dict(head_state)
            self._served = TrustedCNN(self.model, self.trust.ood_method, head).eval().to(self.device)
        if alpha is not None and not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), not {alpha}")

    def spec(self) -> ModelSpec:
        size = self.config.image_size

        def probe(batch: int) -> tuple[torch.Tensor, ...]:
            """Deterministic film-like images: smooth random fields of the model's input size, normalised."""
            gen = torch.Generator().manual_seed(1234)
            coarse = torch.rand(batch, 1, 12, 12, generator=gen)
            images = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
            return ((images - self.config.mean) / self.config.std,)  # (batch, 1, S, S)

        return ModelSpec(
            name=self.name,
            build=lambda: self._served,
            input_names=("x",),
            dynamic_axes={"x": {0: "batch"}},
            probe=probe,
            valid=lambda inputs: np.ones(inputs[0].shape[0], dtype=bool),
            threshold=self.threshold,
            batch_sizes=self.batch_sizes,
            image=True,
            checkpoint=self.weights_dir / CHECKPOINT_FILE,
            outputs=self._outputs(),
        )

    @property
    def n_members(self) -> int:
        """Networks in the checkpoint: 1, or K for a deep ensemble (the prediction is their mean logit)."""
        return self.config.members

    def _outputs(self) -> tuple[str, ...]:
        if self.trust is None:
            return ("logit",)
        members = tuple(f"member_{k}" for k in range(self.n_members)) if self.n_members > 1 else ()
        return ("logit", "ood_score", *members)

    def decode(self, data: bytes, filename: str) -> XrayImage:
        return load_xray_bytes(data, filename)

    def predict(self, images: list[np.ndarray]) -> np.ndarray:
        """List of (H, W) [0, 1] images -> (batch,) probability of pneumonia."""
        if not images:
            return np.empty(0, dtype=np.float32)
        return self.predict_tensor(to_tensor(images, self.config))

    def predict_tensor(self, x: torch.Tensor) -> np.ndarray:
        """Pre-processed (batch, 1, S, S) tensor -> (batch,) probabilities on the chosen execution path."""
        logits = self.spec().logits(self._run(x))  # (batch,)
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)

    def assess(self, images: list[XrayImage] | list[np.ndarray]) -> list[XrayAssessment]:
        """Decoded radiographs (or bare (H, W) [0, 1] pixel arrays: no header evidence then) -> one
        :class:`~models.trust.XrayAssessment` each, from one forward pass on the chosen execution path.

        Needs a calibrated checkpoint: :class:`~models.errors.WeightsError` says how to make one."""
        trust = self.trust
        if trust is None:
            raise WeightsError(
                f"{self.weights_dir} has no calibration, OOD threshold or conformal sets: run "
                f"`python -m models.calibrate cnn --weights {self.weights_dir}`."
            )
        if not images:
            return []
        pixels = [im.pixels if isinstance(im, XrayImage) else im for im in images]
        out = self._run(to_tensor(pixels, self.config))  # (batch, 2 [+ K]): logit, ood_score[, member logits]
        logits, scores = out[:, 0].astype(np.float64), out[:, 1].astype(np.float64)
        prob = 1.0 / (1.0 + np.exp(-logits))
        member_prob = 1.0 / (1.0 + np.exp(-out[:, 2:].astype(np.float64))) if self.n_members > 1 else prob[:, None]
        calibrated = trust.calibration(logits)
        sets = trust.sets(logits, list(self.meta.labels), self.alpha)
        results = []
        for i, image in enumerate(images):
            reasons = []
            header = header_reason(image.dicom_fields) if isinstance(image, XrayImage) else None
            if header:
                reasons.append(header)
            if not scores[i] <= trust.ood_threshold:  # NaN counts as out of distribution
                reasons.append(
                    f"the image is unlike the training radiographs (OOD score {scores[i]:.3g} > "
                    f"threshold {trust.ood_threshold:.3g}, {trust.ood_method})"
                )
            results.append(
                XrayAssessment(
                    probability=float(prob[i]),
                    label=self.meta.labels[int(prob[i] >= self.threshold)],
                    calibrated_probability=float(calibrated[i]),
                    prediction_set=sets[i],
                    in_distribution=not reasons,
                    ood_score=float(scores[i]),
                    ood_reason="; ".join(reasons) or None,
                    member_probabilities=tuple(float(v) for v in member_prob[i]),
                )
            )
        return results

    def explain(self, image: np.ndarray) -> np.ndarray:
        """Grad-CAM of the pneumonia logit at the last stage: (H, W) in [0, 1] aligned to ``image``, the regions
        that raised the score, scaled to this image's own maximum (all zero: no region raised it). For an
        ensemble, Grad-CAM of its mean logit: the members' maps before the ReLU, averaged as the logits are
        (each member's logit at its own last stage), then clamped at zero. Clamping each member first would show
        a member's evidence that the other's cancels in the mean logit."""
        x = to_tensor([image], self.config).to(self.device)  # (1, 1, S, S)
        from captum.attr import LayerGradCam  # imported on first use: replicas start faster without it

        maps = []
        for member in self.model.members:
            cam = LayerGradCam(member, member.target_layer)
            with torch.enable_grad():
                maps.append(cam.attribute(x, relu_attributions=False).detach().float())  # (1, 1, s, s), signed
        attribution = torch.stack(maps).mean(dim=0).clamp_min(0)  # (1, 1, s, s): the mean logit's map
        return normalised_heatmap(attribution, image.shape)


def normalised_heatmap(attribution: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A non-negative Grad-CAM map (1, 1, s, s) -> (H, W) = ``shape`` in [0, 1], bilinear, divided by its own
    maximum; all zero when the map is."""
    up = F.interpolate(attribution, size=shape, mode="bilinear", align_corners=False)  # (1, 1, H, W)
    heat: np.ndarray = up[0, 0].clamp_min(0).cpu().numpy()
    top = float(heat.max())
    return (heat / top).astype(np.float32) if top > 0 else heat.astype(np.float32)


class SepsisPredictor(Predictor):
    """LSTM or Transformer: hourly sepsis risk and per-hour feature attributions; :meth:`assess` adds each
    hour's calibrated risk (a checkpoint calibrated by ``python -m models.calibrate lstm|transformer``) and
    the fold members' spread, from the same forward pass on the chosen execution path."""

    def __init__(
        self,
        entry: ModelEntry | str,
        weights: Path | None = None,
        device: str = "auto",
        backend: BackendName = "auto",
        explain_max_hours: int = 400,
    ) -> None:
        super().__init__(catalogue_entry(entry) if isinstance(entry, str) else entry, weights, device, backend)
        self.explain_max_hours = explain_max_hours
        kind = self.entry.name
        self.config = SequenceConfig.model_validate(self.meta.config)
        try:
            self.schema = schema_of(self.meta.preprocessing)
        except ValueError as exc:
            raise WeightsError(f"{self.weights_dir}: {exc}; retrain it with `python -m models.train {kind}`.") from exc
        if self.config.n_input != self.schema.n_input:
            raise WeightsError(
                f"{self.weights_dir} was trained on {self.config.n_input} engineered features but this code "
                f"builds {self.schema.n_input} for {self.schema.name}: retrain it with `python -m models.train {kind}`."
            )
        self.stats = NormStats.model_validate(self.meta.preprocessing["norm_stats"])
        self.trust: SepsisTrustSettings | None = (
            None if self.meta.trust is None else SepsisTrustSettings.model_validate(self.meta.trust)
        )
        self._model: SequenceModel | None = None

    @property
    def model(self) -> SequenceModel:
        """The torch module, built when first needed (explanations, a torch execution path, the ONNX export):
        a replica whose predictions run on a cached ONNX Runtime path never builds it, nor imports
        ``transformers``."""
        if self._model is None:
            model = build_sequence_model(self.config)
            model.load_state_dict(self._state)
            self._model = model.eval().to(self.device)
        return self._model

    @property
    def members(self) -> int:
        """Networks averaged by the checkpoint (its fold members; 1: a single network, no spread)."""
        return max(1, self.config.members)

    def _served(self) -> nn.Module:
        """What the execution paths run: an ensemble returns its mean logit and every member's logit."""
        model = self.model
        return MemberOutputs(model).eval() if isinstance(model, SequenceEnsemble) else model

    @property
    def max_hours(self) -> int:
        return self.config.max_hours if self.config.arch == "transformer" else 100_000

    def decode(self, data: bytes, filename: str) -> SepsisRecord:
        return parse_series_bytes(data, filename, min_hours=MIN_SERIES_HOURS, on_impossible="reject")

    def size_problem(self, item: SepsisRecord, explain: bool) -> str | None:
        limit = min(self.max_hours, self.explain_max_hours) if explain else self.max_hours
        if item.hours <= limit:
            return None
        what = "explanations of every hour are" if explain else f"the {self.name} model is"
        hint = " Explain one hour at a time (explain_hour), ask without explain, or upload" if explain else " Upload"
        return (
            f"The record has {item.hours} hourly rows; {what} limited to {limit}.{hint} the most recent {limit} hours."
        )

    def spec(self) -> ModelSpec:
        def probe(batch: int) -> tuple[torch.Tensor, ...]:
            """Deterministic records of 48, 1, 72 and 24 hours in turn, every measurement drawn around its
            training mean with half of the cells missing, engineered as real records are."""
            rng = np.random.default_rng(1234)
            schema = self.schema
            keep = [schema.stats_columns.index(c) for c in schema.columns]  # raw columns (no derived ratios)
            mean, std = np.asarray(self.stats.mean)[keep], np.asarray(self.stats.std)[keep]
            time_column = next(schema.columns.index(c) for c in _TIME_COLUMNS if c in schema.columns)
            records = []
            for i in range(batch):
                hours = (48, 1, 72, 24)[i % 4]
                values = mean + 0.7 * std * rng.standard_normal((hours, len(schema.columns)))
                values[rng.random(values.shape) < 0.5] = np.nan
                values[:, time_column] = np.arange(1, hours + 1)
                records.append(engineer(values.astype(np.float32), self.stats, schema))
            return pad_batch(records)  # (batch, hours, F), (batch, hours)

        return ModelSpec(
            name=self.name,
            build=self._served,
            input_names=("x", "mask"),
            dynamic_axes={"x": {0: "batch", 1: "hours"}, "mask": {0: "batch", 1: "hours"}},
            probe=probe,
            valid=lambda inputs: inputs[1].numpy() > 0,
            threshold=self.threshold,
            batch_sizes=self.batch_sizes,
            image=False,
            checkpoint=self.weights_dir / CHECKPOINT_FILE,
            # (batch, hours, 1 + members) from an ensemble: the mean logit, then each member's
            outputs=("logit",) if self.members == 1 else ("logit", *(f"member_{k}" for k in range(self.members))),
        )

    def _outputs(self, records: list[np.ndarray]) -> np.ndarray:
        """Raw records -> the chosen path's output for one padded batch: (batch, hours) logits, or
        (batch, hours, 1 + members) from an ensemble."""
        features = [engineer(v, self.stats, self.schema) for v in records]
        x, mask = pad_batch(features)  # (batch, hours, F), (batch, hours)
        return self._run(x, mask)

    def predict(self, records: list[np.ndarray]) -> list[np.ndarray]:
        """List of (hours_i, len(schema.columns)) raw records -> list of (hours_i,) probabilities, one padded batch."""
        if not records:
            return []
        logits = self.spec().logits(self._outputs(records))  # (batch, hours)
        prob = to_probability(torch.from_numpy(np.ascontiguousarray(logits))).numpy()
        return [prob[i, : v.shape[0]].astype(np.float32) for i, v in enumerate(records)]

    def assess(self, records: list[np.ndarray]) -> list[SepsisAssessment]:
        """List of (hours_i, len(schema.columns)) raw records -> one :class:`~models.trust.SepsisAssessment`
        each: the hourly risk (as :meth:`predict`), its calibrated value (None from an uncalibrated checkpoint)
        and the fold members' spread (None from a single network), all from one forward pass on the chosen path."""
        if not records:
            return []
        out = self._outputs(records).astype(np.float64)  # (batch, hours) or (batch, hours, 1 + members)
        logits = out if self.members == 1 else out[..., 0]  # (batch, hours)
        prob = np.clip(1.0 / (1.0 + np.exp(-logits)), PROB_EPS, 1.0 - PROB_EPS)
        calibrated = None if self.trust is None else self.trust.calibration(logits.reshape(-1)).reshape(logits.shape)
        member_prob = None
        if self.members > 1:
            member_prob = np.clip(1.0 / (1.0 + np.exp(-out[..., 1:])), PROB_EPS, 1.0 - PROB_EPS)  # (b, h, members)
        results = []
        for i, v in enumerate(records):
            n = v.shape[0]
            members = None if member_prob is None else member_prob[i, :n]  # (hours, members)
            risk = prob[i, :n]
            results.append(
                SepsisAssessment(
                    probability=risk.astype(np.float32),
                    calibrated_probability=None if calibrated is None else calibrated[i, :n].astype(np.float32),
                    member_std=None if members is None else members.std(axis=1).astype(np.float32),
                    # the risk lies between the members (sigmoid of their mean logit); rounding of a bf16 or
                    # ONNX mean cannot put it outside the band
                    member_min=None if members is None else np.minimum(members.min(axis=1), risk).astype(np.float32),
                    member_max=None if members is None else np.maximum(members.max(axis=1), risk).astype(np.float32),
                    members=self.members,
                )
            )
        return results

    def explain(self, values: np.ndarray, n_steps: int = 8, chunk: int = 32, first_hour: int = 0) -> np.ndarray:
        """Integrated gradients of each hour's risk logit w.r.t. the record up to that hour, summed over time and
        over each variable's engineered channels -> (hours, len(schema.explained_columns)): the raw columns, with
        each derived ratio as a variable of its own after the measured ones (:meth:`explained_values` gives their
        values); only hours from ``first_hour`` on are computed (the rows before stay 0).

        Baseline: ``baseline_features``, a stay in which nothing was measured, with the static columns at their
        training mean (flags at their prevalence), at the same hour of the stay: the schema's ``clock`` is the
        record's own, so the clock gets no attribution, and neither does a variable the record never measured."""
        schema = self.schema
        engineered = engineer(values, self.stats, schema)  # (hours, F)
        features = torch.from_numpy(engineered).to(self.device)  # (hours, F)
        hours = features.shape[0]
        groups = torch.tensor(schema.feature_groups(), device=self.device)
        reference = torch.from_numpy(baseline_features(self.stats, values, schema)).to(self.device)  # (hours, F)
        out = torch.zeros(hours, len(schema.explained_columns))
        for start in range(first_hour, hours, chunk):
            hour_idx = torch.arange(start, min(start + chunk, hours), device=self.device)
            length = int(hour_idx[-1]) + 1
            inputs = features[:length].unsqueeze(0).repeat(len(hour_idx), 1, 1)  # (c, length, F)

            def forward(x: torch.Tensor, _idx: torch.Tensor = hour_idx) -> torch.Tensor:
                logits = self.model(x)  # (c * steps, length)
                rows = torch.arange(x.shape[0], device=x.device)
                return logits[rows, _idx[rows % len(_idx)]]

            from captum.attr import IntegratedGradients  # imported on first use, as in XrayPredictor

            ig = IntegratedGradients(forward)
            with torch.enable_grad():
                baseline = reference[:length].unsqueeze(0).expand_as(inputs)  # (c, length, F)
                attr = ig.attribute(inputs, baselines=baseline, n_steps=n_steps)
            per_channel = attr.detach().sum(dim=1)  # (c, F): summed over hours <= t
            per_feature = torch.zeros(len(hour_idx), len(schema.explained_columns), device=self.device)
            per_feature.index_add_(1, groups, per_channel.float())
            out[start : start + len(hour_idx)] = per_feature.cpu()
        return out.numpy()

    def explained_values(self, values: np.ndarray) -> np.ndarray:
        """(hours, len(schema.columns)) raw -> (hours, len(schema.explained_columns)): the last value seen by each
        hour of what :meth:`explain` attributes to (a ratio: of its operands' last values), NaN before any."""
        filled: np.ndarray = forward_fill(self.schema.augment(values))
        return filled


class MortalityPredictor(SepsisPredictor):
    """LSTM or Transformer on the first 48 ICU hours of a PhysioNet 2012 record: the risk of in-hospital death
    as the hours unfold (:meth:`predict`, :meth:`assess`, as the sepsis models), the stay's prediction being the
    last hour's (:meth:`assess_stays`)."""

    def decode(self, data: bytes, filename: str) -> Any:
        """A ``Time,Parameter,Value`` record -> :class:`~models.mortality_io.MortalityRecord` (impossible
        values refused, naming them)."""
        from models.mortality_io import parse_record_bytes

        return parse_record_bytes(data, filename, on_impossible="reject")

    def model_values(self, record: Any) -> np.ndarray:
        """A :class:`~models.mortality_io.MortalityRecord` -> (48, len(schema.columns)), what :meth:`predict` takes."""
        from models.mortality_features import model_values

        return model_values(record, self.schema.columns)

    def size_problem(self, item: Any, explain: bool) -> str | None:
        return None  # always 48 hourly rows

    def explain_stay(self, values: np.ndarray, n_steps: int = 8) -> np.ndarray:
        """(48, len(schema.columns)) record -> (len(schema.explained_columns),): integrated gradients of the 48th
        hour's risk logit (the stay's prediction), summed over the 48 hours. One hour's attributions, not 48."""
        row: np.ndarray = self.explain(values, n_steps=n_steps, first_hour=values.shape[0] - 1)[-1]
        return row

    def assess_stays(self, records: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(stays,) each record's last-hour risk and (stays,) its calibrated value (None from an uncalibrated
        checkpoint), from one forward pass (:meth:`assess`)."""
        assessments = self.assess(records)
        risk = np.array([float(a.probability[-1]) for a in assessments])
        if self.trust is None:
            return risk, None
        return risk, np.array([float(a.calibrated_probability[-1]) for a in assessments])  # type: ignore[index]


def add_predictor_arguments(parser: argparse.ArgumentParser) -> None:
    """``model``, ``--weights``, ``--threads``, ``--backend``, ``--device``: what every CLI that predicts takes.
    A thread count below 1 or a device this machine does not have is refused when the arguments are read."""
    from models.cli_args import device, positive_int

    parser.add_argument("model", choices=MODEL_NAMES)
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint directory (default: committed)")
    parser.add_argument("--threads", type=positive_int, default=max(1, torch.get_num_threads()), help="1 or more")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="execution path of predictions: auto (the fastest that agrees with torch fp32, measured here and "
        "cached), torch-fp32, torch-bf16 (emulated, with a warning, where bf16 is not native) or onnxruntime",
    )
    parser.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda or cuda:N (a GPU it sees)")


def cli_predictor(parser: argparse.ArgumentParser, args: argparse.Namespace) -> XrayPredictor | SepsisPredictor:
    """The predictor the arguments of :func:`add_predictor_arguments` ask for, its execution path said on
    stderr; a backend this machine cannot run is a usage error."""
    torch.set_num_threads(args.threads)
    try:
        predictor = load_predictor(args.model, args.weights, args.device, args.backend)
        execution = predictor.execution
    except (BackendError, WeightsError) as exc:
        parser.error(str(exc))
    print(f"{args.model}: predictions on {execution.path.name} ({execution.precision})", file=sys.stderr)
    return predictor


def load_predictor(
    name: str, weights: Path | None = None, device: str = "auto", backend: BackendName = "auto"
) -> XrayPredictor | SepsisPredictor:
    """The predictor of catalogue model ``name`` (:class:`~models.errors.UnknownModelError` if none)."""
    predictor: XrayPredictor | SepsisPredictor = catalogue_entry(name).load(weights, device, backend=backend)
    return predictor


__all__ = [
    "MIN_SERIES_HOURS",
    "MortalityPredictor",
    "Predictor",
    "SepsisPredictor",
    "XrayPredictor",
    "add_predictor_arguments",
    "cli_predictor",
    "load_predictor",
    "pad_batch",
    "resolve_device",
]
