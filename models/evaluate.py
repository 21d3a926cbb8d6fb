"""Evaluate a model on labelled data: the same figures the model card stores and serving returns.

python -m models.evaluate cnn --data DIR            # DIR/NORMAL/*, DIR/PNEUMONIA/*
python -m models.evaluate lstm|transformer --data DIR   # DIR/*.psv with SepsisLabel
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.inference import SepsisPredictor, XrayPredictor, add_predictor_arguments, cli_predictor
from models.metrics import BinaryEvaluation, binary_evaluation, normalized_utility
from models.sepsis_io import load_labelled_dir
from models.xray_io import labelled_images, load_xray_file


def evaluate_cnn(predictor: XrayPredictor, data: Path, batch_size: int = 16) -> BinaryEvaluation:
    items = labelled_images(data)
    probs: list[float] = []
    for start in tqdm(range(0, len(items), batch_size), desc="cnn", unit="batch"):
        images = [load_xray_file(p).pixels for p, _ in items[start : start + batch_size]]
        probs.extend(float(x) for x in predictor.predict(images))
    labels = np.array([label for _, label in items])
    return binary_evaluation(labels, np.array(probs), predictor.threshold)


def evaluate_sequence(predictor: SepsisPredictor, data: Path, batch_size: int = 64) -> BinaryEvaluation:
    records = load_labelled_dir(data)
    probs: list[np.ndarray] = []
    for start in tqdm(range(0, len(records), batch_size), desc=predictor.name, unit="batch"):
        probs.extend(predictor.predict([r.values for r in records[start : start + batch_size]]))
    labels = [r.labels for r in records if r.labels is not None]
    evaluation = binary_evaluation(np.concatenate(labels), np.concatenate(probs), predictor.threshold)
    evaluation.utility = normalized_utility(labels, [p >= predictor.threshold for p in probs])
    return evaluation


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.splitlines()[0])
    add_predictor_arguments(parser)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=None, help="also write the evaluation as JSON here")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist")
    predictor = cli_predictor(parser, args)
    if isinstance(predictor, XrayPredictor):
        evaluation = evaluate_cnn(predictor, args.data)
    else:
        evaluation = evaluate_sequence(predictor, args.data)
    print(summary(args.model, evaluation))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(evaluation.model_dump_json(indent=1) + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
