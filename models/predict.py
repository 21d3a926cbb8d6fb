"""Batch prediction with the default (or given) weights.

python -m models.predict cnn --input FILE_OR_DIR --output preds.csv [--alpha 0.1]
    -> CSV ``path,probability,label,calibrated_probability,prediction_set,in_distribution,ood_score,ensemble_std,
       synthetic`` (probability of pneumonia; label 1 = PNEUMONIA at the operating threshold, the raw model label,
       to be withheld where in_distribution is 0; prediction_set like ``NORMAL|PNEUMONIA``; ensemble_std the
       standard deviation of an ensemble's members' probabilities, 0 for one network; see docs/trust.md;
       synthetic 1 for an image that carries the synthetic mark, as serving flags it: generated, not a patient)
python -m models.predict mortality-lstm|mortality-transformer --input DIR_OF_RecordID.txt --output preds.csv
    -> CSV ``RecordID,probability,label`` (the model's risk of in-hospital death after the first 48 hours, its
       ranking score; label 1 at the model's threshold), then ``calibrated_probability`` (a calibrated checkpoint:
       the risk as a probability to read), one row per stay; impossible values are dropped and named on stderr
python -m models.predict lstm|transformer --input DIR --output OUTDIR
    -> for every ``*.psv`` in DIR, OUTDIR/<same name> with ``PredictedProbability|PredictedLabel`` (the
       challenge's columns, first), then ``CalibratedProbability`` (a calibrated checkpoint) and
       ``Spread|MemberMin|MemberMax`` (the fold members' spread, a checkpoint of several members); a .csv
       input's answer is named <stem>.psv

A file that cannot be read is named on stderr and left out; the others are predicted. Exit status: 0 every
file predicted, 1 some left out, 2 nothing to predict (no input file, none readable: nothing is written) or a
usage error. Text cells that a spreadsheet would run as a formula (a file name starting with "=") are quoted.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from tqdm import tqdm

from models.cli_args import positive_int
from models.errors import MedLensInputError
from models.inference import (
    MortalityPredictor,
    SepsisPredictor,
    XrayPredictor,
    add_predictor_arguments,
    cli_predictor,
)
from models.sepsis_io import SepsisRecord, iter_series_files, load_series_file
from models.sequence import PROB_EPS
from models.spreadsheet import safe_cell
from models.trust import SepsisAssessment, XrayAssessment
from models.xray_io import iter_image_files, load_xray_file

if TYPE_CHECKING:  # models.mortality_io is imported only when a mortality model runs (_stay, predict_mortality)
    from models.mortality_io import MortalityRecord

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
    "synthetic",
)


T = TypeVar("T")


@dataclass
class Tally:
    """Input files found, and those left out because they could not be read."""

    found: int = 0
    skipped: int = 0

    @property
    def predicted(self) -> int:
        return self.found - self.skipped

    def said(self) -> str:
        return f"; {self.skipped} of {self.found} file(s) left out (see above)" if self.skipped else ""

    def status(self) -> int:
        return 0 if not self.skipped else 1


def _read(paths: list[Path], load: Callable[[Path], T], tally: Tally) -> list[tuple[Path, T]]:
    """Each path's loaded input; one that cannot be read is named on stderr, counted and left out."""
    loaded: list[tuple[Path, T]] = []
    for path in paths:
        try:
            loaded.append((path, load(path)))
        except MedLensInputError as exc:
            print(f"skipped: {exc.message}", file=sys.stderr)
            tally.skipped += 1
        except OSError as exc:
            print(f"skipped: {path}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
            tally.skipped += 1
    return loaded


def predict_images(
    predictor: XrayPredictor, source: Path, batch_size: int, tally: Tally | None = None
) -> list[tuple[str, bool, XrayAssessment]]:
    """(path, synthetic, assessment) for every readable image under ``source``; unreadable files are reported.
    ``synthetic``: the image carries the synthetic mark (in MedLens's form or not), the check serving flags
    ``synthetic`` by."""
    tally = Tally() if tally is None else tally
    paths = list(iter_image_files(source))
    tally.found += len(paths)
    rows: list[tuple[str, bool, XrayAssessment]] = []
    for start in tqdm(range(0, len(paths), batch_size), desc="cnn", unit="batch", disable=len(paths) < 2):
        loaded = _read(paths[start : start + batch_size], load_xray_file, tally)
        assessed = predictor.assess([image for _, image in loaded]) if loaded else []
        for (path, image), a in zip(loaded, assessed, strict=True):
            rows.append((str(path), image.synthetic_mark is not None, a))
    return rows


def csv_row(path: str, synthetic: bool, a: XrayAssessment, threshold: float) -> list[str]:
    """One row in :data:`CNN_COLUMNS` order."""
    return [
        safe_cell(path),
        f"{a.probability:.6f}",
        str(int(a.probability >= threshold)),
        f"{a.calibrated_probability:.6f}",
        "|".join(a.prediction_set),
        str(int(a.in_distribution)),
        f"{a.ood_score:.6f}",
        f"{a.spread:.6f}",
        str(int(synthetic)),
    ]


def _say_warnings(path: Path, warnings: Iterable[str]) -> None:
    """What the loader dropped or doubted in a record (impossible values), on stderr by its file."""
    for warning in warnings:
        print(f"{path.name}: {warning}", file=sys.stderr)


def _series(path: Path) -> SepsisRecord:
    record = load_series_file(path, on_impossible="drop")
    _say_warnings(path, record.warnings)
    return record


def _stay(path: Path) -> MortalityRecord:
    from models.mortality_io import load_record_file

    record = load_record_file(path, on_impossible="drop", require_series=False)
    _say_warnings(path, record.warnings)
    return record


def predict_series_dir(
    predictor: SepsisPredictor, source: Path, out_dir: Path, batch_size: int, tally: Tally | None = None
) -> int:
    """Every .psv / .csv record under ``source`` -> ``out_dir/<stem>.psv`` in the challenge's format; -> the
    number of records predicted (0: nothing written)."""
    tally = Tally() if tally is None else tally
    paths = [p for p in iter_series_files(source) if p.is_file()]
    tally.found += len(paths)
    for start in tqdm(range(0, len(paths), batch_size), desc=predictor.name, unit="batch"):
        loaded = _read(paths[start : start + batch_size], _series, tally)
        if not loaded:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        assessed = predictor.assess([record.values for _, record in loaded])
        for (path, _), assessment in zip(loaded, assessed, strict=True):
            write_challenge_output(out_dir / f"{path.stem}.psv", assessment, predictor.threshold)
    return tally.predicted


def predict_mortality(
    predictor: MortalityPredictor, source: Path, output: Path, batch_size: int, tally: Tally | None = None
) -> int:
    """``RecordID,probability,label`` (and ``calibrated_probability`` from a calibrated checkpoint) for every
    readable record file under ``source``, one row per stay: the 48th hour's risk, the stay's prediction. The
    CSV is written once every record is read (0 predicted: nothing is written, an older file stays)."""
    from models.mortality_io import iter_record_files

    tally = Tally() if tally is None else tally
    paths = list(iter_record_files(source))
    tally.found += len(paths)
    calibrated = predictor.trust is not None
    rows: list[list[str]] = []
    for start in tqdm(range(0, len(paths), batch_size), desc=predictor.name, unit="batch"):
        records = [record for _, record in _read(paths[start : start + batch_size], _stay, tally)]
        if not records:
            continue
        risk, calibrated_risk = predictor.assess_stays([predictor.model_values(r) for r in records])
        for i, record in enumerate(records):
            p = min(1.0 - PROB_EPS, max(PROB_EPS, float(risk[i])))
            row = [safe_cell(record.name), f"{p:.6f}", str(int(p >= predictor.threshold))]
            if calibrated_risk is not None:
                row.append(f"{float(calibrated_risk[i]):.6f}")
            rows.append(row)
    if rows:
        _write_csv(
            output, ("RecordID", "probability", "label", *(("calibrated_probability",) if calibrated else ())), rows
        )
    return len(rows)


def _write_csv(output: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


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


def _check_output(parser: argparse.ArgumentParser, args: argparse.Namespace, folder: bool) -> None:
    """Before any prediction: an output that cannot be written, or that would overwrite the input, is a usage
    error."""
    output, source = args.output.resolve(), args.input.resolve()
    if folder:
        if output.is_file():
            parser.error(f"--output {args.output} is a file; this model writes one answer per record into a folder")
        inputs = source if source.is_dir() else source.parent
        if output == inputs:
            parser.error(f"--output {args.output} is the input folder: the answers would overwrite the records")
    elif output.is_dir():
        parser.error(
            f"--output {args.output} is a folder; this model writes one CSV file (e.g. {args.output}/preds.csv)"
        )


def _finish(count: int, tally: Tally, what: str, output: str, threshold: float, more: str = "") -> int:
    if not tally.found:
        print("error: no input file to predict (see --help for the files each model reads)", file=sys.stderr)
        return 2
    if not count:
        print(f"error: none of the {tally.found} input file(s) could be read; nothing was written", file=sys.stderr)
        return 2
    print(f"{count} {what} -> {output} (threshold {threshold:.4f}{more}){tally.said()}", file=sys.stderr)
    return tally.status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.predict",
        description=__doc__.splitlines()[0],
        epilog="Exit status: 0 every file predicted, 1 some left out (named on stderr), 2 nothing to predict.",
    )
    add_predictor_arguments(parser)
    parser.add_argument("--input", type=Path, required=True, help="image file or folder / folder of .psv")
    parser.add_argument("--output", type=Path, required=True, help="cnn, mortality-*: CSV file; sepsis models: folder")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--alpha", type=float, default=None, help="cnn: conformal miscoverage (default: stored)")
    args = parser.parse_args(argv)
    if not args.input.exists():
        parser.error(f"--input {args.input} does not exist")
    predictor = cli_predictor(parser, args)
    # a mortality predictor is a sepsis one that answers per stay: one CSV
    _check_output(parser, args, folder=not isinstance(predictor, XrayPredictor | MortalityPredictor))
    tally = Tally()
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
        rows = predict_images(predictor, args.input, args.batch_size, tally)
        if rows:
            _write_csv(args.output, CNN_COLUMNS, (csv_row(*row, predictor.threshold) for row in rows))
        flagged = sum(not a.in_distribution for _, _, a in rows)
        more = f"; {flagged} out of distribution"
        return _finish(len(rows), tally, "image(s)", str(args.output), predictor.threshold, more)
    if isinstance(predictor, MortalityPredictor):
        count = predict_mortality(predictor, args.input, args.output, args.batch_size * 4, tally)
        return _finish(count, tally, "stay(s)", str(args.output), predictor.threshold)
    count = predict_series_dir(predictor, args.input, args.output, args.batch_size * 4, tally)
    return _finish(count, tally, "record(s)", f"{args.output}/", predictor.threshold)


if __name__ == "__main__":
    raise SystemExit(main())
