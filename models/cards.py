"""Model cards (JSON + Markdown) written beside each checkpoint.

``card.json`` is also what serving returns at ``/v1/models/{name}/metrics``: the evaluation
inside it carries the curve points the dashboard draws.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from models.catalogue import ModelName
from models.checkpoint import CARD_JSON, CARD_MD
from models.metrics import BinaryEvaluation
from models.protocol_summary import ProtocolSummary
from models.trust_report import EnsembleReport, SepsisTrustReport, TrustReport

XRAY_SOURCE = (
    "Kermany, Zhang, Goldbaum et al., Cell 2018, 'Chest X-Ray Images (Pneumonia)', Mendeley Data v2 "
    "(CC BY 4.0): pediatric (1-5 y) AP chest radiographs, Guangzhou Women and Children's Medical Center."
)
SEPSIS_SOURCE = (
    "Reyna et al., 'Early Prediction of Sepsis From Clinical Data: the PhysioNet/Computing in "
    "Cardiology Challenge 2019', Crit Care Med 2020 (CC BY 4.0): training set B (one hospital system)."
)

MORTALITY_SOURCE = (
    "Silva et al., 'Predicting In-Hospital Mortality of ICU Patients: the PhysioNet/Computing in Cardiology "
    "Challenge 2012', CinC 2012 (PhysioNet open data): sets a and b, the first 48 hours of 8,000 adult ICU stays."
)


class SpeedRow(BaseModel):
    """One execution path measured by ``python -m benchmarks.models_speed --cards``."""

    model_config = ConfigDict(extra="forbid")

    path: str
    items_per_s: dict[int, float]
    labels_equal_fp32: float
    max_prob_diff: float
    chosen: bool


class SpeedTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    machine: str
    threads: int
    measured: str  # date, UTC
    command: str
    rows: list[SpeedRow]


class Provenance(BaseModel):
    """How a card's weights were made, as every MedLens card (classifiers' and the generator's) records it:
    the data, its split, the command, the seed and the training time."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    task: str
    created: str
    data: str
    data_path: str
    split: str
    command: str
    seed: int
    training_seconds: float


class ModelCard(Provenance):
    name: ModelName
    hyperparameters: dict[str, Any]
    #: the checkpoint's labels, negative first (None on cards written before they carried them)
    labels: list[str] | None = None
    threshold: float
    threshold_rule: str
    evaluation_dataset: str
    evaluation: BinaryEvaluation
    extra_metrics: dict[str, float] = {}
    intended_use: str
    limitations: list[str]
    speed: SpeedTable | None = None
    trust: TrustReport | SepsisTrustReport | None = None
    ensemble: EnsembleReport | None = None
    protocol: ProtocolSummary | None = None


def write_card(directory: Path, card: ModelCard) -> None:
    """``card.json`` and ``card.md`` of ``card`` in ``directory`` (made if missing). Both are rendered before
    either is written, and each is written whole to a temporary file beside it that then replaces it: a crash
    mid-write leaves the previous file intact."""
    from models.cli_args import write_atomically

    directory.mkdir(parents=True, exist_ok=True)
    texts = {CARD_JSON: json.dumps(card.model_dump(mode="json"), indent=1) + "\n", CARD_MD: render_markdown(card)}
    for name, text in texts.items():

        def write(temporary: Path, text: str = text) -> None:
            temporary.write_text(text)

        write_atomically(directory / name, write)


def read_card(directory: Path) -> ModelCard:
    return ModelCard.model_validate_json((directory / CARD_JSON).read_text())


def _labels_line(labels: list[str] | None) -> str:
    return "" if not labels else "\n\n**Labels** (negative first). " + " / ".join(f"`{x}`" for x in labels)


