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
       ``Spread|MemberMin|MemberMax`` (the fold members' spread, a checkpoint of several members); a .csv or
       .txt input's answer (serving reads those too) is named <stem>.psv. Two records of one stem (p1.csv and
       p1.psv) are refused before any prediction, and the folder's other files are named on stderr as ignored

A file that cannot be read is named on stderr and left out; the others are predicted. A mortality RecordID
that two files share is named on stderr (both rows are written). Exit status: 0 every file predicted, 1 some left
out, 2 nothing to predict (no input file, none readable: nothing is written) or a usage error: an output that
cannot be written or would overwrite an input, checked before any prediction. Every output file is written whole
to a temporary file beside it that then replaces it. Text cells that a spreadsheet would run as a formula (a file
name starting with "=") are quoted.
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

from models.catalogue import entry
from models.cli_args import open_fraction, output_problem, positive_int, write_atomically
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
            print(f"skipped: {named(path, exc.message)}", file=sys.stderr)
            tally.skipped += 1
        except OSError as exc:
            print(f"skipped: {path}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
            tally.skipped += 1
    return loaded


def named(path: Path, message: str) -> str:
    """``message`` about the file at ``path``, which it names (prefixed with the path unless it names it)."""
    return message if path.name in message else f"{path}: {message}"


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
    """Every record under ``source`` that serving would read (.psv / .csv / .txt, the catalogue's suffixes) ->
    ``out_dir/<stem>.psv`` in the challenge's format; -> the number of records predicted (0: nothing written). The
    folder's other files are named on stderr as ignored."""
    tally = Tally() if tally is None else tally
    paths = series_inputs(source, predictor.entry.task.file_types)
    _say_ignored(source, paths, predictor.entry.task.file_types)
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
    file_of: dict[str, Path] = {}  # RecordID -> the first file that held it
    for start in tqdm(range(0, len(paths), batch_size), desc=predictor.name, unit="batch"):
        loaded = _read(paths[start : start + batch_size], _stay, tally)
        if not loaded:
            continue
        records = [record for _, record in loaded]
        for path, record in loaded:
            first = file_of.setdefault(record.name, path)
            if first != path:
                print(
                    f"warning: {path.name} holds RecordID {record.name}, as {first.name} does: two rows of the CSV "
                    "name that stay",
                    file=sys.stderr,
                )
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
    def write(temporary: Path) -> None:
        with temporary.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)

    write_atomically(output, write)


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
    text = "\n".join(["|".join(header), *("|".join(row) for row in zip(*columns, strict=True))]) + "\n"
    write_atomically(path, lambda temporary: temporary.write_text(text))


def series_inputs(source: Path, suffixes: Sequence[str]) -> list[Path]:
    """The record files a sepsis model predicts under ``source``: ``source`` itself, or its files ending in one
    of ``suffixes``."""
    return [p for p in iter_series_files(source, suffixes) if p.is_file()]


def _say_ignored(source: Path, inputs: list[Path], suffixes: Sequence[str]) -> None:
    """Name on stderr the files of the folder ``source`` that are not predicted (hidden ones aside)."""
    if not source.is_dir():
        return
    read = set(inputs)
    ignored = sorted(p.name for p in source.iterdir() if p.is_file() and p not in read and not p.name.startswith("."))
    if ignored:
        shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        print(f"ignored: {len(ignored)} file(s) that are not {'/'.join(suffixes)}: {shown}", file=sys.stderr)


def _input_files(kind: str, source: Path, suffixes: Sequence[str]) -> list[Path]:
    """What a model of input ``kind`` reads under ``source`` (before anything is read)."""
    if kind == "image":
        return list(iter_image_files(source))
    if kind == "series":
        return series_inputs(source, suffixes)
    from models.mortality_io import iter_record_files

    return list(iter_record_files(source))


def _check_output(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Before the model is loaded: an output that cannot be written, that would overwrite an input, or (sepsis) two
    records whose answers would share a file are usage errors."""
    task = entry(args.model).task
    folder = task.input_kind == "series"  # a mortality model answers per stay, in one CSV as the CNN does
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
    files = _input_files(task.input_kind, args.input, task.file_types)
    if not folder and output in {p.resolve() for p in files}:
        parser.error(f"--output {args.output} is one of the input files: the answers would overwrite it")
    if folder:
        by_stem: dict[str, list[str]] = {}
        for path in files:
            by_stem.setdefault(path.stem, []).append(path.name)
        shared = [names for names in by_stem.values() if len(names) > 1]
        if shared:
            said = "; ".join(" and ".join(names) + f" -> {Path(names[0]).stem}.psv" for names in shared[:5])
            more = f" (and {len(shared) - 5} more)" if len(shared) > 5 else ""
            parser.error(
                f"--input {args.input}: records whose answers would be written to one file: {said}{more}. Rename "
                "one of each, or predict them in separate runs"
            )
    problem = output_problem(args.output, folder=folder)
    if problem is not None:
        parser.error(f"--output: {problem}")


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
    parser.add_argument(
        "--alpha", type=open_fraction, default=None, help="cnn: conformal miscoverage in (0, 1) (default: stored)"
    )
    args = parser.parse_args(argv)
    if args.alpha is not None and entry(args.model).task.input_kind != "image":
        parser.error(f"--alpha applies to the cnn's conformal sets; {args.model} has none")
    if not args.input.exists():
        parser.error(f"--input {args.input} does not exist")
    _check_output(parser, args)
    predictor = cli_predictor(parser, args)
    tally = Tally()
    if isinstance(predictor, XrayPredictor):
        if predictor.trust is None:
            parser.error(
                f"{predictor.weights_dir} is not calibrated: run `python -m models.calibrate cnn "
                f"--weights {predictor.weights_dir}` first"
            )
        if args.alpha is not None:
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
