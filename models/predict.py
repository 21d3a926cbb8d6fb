"""Batch prediction with the default (or given) weights.

python -m models.predict cnn --input FILE_OR_DIR --output preds.csv [--alpha 0.1]
    -> CSV ``path,probability,label,calibrated_probability,prediction_set,in_distribution,ood_score,ensemble_std``
       (probability of pneumonia; label 1 = PNEUMONIA at the operating threshold, the raw model label, to be
       withheld where in_distribution is 0; prediction_set like ``NORMAL|PNEUMONIA``; ensemble_std the standard
       deviation of an ensemble's members' probabilities, 0 for one network; see docs/trust.md)
python -m models.predict mortality-lstm|mortality-transformer --input DIR_OF_RecordID.txt --output preds.csv
    -> CSV ``RecordID,probability,label`` (the model's risk of in-hospital death after the first 48 hours, its
       ranking score; label 1 at the model's threshold), then ``calibrated_probability`` (a calibrated checkpoint:
       the risk as a probability to read), one row per stay; impossible values are dropped and named on stderr
python -m models.predict lstm|transformer --input DIR --output OUTDIR
    -> for every ``*.psv`` in DIR, OUTDIR/<same name> with ``PredictedProbability|PredictedLabel`` (the
       challenge's columns, first), then ``CalibratedProbability`` (a calibrated checkpoint) and
       ``Spread|MemberMin|MemberMax`` (the fold members' spread, a checkpoint of several members)
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.errors import MedLensInputError
from models.inference import (
    MortalityPredictor,
    SepsisPredictor,
    XrayPredictor,
    add_predictor_arguments,
    cli_predictor,
)
from models.sepsis_io import iter_series_files, load_series_file
from models.sequence import PROB_EPS
from models.trust import SepsisAssessment, XrayAssessment
from models.xray_io import iter_image_files, load_xray_file

#: Columns of the CNN's CSV, in order (the first three as before issue 20).
CNN_COLUMNS = (
    "path",
    "probability",
    "label",
    "calibrated_probability",
    "prediction_set",
    "in_distribution",
    "ood_score",
    "ensemble_std",
)


def predict_images(predictor: XrayPredictor, source: Path, batch_size: int) -> list[tuple[str, XrayAssessment]]:
    """(path, assessment) for every readable image under ``source``; unreadable files are reported."""
    paths = list(iter_image_files(source))
    rows: list[tuple[str, XrayAssessment]] = []
    for start in tqdm(range(0, len(paths), batch_size), desc="cnn", unit="batch", disable=len(paths) < 2):
        names, images = [], []
        for path in paths[start : start + batch_size]:
            try:
                images.append(load_xray_file(path))
                names.append(str(path))
            except MedLensInputError as exc:
                print(f"skipped: {exc.message}", file=sys.stderr)
        rows.extend(zip(names, predictor.assess(images), strict=True))
    return rows


def csv_row(path: str, a: XrayAssessment, threshold: float) -> list[str]:
    """One row in :data:`CNN_COLUMNS` order."""
    return [
        path,
        f"{a.probability:.6f}",
        str(int(a.probability >= threshold)),
        f"{a.calibrated_probability:.6f}",
        "|".join(a.prediction_set),
        str(int(a.in_distribution)),
        f"{a.ood_score:.6f}",
        f"{a.spread:.6f}",
    ]


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
        for path, assessment in zip(chunk, predictor.assess([r.values for r in records]), strict=True):
            write_challenge_output(out_dir / path.name, assessment, predictor.threshold)
    return len(paths)


def predict_mortality(predictor: MortalityPredictor, source: Path, output: Path, batch_size: int) -> int:
    """``RecordID,probability,label`` (and ``calibrated_probability`` from a calibrated checkpoint) for every
    record file under ``source``, one row per stay: the 48th hour's risk, the stay's prediction."""
    from models.mortality_io import iter_record_files, load_record_file

    paths = list(iter_record_files(source))
    output.parent.mkdir(parents=True, exist_ok=True)
    calibrated = predictor.trust is not None
    with output.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("RecordID", "probability", "label", *(("calibrated_probability",) if calibrated else ())))
        for start in tqdm(range(0, len(paths), batch_size), desc=predictor.name, unit="batch"):
            records = []
            for path in paths[start : start + batch_size]:
                record = load_record_file(path, on_impossible="drop", require_series=False)
                for warning in record.warnings:
                    print(f"{path.name}: {warning}", file=sys.stderr)
                records.append(record)
            risk, calibrated_risk = predictor.assess_stays([predictor.model_values(r) for r in records])
            for i, record in enumerate(records):
                p = min(1.0 - PROB_EPS, max(PROB_EPS, float(risk[i])))
                row = [record.name, f"{p:.6f}", str(int(p >= predictor.threshold))]
                if calibrated_risk is not None:
                    row.append(f"{float(calibrated_risk[i]):.6f}")
                writer.writerow(row)
    return len(paths)


def write_challenge_output(path: Path, assessment: SepsisAssessment, threshold: float) -> None:
    """PhysioNet 2019 output: ``PredictedProbability|PredictedLabel`` (the scorer reads columns by name), then
    the calibrated risk and the fold members' spread where the checkpoint has them; one row per input hour.
    Probabilities stay strictly inside (0, 1) so no hour is dropped from the official ROC."""
    prob = np.clip(assessment.probability.astype(np.float64), PROB_EPS, 1.0 - PROB_EPS)
    header = ["PredictedProbability", "PredictedLabel"]
    columns = [[f"{p:.6f}" for p in prob], [str(int(p >= threshold)) for p in prob]]
    extra = {
        "CalibratedProbability": assessment.calibrated_probability,
        "Spread": assessment.member_std,
        "MemberMin": assessment.member_min,
        "MemberMax": assessment.member_max,
    }
    for name, values in extra.items():
        if values is not None:
            header.append(name)
            columns.append([f"{v:.6f}" for v in values.astype(np.float64)])
    lines = ["|".join(header), *("|".join(row) for row in zip(*columns, strict=True))]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.predict", description=__doc__.splitlines()[0])
    add_predictor_arguments(parser)
    parser.add_argument("--input", type=Path, required=True, help="image file or folder / folder of .psv")
    parser.add_argument("--output", type=Path, required=True, help="cnn, mortality-*: CSV file; sepsis models: folder")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=None, help="cnn: conformal miscoverage (default: stored)")
    args = parser.parse_args(argv)
    if not args.input.exists():
        parser.error(f"--input {args.input} does not exist")
    predictor = cli_predictor(parser, args)
    if isinstance(predictor, XrayPredictor):
        if predictor.trust is None:
            parser.error(
                f"{predictor.weights_dir} is not calibrated: run `python -m models.calibrate cnn "
                f"--weights {predictor.weights_dir}` first"
            )
        if args.alpha is not None:
            if not 0 < args.alpha < 1:
                parser.error("--alpha must lie in (0, 1)")
            predictor.alpha = args.alpha
        rows = predict_images(predictor, args.input, args.batch_size)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(CNN_COLUMNS)
            for path, assessment in rows:
                writer.writerow(csv_row(path, assessment, predictor.threshold))
        flagged = sum(not a.in_distribution for _, a in rows)
        print(
            f"{len(rows)} image(s) -> {args.output} (threshold {predictor.threshold:.4f}; "
            f"{flagged} out of distribution)",
            file=sys.stderr,
        )
        return 0
    if isinstance(predictor, MortalityPredictor):
        count = predict_mortality(predictor, args.input, args.output, max(1, args.batch_size * 4))
        print(f"{count} stay(s) -> {args.output} (threshold {predictor.threshold:.4f})", file=sys.stderr)
        return 0
    count = predict_series_dir(predictor, args.input, args.output, max(1, args.batch_size * 4))
    print(f"{count} record(s) -> {args.output}/ (threshold {predictor.threshold:.4f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