def render_markdown(card: ModelCard) -> str:
    ev = card.evaluation
    c = ev.confusion
    rows = [
        ("AUROC", ev.auroc),
        ("AUPRC", ev.auprc),
        ("Accuracy", ev.accuracy),
        ("Sensitivity", ev.sensitivity),
        ("Specificity", ev.specificity),
        ("Precision (PPV)", ev.precision),
        ("F1", ev.f1),
        ("Brier score", ev.brier),
        ("ECE (10 bins)", ev.ece),
    ]
    if ev.utility is not None:
        rows.insert(0, ("Normalised challenge utility", ev.utility))
    rows += list(card.extra_metrics.items())
    table = "\n".join(f"| {k} | {v:.4f} |" for k, v in rows)
    hyper = "\n".join(f"- `{k}`: {v}" for k, v in card.hyperparameters.items())
    limits = "\n".join(f"- {x}" for x in card.limitations)
    sections = (
        _protocol_section(card.protocol)
        + _ensemble_section(card.ensemble)
        + _speed_section(card.speed)
        + _trust_section(card.trust)
    )
    return f"""# Model card: `{card.name}` ({card.version})

**Task.** {card.task}{_labels_line(card.labels)}

**Not for clinical use.** Research and demonstration software; not a medical device.

## Data
{card.data}

- Data directory used: `{card.data_path}`
- Split: {card.split}

## Training
- Command: `{card.command}`
- Seed: {card.seed}
- Training time: {card.training_seconds / 60:.1f} min on this machine's CPU (2 cores)
- Created: {card.created}

Hyper-parameters:
{hyper}

## Operating threshold
{card.threshold:.4f} — {card.threshold_rule}

## Evaluation ({card.evaluation_dataset})
n = {ev.n} ({ev.n_positive} positive), at the operating threshold:

| metric | value |
|---|---|
{table}

Confusion matrix: TN {c.tn}, FP {c.fp}, FN {c.fn}, TP {c.tp}.

{sections}## Intended use
{card.intended_use}

## Limitations
{limits}
"""


def _protocol_section(p: ProtocolSummary | None) -> str:
    if p is None:
        return ""
    rows = "\n".join(
        f"| {k} | {p.mean[k]:.4f} ± {p.std[k]:.4f} | {' '.join(f'{v:.3f}' for v in p.per_repeat[k])} |" for k in p.mean
    )
    reserve = (
        "The reserve has not been scored for this checkpoint."
        if p.reserve is None
        else f"**Reserve** ({p.n_reserve} stays never used for training or choices, scored once, {p.reserve_measured}: "
        f"`{p.reserve_command}`): " + ", ".join(f"{k} {v:.4f}" for k, v in p.reserve.items()) + "."
    )
    for e in p.earlier_reserves:
        reserve += (
            f" The same weights at the earlier threshold {e.threshold:.4f} ({e.measured}, `{e.command}`): "
            + ", ".join(f"{k} {v:.4f}" for k, v in e.figures.items())
            + "."
        )
    return f"""## Evaluation protocol (the figures to believe)
`{p.command}` ({p.created}, features {p.schema_name}), docs/sepsis-protocol.md.
{p.procedure()}
Mean ± standard deviation over the splits:

| figure | mean ± std | per split |
|---|---|---|
{rows}

{reserve}

"""


def _ensemble_section(report: EnsembleReport | None) -> str:
    if report is None:
        return ""

    def ms(v: tuple[float, float]) -> str:
        return f"{v[0]:.4f} ± {v[1]:.4f}"

    rows = "\n".join(
        f"| {r.size}{' (adopted)' if r.adopted else ''} | {r.subsets} | {ms(r.auroc)} | {ms(r.brier)} | {ms(r.ece)} | "
        f"{ms(r.specificity)} | {ms(r.drift)} | {ms(r.worst_specificity)} |"
        for r in report.rows
    )
    members = "\n".join(f"- {m}" for m in report.members)
    return f"""## Deep ensemble
Measured {report.measured} on {report.machine}: `{report.command}`. Members (same patient split, different
seeds for initialisation, batch order and augmentation):
{members}

{report.rule} Each row: mean ± standard deviation over every subset of that many members, on the
{report.n_validation} validation radiographs, each subset at its own threshold; drift: mean over the
acquisition shifts of models/shifts.py of the change of sensitivity plus the change of specificity.
Mean spread (standard deviation of the adopted members' probabilities) per radiograph: {report.spread:.4f}.

| members | subsets | AUROC | Brier | ECE | specificity | operating-point drift | worst specificity under shift |
|---|---|---|---|---|---|---|---|
{rows}

"""


def _speed_section(speed: SpeedTable | None) -> str:
    if speed is None:
        return ""
    rows = "\n".join(
        f"| {r.path}{' (chosen)' if r.chosen else ''} | "
        + ", ".join(f"batch {b}: {v:.0f}/s" for b, v in r.items_per_s.items())
        + f" | {r.labels_equal_fp32:.3f} | {r.max_prob_diff:.2g} |"
        for r in speed.rows
    )
    return f"""## Prediction speed, every execution path
Measured {speed.measured} on {speed.machine}, {speed.threads} thread(s): `{speed.command}`. Serving chooses
the path on the machine it runs on (models/backends.py); this is what the choice saw here.

| path | predictions per second | labels = torch fp32 | max probability difference |
|---|---|---|---|
{rows}

"""


_OOD_HEADER = (
    "| score | threshold | AUROC in vs out | validation pass | training pass | full-res pass | chest DICOM pass "
    "| non-CXR flagged | DICOMs flagged | generated flagged |\n|---|---|---|---|---|---|---|---|---|---|"
)


