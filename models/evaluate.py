"""Evaluate a model on labelled data: the same figures the model card stores and serving returns.

python -m models.evaluate cnn --data DIR            # DIR/NORMAL/*, DIR/PNEUMONIA/*; calibrated checkpoints
                                                    # also: conformal coverage, set size, OOD rate; a DIR
                                                    # with synthetic (marked) images is refused (status 2)
python -m models.evaluate lstm|transformer --data DIR   # DIR/*.psv with SepsisLabel
python -m models.evaluate mortality-lstm|mortality-transformer --data ROOT --sets c
                                                    # ROOT/set-c/*.txt and ROOT/Outcomes-c.txt (required: sets
                                                    # a and b hold the training stays and the reserve):
                                                    # AUROC and event-1 min(Se, +P) of the 48th hour's risk
                                                    # calibrated sequence checkpoints also: ECE and Brier of
                                                    # the calibrated risk (sepsis every hour, mortality the 48th)
python -m models.evaluate gan [--data DIR]          # synthetic radiographs against the CNN split's held-out
                                                    # patients; writes the evaluation into the GAN's card

Data that hold the checkpoint's training stays (or, for the CNN, images of the folder it was trained on) are
scored with a warning on stderr and in the JSON's ``warnings``: those figures are in-sample. ``--output`` writes
the evaluation as JSON: the fields of models.metrics.BinaryEvaluation, then ``model``, ``data``, ``warnings``,
``event1`` (mortality), ``calibrated`` (ECE and Brier of a calibrated checkpoint's calibrated risk) and ``trust``
(a calibrated CNN's conformal coverage, set sizes and out-of-distribution rate).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ConfigDict, Field
from tqdm import tqdm

from models.calibration import brier
from models.catalogue import entry
from models.cli_args import open_fraction, output_file, positive_int, write_atomically
from models.errors import MedLensInputError
from models.inference import (
    MortalityPredictor,
    SepsisPredictor,
    XrayPredictor,
    add_predictor_arguments,
    cli_predictor,
    load_predictor,
)
from models.metrics import BinaryEvaluation, binary_evaluation, expected_calibration_error, normalized_utility
from models.predict import named
from models.sepsis_io import iter_series_files, load_labelled_dir
from models.trust import XrayAssessment
from models.xray_io import CLASS_NAMES, XrayImage, labelled_images, load_xray_file


@dataclass(frozen=True)
class CalibratedFigures:
    """How well a calibrated checkpoint's calibrated probability, the one served beside the raw risk, matches
    the outcomes it is scored on."""

    ece: float
    brier: float

    @classmethod
    def of(cls, labels: np.ndarray, calibrated: np.ndarray) -> CalibratedFigures:
        """labels: (n,) 0/1; calibrated: (n,) calibrated probabilities of the same items."""
        return cls(ece=expected_calibration_error(labels, calibrated), brier=brier(labels, calibrated))

    def summary(self) -> str:
        return f"  calibrated: ECE {self.ece:.4f}  Brier {self.brier:.4f}"


@dataclass(frozen=True)
class TrustEvaluation:
    """Conformal coverage and set size per class, the share flagged out of distribution, and the calibration."""

    alpha: float
    coverage: dict[str, float]  # label -> share of its images whose set holds it
    mean_set_size: dict[str, float]
    uncertain_rate: float  # sets with both labels
    ood_rate: float  # images flagged out of distribution
    calibrated: CalibratedFigures


def _image(path: Path) -> XrayImage:
    """The image at ``path``; one that cannot be read raises its error with a message that names the file."""
    try:
        return load_xray_file(path)
    except MedLensInputError as exc:
        raise type(exc)(named(path, exc.message)) from exc


class EvaluationOutput(BinaryEvaluation):
    """What ``--output`` writes: the evaluation at the operating threshold and every headline figure printed."""

    model_config = ConfigDict(extra="forbid")

    model: str
    data: str
    #: why the figures may not be what they seem (in-sample data), as printed on stderr
    warnings: list[str] = Field(default_factory=list)
    event1: float | None = None  # mortality: min(Se, +P) of the 48th hour's risk at the threshold
    calibrated: CalibratedFigures | None = None
    trust: TrustEvaluation | None = None  # a calibrated CNN: conformal sets and out-of-distribution rate


def evaluate_cnn(
    predictor: XrayPredictor, data: Path, items: list[tuple[Path, int]], batch_size: int = 16
) -> tuple[BinaryEvaluation, TrustEvaluation | None]:
    """The evaluation at the operating threshold and, for a calibrated checkpoint, the trust figures, on the
    labelled images ``items`` (every one of the folder ``data``)."""
    present = {label for _, label in items}
    if present != {0, 1}:
        raise ValueError(
            f"{data} holds {len(items)} image(s), none of them "
            f"{' or '.join(CLASS_NAMES[k] for k in (0, 1) if k not in present)}: an evaluation needs both classes "
            f"({'/'.join(CLASS_NAMES)} subfolders)."
        )
    probs: list[float] = []
    assessments: list[XrayAssessment] = []
    for start in tqdm(range(0, len(items), batch_size), desc="cnn", unit="batch"):
        images = [_image(p) for p, _ in items[start : start + batch_size]]
        if predictor.trust is None:
            probs.extend(float(x) for x in predictor.predict([im.pixels for im in images]))
        else:
            batch = predictor.assess(images)
            assessments.extend(batch)
            probs.extend(a.probability for a in batch)
    labels = np.array([label for _, label in items])
    evaluation = binary_evaluation(labels, np.array(probs), predictor.threshold)
    if predictor.trust is None:
        return evaluation, None
    names = list(predictor.meta.labels)
    covered = np.array([names[y] in a.prediction_set for a, y in zip(assessments, labels, strict=True)])
    sizes = np.array([len(a.prediction_set) for a in assessments])
    calibrated = np.array([a.calibrated_probability for a in assessments])
    trust = TrustEvaluation(
        alpha=predictor.alpha if predictor.alpha is not None else predictor.trust.alpha,
        coverage={names[k]: float(covered[labels == k].mean()) for k in (0, 1) if (labels == k).any()},
        mean_set_size={names[k]: float(sizes[labels == k].mean()) for k in (0, 1) if (labels == k).any()},
        uncertain_rate=float(np.mean(sizes == 2)),
        ood_rate=float(np.mean([not a.in_distribution for a in assessments])),
        calibrated=CalibratedFigures.of(labels, calibrated),
    )
    return evaluation, trust


def trust_summary(t: TrustEvaluation) -> str:
    coverage = "  ".join(f"{k} {v:.4f}" for k, v in t.coverage.items())
    sizes = "  ".join(f"{k} {v:.3f}" for k, v in t.mean_set_size.items())
    return "\n".join(
        [
            f"  conformal sets (alpha {t.alpha}): coverage {coverage}",
            f"  mean set size {sizes}  uncertain (both labels) {t.uncertain_rate:.4f}",
            f"  out of distribution {t.ood_rate:.4f}",
            t.calibrated.summary(),
        ]
    )


def evaluate_sequence(
    predictor: SepsisPredictor, data: Path, batch_size: int = 64
) -> tuple[BinaryEvaluation, CalibratedFigures | None]:
    """(evaluation of the hourly risk, with the utility; the calibrated hourly risk's figures from a calibrated
    checkpoint) on the labelled ``*.psv`` stays in ``data``."""
    records = load_labelled_dir(data)
    probs: list[np.ndarray] = []
    calibrated: list[np.ndarray] = []
    for start in tqdm(range(0, len(records), batch_size), desc=predictor.name, unit="batch"):
        for a in predictor.assess([r.values for r in records[start : start + batch_size]]):
            probs.append(a.probability)
            if a.calibrated_probability is not None:
                calibrated.append(a.calibrated_probability)
    labels = [r.labels for r in records if r.labels is not None]
    y = np.concatenate(labels)
    evaluation = binary_evaluation(y, np.concatenate(probs), predictor.threshold)
    evaluation.utility = normalized_utility(labels, [p >= predictor.threshold for p in probs])
    return evaluation, CalibratedFigures.of(y, np.concatenate(calibrated)) if calibrated else None


def evaluate_mortality(
    predictor: MortalityPredictor, root: Path, sets: list[str], batch_size: int = 256
) -> tuple[BinaryEvaluation, float, CalibratedFigures | None]:
    """(evaluation of the 48th hour's risk per stay, event-1 score, the calibrated 48th hour's figures from a
    calibrated checkpoint) on the labelled sets under ``root``."""
    from models.mortality_io import load_labelled_sets
    from models.sequence_tasks import event1

    records = load_labelled_sets(root, sets)
    probs: list[float] = []
    calibrated: list[float] = []
    for start in tqdm(range(0, len(records), batch_size), desc=predictor.name, unit="batch"):
        chunk = records[start : start + batch_size]
        risk, calibrated_risk = predictor.assess_stays([predictor.model_values(r) for r in chunk])
        probs.extend(risk)
        calibrated.extend([] if calibrated_risk is None else calibrated_risk)
    y = np.array([int(r.label or 0) for r in records])
    p = np.array(probs)
    figures = CalibratedFigures.of(y, np.array(calibrated)) if calibrated else None
    return binary_evaluation(y, p, predictor.threshold), event1(y, (p >= predictor.threshold).astype(np.int64)), figures


def _stems(paths: list[Path]) -> set[str]:
    return {p.stem for p in paths}


def training_overlap(predictor: XrayPredictor | SepsisPredictor, evaluated: list[str]) -> str | None:
    """Why the figures on ``evaluated`` (image paths; sequence stays' names) are in-sample, or None: some are the
    checkpoint's training stays (names of the stays outside the protocol's reserve in the training data its card
    names), or for the CNN images of the folder it was trained on. A card whose training data are not on this
    machine cannot be checked: said so."""
    from models.protocol import is_reserved

    card = predictor.card
    if card is None:
        return None
    trained = Path(card.data_path)
    if not trained.is_dir():
        return f"cannot check for training stays: the training data its card names, {trained}, are not here"
    if isinstance(predictor, XrayPredictor):
        root = trained.resolve()
        inside = sum(Path(p).resolve().is_relative_to(root) for p in evaluated)
        if not inside:
            return None
        return (
            f"{inside} of the {len(evaluated)} images lie in the folder {predictor.weights_dir} was trained on "
            f"({trained}; its training images and validation patients): these figures are in-sample, optimistic"
        )
    if isinstance(predictor, MortalityPredictor):
        from models.mortality_io import iter_record_files

        folders = [trained / f"set-{s}" for s in ("a", "b")]  # what models.train reads (load_mortality_stays)
        names = _stems([p for f in folders if f.is_dir() for p in iter_record_files(f)])
    else:
        names = _stems(list(iter_series_files(trained)))
    names = {n for n in names if not is_reserved(n)}
    shared = sum(Path(n).stem in names for n in evaluated)
    if not shared:
        return None
    never_seen = " (the 2012 set c)" if isinstance(predictor, MortalityPredictor) else ""
    return (
        f"{shared} of the {len(evaluated)} stays are training stays of {predictor.weights_dir} (in {trained}, "
        "outside the protocol's reserve): these figures are in-sample, optimistic; score stays it never saw"
        + never_seen
    )


def summary(name: str, ev: BinaryEvaluation) -> str:
    c = ev.confusion
    lines = [
        f"model {name}: n={ev.n} positives={ev.n_positive} threshold={ev.threshold:.4f}",
        f"  AUROC {ev.auroc:.4f}  AUPRC {ev.auprc:.4f}  accuracy {ev.accuracy:.4f}",
        f"  sensitivity {ev.sensitivity:.4f}  specificity {ev.specificity:.4f}  F1 {ev.f1:.4f}",
        f"  ECE {ev.ece:.4f}  Brier {ev.brier:.4f}",
        f"  confusion: TN {c.tn}  FP {c.fp}  FN {c.fn}  TP {c.tp}",
    ]
    if ev.utility is not None:
        lines.append(f"  normalised utility {ev.utility:.4f}")
    return "\n".join(lines)


def evaluate_gan_cli(argv: list[str]) -> int:
    """``python -m models.evaluate gan``: every figure of models/gan_eval.py, into the card and docs/."""
    import shlex

    import torch

    from models.catalogue import generator_entry
    from models.config import REPO_ROOT, data_paths
    from models.gan_card import read_gan_card, write
    from models.gan_eval import evaluate_gan, heldout_data
    from models.synthetic import SyntheticXrayGenerator
    from models.train_cnn import VAL_FRACTION

    parser = argparse.ArgumentParser(prog="python -m models.evaluate gan", description=evaluate_gan_cli.__doc__)
    parser.add_argument("--weights", type=Path, default=generator_entry("gan").default_weights)
    parser.add_argument("--data", type=Path, default=None, help="training folder (default: from MEDLENS_DATA_DIR)")
    parser.add_argument("--cnn-weights", type=Path, default=None, help="the CNN whose features and labels judge")
    parser.add_argument("--split-seed", type=int, default=0, help="the CNN's patient split (its card says)")
    parser.add_argument("--threads", type=positive_int, default=max(1, torch.get_num_threads()))
    parser.add_argument("--figure", type=Path, default=REPO_ROOT / "docs" / "gan-closest-pairs.png")
    parser.add_argument("--tstr-per-class", type=int, default=1000, help="generated (and real) images per class")
    parser.add_argument("--tstr-epochs", type=int, default=12)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = args.data or data_paths().xray_train
    if not data.is_dir():
        parser.error(f"--data {data} does not exist: set MEDLENS_DATA_DIR or pass --data")
    generator = SyntheticXrayGenerator(args.weights)
    cnn = load_predictor("cnn", args.cnn_weights, "cpu", "torch-fp32")
    assert isinstance(cnn, XrayPredictor)
    held = heldout_data(data, generator.config.image_size, VAL_FRACTION, args.split_seed)
    command = "python -m models.evaluate " + " ".join(shlex.quote(a) for a in ["gan", *argv])
    figure = args.figure.resolve()
    shown = str(figure.relative_to(REPO_ROOT)) if figure.is_relative_to(REPO_ROOT) else str(figure)
    evaluation = evaluate_gan(
        generator,
        cnn,
        held,
        command=command,
        figure=figure,
        tstr_per_class=args.tstr_per_class,
        tstr_epochs=args.tstr_epochs,
    )
    evaluation.memorisation.figure = shown
    card = read_gan_card(args.weights)
    card.evaluation = evaluation
    write(args.weights, card)
    print(evaluation.model_dump_json(indent=1))
    print(f"wrote the evaluation into {args.weights}/card.json and card.md", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gan"]:
        return evaluate_gan_cli(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.splitlines()[0])
    add_predictor_arguments(parser)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--output", type=output_file, default=None, help="also write the evaluation as JSON here")
    parser.add_argument(
        "--alpha", type=open_fraction, default=None, help="cnn: conformal miscoverage in (0, 1) (default: stored)"
    )
    parser.add_argument(
        "--sets",
        nargs="+",
        default=None,
        help="mortality-*: the 2012 sets under --data, required (a and b hold the training stays and the reserve: "
        "their figures are in-sample)",
    )
    args = parser.parse_args(argv)
    task = entry(args.model).task
    if task.name == "mortality" and not args.sets:
        parser.error("--sets is required for a mortality model: name the 2012 sets to score (e.g. --sets c)")
    if task.name != "mortality" and args.sets:
        parser.error(f"--sets names 2012 sets for a mortality model; {args.model} reads every record of --data")
    if args.alpha is not None and task.input_kind != "image":
        parser.error(f"--alpha applies to the cnn's conformal sets; {args.model} has none")
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist")
    items: list[tuple[Path, int]] = []
    if task.input_kind == "image":  # before the model is loaded
        try:  # figures of a folder with synthetic images would be read as those of real patients: none is given
            items = labelled_images(args.data, refuse_synthetic=True)
        except (FileNotFoundError, MedLensInputError) as exc:
            parser.error(str(exc))
    predictor = cli_predictor(parser, args)
    trust: TrustEvaluation | None = None
    calibrated: CalibratedFigures | None = None
    score: float | None = None
    try:  # a labelled set with a file that cannot be read, or one class only, has no honest figure: none is given
        if isinstance(predictor, XrayPredictor):
            predictor.alpha = args.alpha
            evaluated = [str(p) for p, _ in items]
            evaluation, trust = evaluate_cnn(predictor, args.data, items)
            calibrated = None if trust is None else trust.calibrated
        elif isinstance(predictor, MortalityPredictor):
            from models.mortality_io import iter_record_files

            folders = [args.data / f"set-{s}" for s in args.sets]
            evaluated = [p.stem for f in folders if f.is_dir() for p in iter_record_files(f)]
            evaluation, score, calibrated = evaluate_mortality(predictor, args.data, args.sets)
        else:
            evaluated = [p.name for p in iter_series_files(args.data)]
            evaluation, calibrated = evaluate_sequence(predictor, args.data)
    except MedLensInputError as exc:
        print(f"error: {exc.message} (fix or remove the file: every labelled file counts)", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warnings = [w for w in [training_overlap(predictor, evaluated)] if w is not None]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(summary(args.model, evaluation))
    if score is not None:
        print(f"  event-1 min(Se, +P) {score:.4f}")
    if trust is not None:
        print(trust_summary(trust))
    elif calibrated is not None:
        print(calibrated.summary())
    if args.output:
        output = EvaluationOutput(
            **evaluation.model_dump(),
            model=args.model,
            data=str(args.data),
            warnings=warnings,
            event1=score,
            calibrated=calibrated,
            trust=trust,
        )
        text = output.model_dump_json(indent=1) + "\n"
        write_atomically(args.output, lambda temporary: temporary.write_text(text))
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
