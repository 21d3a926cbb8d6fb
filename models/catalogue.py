"""The catalogue of MedLens models: one entry per model, everything else derives from it.

Like torchxrayvision's weight registry, an entry says what a model is (task, architecture, input),
where its checkpoint lives and which predictor class runs it. The CLIs' choices, the API's model
names, serving's applications and routes, the dashboard's titles and colours and the benchmarks
all read this table. Adding a model is one entry here, a checkpoint, an application block in the
serve config and, only for a new kind of input or architecture, a predictor class.

This module imports nothing heavy (no torch): the dashboard and the HTTP schemas use it too.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, WithJsonSchema

from models.errors import UnknownModelError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: image: PNG, JPEG, DICOM; series: one row per hour (PhysioNet 2019 PSV / CSV); events: ``Time,Parameter,Value``
#: rows of a stay's first 48 hours (PhysioNet 2012)
InputKind = Literal["image", "series", "events"]
#: How a model's predictions may run (models/backends.py measures and chooses; ``auto`` is the default).
BackendName = Literal["auto", "torch-fp32", "torch-bf16", "onnxruntime"]
BACKENDS: tuple[str, ...] = ("auto", "torch-fp32", "torch-bf16", "onnxruntime")


@dataclass(frozen=True)
class Task:
    """What a user asks a model: shown on every page and in every answer."""

    name: str  # "pneumonia", "sepsis", "mortality"
    title: str  # "Chest X-ray pneumonia"
    input_kind: InputKind
    file_types: tuple[str, ...]  # lower-case suffixes the uploader offers


@dataclass(frozen=True)
class ModelEntry:
    """One servable model.

    ``name`` is the stable identifier of the CLIs, the API (``/v1/models/{name}``) and the checkpoint;
    ``architecture`` names the ``nn.Module`` family only; ``task`` is what users see."""

    name: str
    task: Task
    architecture: Literal["cnn", "lstm", "transformer"]
    predictor: str  # "module:Class" of the predictor in models/ (imported only when a model is loaded)
    route_prefix: str  # where serving answers ``POST <route_prefix>/predict``
    colour: str  # display colour (Okabe-Ito, colour-blind safe)

    @property
    def title(self) -> str:
        """``Sepsis early warning · LSTM``: the task first, the architecture second."""
        return f"{self.task.title} · {ARCHITECTURE_TITLES[self.architecture]}"

    @property
    def short_title(self) -> str:
        return ARCHITECTURE_TITLES[self.architecture]

    @property
    def serving_name(self) -> str:
        """Ray Serve application and deployment name: ``<task>-<architecture>``."""
        return f"{self.task.name}-{self.architecture}"

    @property
    def predict_route(self) -> str:
        return f"{self.route_prefix}/predict"

    @property
    def default_weights(self) -> Path:
        return WEIGHTS_DIR / self.name

    def predictor_class(self) -> Any:
        module, _, cls = self.predictor.partition(":")
        return getattr(importlib.import_module(module), cls)

    def load(self, weights: Path | None = None, device: str = "auto", **options: Any) -> Any:
        """The predictor of this model on ``device`` (committed weights unless ``weights``)."""
        return self.predictor_class()(weights=weights, device=device, entry=self, **options)


ARCHITECTURE_TITLES = {"cnn": "CNN", "lstm": "LSTM", "transformer": "Transformer"}

PNEUMONIA = Task("pneumonia", "Chest X-ray pneumonia", "image", (".png", ".jpg", ".jpeg", ".dcm", ".dicom"))
SEPSIS = Task("sepsis", "Sepsis early warning", "series", (".psv", ".csv", ".txt"))
MORTALITY = Task("mortality", "ICU in-hospital mortality", "events", (".txt", ".csv"))

CATALOGUE: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry("cnn", PNEUMONIA, "cnn", "models.inference:XrayPredictor", "/v1/xray", "#009E73"),
        ModelEntry("lstm", SEPSIS, "lstm", "models.inference:SepsisPredictor", "/v1/sepsis/lstm", "#0072B2"),
        ModelEntry(
            "transformer",
            SEPSIS,
            "transformer",
            "models.inference:SepsisPredictor",
            "/v1/sepsis/transformer",
            "#D55E00",
        ),
        ModelEntry(
            "mortality-lstm", MORTALITY, "lstm", "models.inference:MortalityPredictor", "/v1/mortality/lstm", "#56B4E9"
        ),
        ModelEntry(
            "mortality-transformer",
            MORTALITY,
            "transformer",
            "models.inference:MortalityPredictor",
            "/v1/mortality/transformer",
            "#E69F00",
        ),
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(CATALOGUE)


@dataclass(frozen=True)
class GeneratorEntry:
    """A generative model: makes inputs (synthetic, marked as such) instead of predicting from them.

    ``name`` is the identifier of the CLIs (``python -m models.train|evaluate|generate <name>``) and
    the checkpoint; serving answers ``POST <route>?label=&seed=`` with one image."""

    name: str
    title: str
    task: Task  # the task whose inputs it makes
    generator: str  # "module:Class" of the generator in models/
    route_prefix: str  # serving's application prefix; it answers ``POST <route_prefix><path>``
    path: str
    colour: str

    @property
    def route(self) -> str:
        return f"{self.route_prefix}{self.path}"

    @property
    def serving_name(self) -> str:
        return f"synthetic-{self.name}"

    @property
    def default_weights(self) -> Path:
        return WEIGHTS_DIR / self.name

    def generator_class(self) -> Any:
        module, _, cls = self.generator.partition(":")
        return getattr(importlib.import_module(module), cls)

    def load(self, weights: Path | None = None, **options: Any) -> Any:
        """The generator (committed weights unless ``weights``)."""
        return self.generator_class()(weights=weights or self.default_weights, **options)


#: The largest seed of a generated image (a 63-bit integer, what ``torch.Generator.manual_seed`` takes).
MAX_SEED = 2**63 - 1

GENERATORS: dict[str, GeneratorEntry] = {
    e.name: e
    for e in (
        GeneratorEntry(
            "gan",
            "Synthetic chest X-ray · conditional GAN",
            PNEUMONIA,
            "models.synthetic:SyntheticXrayGenerator",
            "/v1/synthetic",
            "/xray",
            "#CC79A7",
        ),
    )
}
GENERATOR_NAMES: tuple[str, ...] = tuple(GENERATORS)


def generator_entry(name: str) -> GeneratorEntry:
    """The catalogue entry of generator ``name``; :class:`UnknownModelError` (404) names the choices otherwise."""
    try:
        return GENERATORS[name]
    except KeyError:
        raise UnknownModelError(f"Unknown generator {name!r}: choose one of {', '.join(GENERATOR_NAMES)}.") from None


def _known_generator(name: str) -> str:
    generator_entry(name)
    return name


#: A generator name in a pydantic schema (checked against :data:`GENERATORS`).
GeneratorName = Annotated[
    str, AfterValidator(_known_generator), WithJsonSchema({"type": "string", "enum": list(GENERATOR_NAMES)})
]


def _known_weights(name: str) -> str:
    if name not in CATALOGUE and name not in GENERATORS:
        entry(name)  # raises, naming the models
    return name


#: A model or generator name: what has weights.
WeightsName = Annotated[
    str,
    AfterValidator(_known_weights),
    WithJsonSchema({"type": "string", "enum": [*CATALOGUE, *GENERATORS]}),
]


def default_weights(name: str) -> Path:
    """The committed checkpoint directory of a model or generator."""
    return GENERATORS[name].default_weights if name in GENERATORS else entry(name).default_weights


def entry(name: str) -> ModelEntry:
    """The catalogue entry of ``name``; :class:`UnknownModelError` (404) names the choices otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownModelError(f"Unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}.") from None


def _known(name: str) -> str:
    entry(name)
    return name


#: A model name in a pydantic schema: any catalogue name (checked), an enum in the JSON schema.
ModelName = Annotated[str, AfterValidator(_known), WithJsonSchema({"type": "string", "enum": list(MODEL_NAMES)})]


def models_for(input_kind: InputKind | None = None, task: str | None = None) -> list[ModelEntry]:
    """Entries with that input kind and / or task, in catalogue order."""
    return [
        e
        for e in CATALOGUE.values()
        if (input_kind is None or e.task.input_kind == input_kind) and (task is None or e.task.name == task)
    ]


def by_serving_name(name: str) -> ModelEntry | None:
    return next((e for e in CATALOGUE.values() if e.serving_name == name), None)


__all__ = [
    "CATALOGUE",
    "GENERATORS",
    "GENERATOR_NAMES",
    "MAX_SEED",
    "MODEL_NAMES",
    "GeneratorEntry",
    "GeneratorName",
    "InputKind",
    "ModelEntry",
    "ModelName",
    "Task",
    "WeightsName",
    "by_serving_name",
    "default_weights",
    "entry",
    "generator_entry",
    "models_for",
]