def _trust_section(trust: TrustReport | SepsisTrustReport | None) -> str:
    if trust is None:
        return ""
    if isinstance(trust, SepsisTrustReport):
        return _sepsis_trust_section(trust)
    ood = "\n".join(
        f"| {r.method}{' (adopted)' if r.adopted else ''} | {r.threshold:.4g} | {r.auroc_in_vs_out:.4f} | "
        f"{r.validation_pass:.3f} | {r.training_pass:.3f} | "
        f"{'-' if r.fullres_pass is None else f'{r.fullres_pass:.3f}'} | {r.chest_dicom_pass:.2f} | "
        f"{r.non_cxr_flag:.3f} | {r.dicom_flag:.3f} | {r.generated_flag:.3f} |"
        for r in trust.ood
    )
    cal = "\n".join(
        f"| {r.method}{' (adopted)' if r.adopted else ''} | {r.ece:.4f} | {r.brier:.4f} |" for r in trust.calibration
    )
    conf = "\n".join(f"| {r.label} | {r.n} | {r.coverage:.3f} | {r.mean_set_size:.3f} |" for r in trust.conformal)
    return f"""## When not to trust it
Measured {trust.measured} on {trust.machine}: `{trust.command}` (docs/trust.md).

**Out of distribution.** {trust.ood_rule} Non-chest-radiograph set: {trust.non_cxr_set}
({trust.n_dicom} DICOMs, {trust.n_generated} generated images); scores on pixels alone. With the DICOM
header evidence as well, {trust.dicom_flag_with_header:.1%} of those DICOMs are flagged.

{_OOD_HEADER}
{ood}

**Calibration** ({trust.n_validation} validation radiographs, {trust.folds}-fold cross-fitted by patient).
{trust.calibration_rule} Temperature fitted on all of them: {trust.temperature:.4f}.

| calibrator | ECE | Brier |
|---|---|---|
{cal}

**Conformal prediction sets** (class-conditional split conformal, alpha = {trust.alpha}; coverage
{trust.folds}-fold cross-fitted: calibrated on the other folds). Coverage >= 1 - alpha holds on data
exchangeable with the calibration data only: no guarantee under shift. Both labels ("uncertain: needs
a reader"): {trust.uncertain_rate:.1%} of validation radiographs (empty before filling:
{trust.empty_rate:.1%}).

| true label | n | coverage | mean set size |
|---|---|---|---|
{conf}

"""


def _sepsis_trust_section(trust: SepsisTrustReport) -> str:
    c = trust.out_of_fold
    card_utility = "-" if c.card_utility is None else f"{c.card_utility:.4f}"
    utility = "" if c.utility is None else f"normalised utility {c.utility:.4f} ({card_utility}), "
    at_alerts = trust.alert_observed is not None
    cal = "\n".join(
        f"| {r.method}{' (adopted)' if r.adopted else ''} | {r.ece:.4f} | {r.brier:.5f} |"
        + (f" {'n/a' if r.alert_mean is None else f'{r.alert_mean:.1%}'} |" if at_alerts else "")
        for r in trust.calibration
    )
    head = "| calibrator | ECE (10 bins) | Brier |" + (" mean at alerts |" if at_alerts else "")
    rule = "|---|---|---|" + ("---|" if at_alerts else "")
    alerts = (
        ""
        if trust.alert_observed is None
        else f"\n\nAt alerts ({trust.alert_hours} predictions of {trust.alert_stays} stays whose raw risk reaches the "
        f"threshold), the label was 1 in {trust.alert_observed:.1%}: the calibrated risk should read about that there. "
        "The ECE is dominated by the many low-risk predictions."
    )
    return f"""## When not to trust it
Measured {trust.measured} on {trust.machine}: `{trust.command}` (docs/trust.md).

**Out-of-fold predictions, recomputed from the checkpoint** (each of {c.n_stays} stays scored by the fold
member that never saw it; folds from the card's seed): AUROC {c.auroc:.4f} (training card {c.card_auroc:.4f}),
{utility}Brier {c.brier:.5f} ({c.card_brier:.5f}) over {c.n_hours}
hours.

**Calibration of the hourly risk** ({trust.folds}-fold cross-fitted over the training folds of stays: a stay's
hours are never both fitted on and scored). {trust.calibration_rule}

{head}
{rule}
{cal}{alerts}

Caveat: {trust.caveat} {trust.threshold_note}

**Fold-ensemble spread.** Every answer carries, per hour, the standard deviation, minimum and maximum of the
{trust.folds} members' probabilities. Over every hour of every training stay: mean std {trust.spread_mean:.4f},
90th percentile {trust.spread_p90:.4f}. Each of these stays was seen by 4 of the 5 members in training, so
the spread on new stays may be larger.

"""
