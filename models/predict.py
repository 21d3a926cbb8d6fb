"""Batch prediction with the default (or given) weights.

python -m models.predict cnn --input FILE_OR_DIR --output preds.csv
    -> CSV ``path,probability,label`` (probability of pneumonia; label 1 = PNEUMONIA)
python -m models.predict lstm|transformer --input DIR --output OUTDIR
    -> for every ``*.psv`` in DIR, OUTDIR/<same name> with ``PredictedProbability|PredictedLabel``
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.errors import MedLensInputError
from models.inference import SepsisPredictor, XrayPredictor, add_predictor_arguments, cli_predictor
from models.sepsis_io import iter_series_files, load_series_file
from models.sequence import PROB_EPS
from models.xray_io import iter_image_files, load_xray_file


def predict_images(predictor: XrayPredictor, source: Path, batch_size: int) -> list[tuple[str, float]]:
    """(path, probability) for every readable image under ``source``; unreadable files are reported."""
    paths = list(iter_image_files(source))
    rows: list[tuple[str, float]] = []
    for start in tqdm(range(0, len(paths), batch_size), desc="cnn", unit="batch", disable=len(paths) < 2):
        names, images = [], []
        for path in paths[start : start + batch_size]:
            try:
                images.append(load_xray_file(path).pixels)
                names.append(str(path))
            except MedLensInputError as exc:
                print(f"skipped: {exc.message}", file=sys.stderr)
        probs = predictor.predict(images)
        rows.extend(zip(names, (float(p) for p in probs), strict=True))
    return rows


def predict_series_dir(predictor: SepsisPredictor, source: Path, out_dir: Path, batch_size: int) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [p for p in iter_series_files(source) if p.suffix.lower() == ".psv" or source.is_file()]
    for start in tqdm(range(0, len(paths), batch_size), desc=predictor.name, unit="batch"):
        chunk = paths[start : start + batch_size]
        records = []
        for path in chunk:
            record = load_series_file(path, on_impossible="drop")
            for warning in record.warnings:
                print(f"{path.name}: {warning}", file=sys.stderr)
            records.append(record)
        for path, prob in zip(chunk, predictor.predict([r.values for r in records]), strict=True):
            write_challenge_output(out_dir / path.name, prob, predictor.threshold)
    return len(paths)


def write_challenge_output(path: Path, prob: np.ndarray, threshold: float) -> None:
    """PhysioNet 2019 output: ``PredictedProbability|PredictedLabel``, one row per input hour.
    Probabilities stay strictly inside (0, 1) so no hour is dropped from the official ROC."""
    prob = np.clip(prob.astype(np.float64), PROB_EPS, 1.0 - PROB_EPS)
    lines = ["PredictedProbability|PredictedLabel"]
    lines += [f"{p:.6f}|{int(p >= threshold)}" for p in prob]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.predict", description=__doc__.splitlines()[0])
    add_predictor_arguments(parser)
    parser.add_argument("--input", type=Path, required=True, help="image file or folder / folder of .psv")
    parser.add_argument("--output", type=Path, required=True, help="cnn: CSV file; sequence models: folder")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    if not args.input.exists():
        parser.error(f"--input {args.input} does not exist")
    predictor = cli_predictor(parser, args)
    if isinstance(predictor, XrayPredictor):
        rows = predict_images(predictor, args.input, args.batch_size)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "probability", "label"])
            for path, prob in rows:
                writer.writerow([path, f"{prob:.6f}", int(prob >= predictor.threshold)])
        print(f"{len(rows)} image(s) -> {args.output} (threshold {predictor.threshold:.4f})", file=sys.stderr)
        return 0
    count = predict_series_dir(predictor, args.input, args.output, max(1, args.batch_size * 4))
    print(f"{count} record(s) -> {args.output}/ (threshold {predictor.threshold:.4f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
