"""ICU time series input: PhysioNet/CinC 2019 ``.psv`` files and CSV with the same column names.

One row per hour. Any subset of the feature columns, in any order; missing columns become
missing values (and are named in ``warnings``). Unknown columns, non-numeric cells (True / False
too) and physically impossible values are refused with a :class:`~models.errors.SeriesFormatError`
that names the column and row (or, with ``on_impossible="drop"``, set missing and named); so are
codes other than 0 / 1 (:data:`CODES`) and an ICULOS that is not one whole hour per row. A stay with
no measured value yet (the first hour of many stays) is scored, with a warning that says so. Size and
shape (bytes, lines, rows, header fields) are checked before pandas reads a file (:func:`_table`), for
the loader and :func:`deidentified` alike.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from models.errors import PayloadTooLargeError, SeriesFormatError, line_count, quoted, series_text, split_lines
from models.input_glossary import AGE_WORDS, FEMALE_MALE, YES_NO, InputGlossary, to_age_code

VITALS = ["HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2"]
LABS = [
    "BaseExcess", "HCO3", "FiO2", "pH", "PaCO2", "SaO2", "AST", "BUN", "Alkalinephos", "Calcium",
    "Chloride", "Creatinine", "Bilirubin_direct", "Glucose", "Lactate", "Magnesium", "Phosphate",
    "Potassium", "Bilirubin_total", "TroponinI", "Hct", "Hgb", "PTT", "WBC", "Fibrinogen", "Platelets",
]  # fmt: skip
DEMOGRAPHICS = ["Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS"]
MEASURED = VITALS + LABS  # 34 time-varying measurements
FEATURES = MEASURED + DEMOGRAPHICS  # 40 model inputs, in PhysioNet order
LABEL = "SepsisLabel"
#: the challenge's stated units where its data agree with them (tests/models/test_input_glossary.py checks each
#: lab's median in the shared stays against the unit's usual adult range). Left out: FiO2's stated "%" (the data
#: and this loader use a fraction, below), Lactate's stated "mg/dL" and Magnesium's "mmol/dL" (their medians,
#: about 2, are mmol/L and mg/dL values) and Calcium's "mg/dL" (some rows hold ionised calcium, about 1.1 mmol/L).
UNITS = {
    "HR": "beats/min", "O2Sat": "%", "Temp": "°C", "SBP": "mm Hg", "MAP": "mm Hg", "DBP": "mm Hg",
    "Resp": "breaths/min", "EtCO2": "mm Hg", "FiO2": "fraction", "Age": "years", "HospAdmTime": "hours",
    "ICULOS": "hours",
    "BaseExcess": "mmol/L", "HCO3": "mmol/L", "PaCO2": "mm Hg", "SaO2": "%", "AST": "IU/L", "BUN": "mg/dL",
    "Alkalinephos": "IU/L", "Chloride": "mmol/L", "Creatinine": "mg/dL", "Bilirubin_direct": "mg/dL",
    "Glucose": "mg/dL", "Phosphate": "mg/dL", "Potassium": "mmol/L", "Bilirubin_total": "mg/dL",
    "TroponinI": "ng/mL", "Hct": "%", "Hgb": "g/dL", "PTT": "s", "WBC": "×10³/µL", "Fibrinogen": "mg/dL",
    "Platelets": "×10³/µL",
}  # fmt: skip
#: The challenge's Age for 90 or older (its stays hold none from 90 to 99), which the models learnt: an age of 90
#: or more is read, and kept, as it (HIPAA's Safe Harbor aggregates ages over 89).
AGE_90_OR_OLDER = 100.0
#: the sepsis models' inputs (the challenge's columns) in words
GLOSSARY = InputGlossary(
    units=UNITS,
    names={
        "BaseExcess": "Base excess",
        "Alkalinephos": "Alkaline phosphatase",
        "Bilirubin_direct": "Direct bilirubin",
        "Bilirubin_total": "Total bilirubin",
        "TroponinI": "Troponin I",
        "Unit1": "Medical ICU (Unit1)",
        "Unit2": "Surgical ICU (Unit2)",
        "HospAdmTime": "Hospital admission, relative to ICU admission",  # the challenge: hospital minus ICU admit time
        "ICULOS": "Hours in the ICU",
    },
    codes={"Gender": FEMALE_MALE, "Unit1": YES_NO, "Unit2": YES_NO},
    at_least=AGE_WORDS,
)

#: Physically possible ranges (inclusive). Values outside cannot be a measurement of a living
#: patient in the challenge's units; every value in the PhysioNet 2019 training set B lies inside,
#: except FiO2 recorded in percent (1 < FiO2 <= 100), which is converted and reported.
LIMITS: dict[str, tuple[float, float]] = {
    "HR": (0, 350), "O2Sat": (0, 100), "Temp": (15, 50), "SBP": (0, 400), "MAP": (0, 400),
    "DBP": (0, 400), "Resp": (0, 150), "EtCO2": (0, 150), "BaseExcess": (-50, 50), "HCO3": (0, 80),
    "FiO2": (0, 1), "pH": (6.0, 8.5), "PaCO2": (0, 250), "SaO2": (0, 100), "AST": (0, 50000),
    "BUN": (0, 500), "Alkalinephos": (0, 10000), "Calcium": (0, 40), "Chloride": (30, 200),
    "Creatinine": (0, 100), "Bilirubin_direct": (0, 100), "Glucose": (0, 3000), "Lactate": (0, 50),
    "Magnesium": (0, 20), "Phosphate": (0, 40), "Potassium": (0, 25), "Bilirubin_total": (0, 100),
    "TroponinI": (0, 1000), "Hct": (0, 100), "Hgb": (0, 35), "PTT": (0, 500), "WBC": (0, 1000),
    "Fibrinogen": (0, 3000), "Platelets": (0, 5000), "Age": (0, 120), "Gender": (0, 1), "Unit1": (0, 1),
    "Unit2": (0, 1), "HospAdmTime": (-100000, 100), "ICULOS": (0, 100000), LABEL: (0, 1),
}  # fmt: skip

MAX_HOURS = 1000
#: Lines of a file, blank ones included, read before its rows are counted: a header and :data:`MAX_HOURS` rows with
#: room for blank lines between them (a file of a million blank lines is refused before it is split).
MAX_LINES = 4 * (MAX_HOURS + 1)
#: The longest stay the sepsis models learnt from: the highest ICULOS of the 7,417 stays of
#: /work/shared/data/sepsis/training (336 h, two weeks). A later hour is read with a warning: its risk is extrapolated.
MAX_TRAINED_ICULOS = 336
#: Coded columns: 0 or 1 (or missing); anything else (0.5, 2) is refused, in either ``on_impossible`` mode.
CODES: dict[str, dict[int, str]] = {
    "Gender": dict(FEMALE_MALE),
    "Unit1": dict(YES_NO),
    "Unit2": dict(YES_NO),
    LABEL: {0: "no sepsis", 1: "sepsis"},
}
MISSING_TOKENS = ["", "NaN", "nan", "NA", "N/A", "null", "None"]
MAX_BYTES = 20_000_000


@dataclass
class SepsisRecord:
    """One ICU stay. ``values``: (hours, 40) float32 in :data:`FEATURES` order, NaN = not measured."""

    values: np.ndarray
    name: str = "record"
    labels: np.ndarray | None = None  # (hours,) 0/1 when the file carries SepsisLabel
    warnings: list[str] = field(default_factory=list)

    @property
    def hours(self) -> int:
        return int(self.values.shape[0])

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.values, columns=FEATURES)


#: Columns read from a header: the 41 PhysioNet columns and room for a few extra ones that are refused by
#: name; a header of thousands is a wrong separator or a hostile file (checked before parsing).
MAX_COLUMNS = 200


def _duplicates(names: list[str]) -> list[str]:
    return sorted(name for name, n in Counter(names).items() if n > 1)


@dataclass(frozen=True)
class _Table:
    """A file that passed :func:`_table`: its text, separator and header names (quotes and spaces stripped)."""

    text: str
    sep: str
    names: list[str]


def _table(data: bytes, name: str) -> _Table:
    """The checks on size and shape before pandas reads a file, for :func:`parse_series_bytes` and
    :func:`deidentified` alike: at most :data:`MAX_BYTES` bytes, :data:`MAX_LINES` lines, :data:`MAX_HOURS` rows
    and :data:`MAX_COLUMNS` header fields, no duplicated column. Lines are split as the CSV parser splits them
    (``\\r\\n``, ``\\r``, ``\\n``) and, as it does, lines of spaces and tabs only are skipped; a line of other
    white space only (a form feed: the parser reads it as a row) is refused. A header field may be quoted only as
    a whole (``"HR"``), so that the header is that one line and its fields are counted as the parser counts them
    (a quote left open would run the header on into the following lines)."""
    if len(data) > MAX_BYTES:
        raise PayloadTooLargeError(f"{name} is {len(data):,} bytes; the limit is {MAX_BYTES:,}.")
    text = series_text(data, name, "a PhysioNet .psv or a CSV")
    n_lines = line_count(text)
    if n_lines > MAX_LINES:
        raise PayloadTooLargeError(
            f"{name} has {n_lines:,} lines; a stay is a header and at most {MAX_HOURS:,} hourly rows. Remove the "
            "blank lines, or upload one stay per file."
        )
    numbered = [(i + 1, ln) for i, ln in enumerate(split_lines(text)) if ln.strip(" \t")]
    invisible = next(((n, ln) for n, ln in numbered if not ln.strip()), None)
    if invisible is not None:  # the parser would read it as an hour of nothing measured
        raise SeriesFormatError(
            f"{name}: line {invisible[0]} holds only {quoted(invisible[1])} (a form feed, vertical tab or other "
            "invisible separator); remove it: each line is the header or one hour's row."
        )
    lines = [ln for _, ln in numbered]
    if not lines:
        raise SeriesFormatError(f"{name} is empty: it needs a header row and one row per hour.")
    if len(lines) - 1 > MAX_HOURS:
        raise PayloadTooLargeError(f"{name} has {len(lines) - 1:,} rows; at most {MAX_HOURS:,} hours are accepted.")
    header = lines[0]
    sep = _separator(header)
    if sep == "," and ";" in header and "," not in header:
        raise SeriesFormatError(
            f"{name}: the header is separated by semicolons (as spreadsheets set to a European locale export CSV); "
            "export it with commas between columns and points as the decimal mark, or as a PhysioNet .psv ('|')."
        )
    if header.count(sep) + 1 > MAX_COLUMNS:
        raise SeriesFormatError(
            f"{name}: the header has {header.count(sep) + 1:,} columns; a PhysioNet 2019 record has "
            f"{len(FEATURES) + 1} (at most {MAX_COLUMNS} are read). Check the separator ('|' or ',') and the "
            "header row."
        )
    fields = [c.strip() for c in header.split(sep)]
    for i, cell in enumerate(fields):
        if '"' in cell and not (len(cell) >= 2 and cell[0] == cell[-1] == '"' and '"' not in cell[1:-1]):
            raise SeriesFormatError(
                f'{name}: column {i + 1} of the header, {quoted(cell)}, has a stray quote ("); write the column '
                "names without quotes (or quote each whole name)."
            )
    # a row may end in one separator more than the header (pandas drops it); more is refused by the parser, after
    # it made a column of each field: a row of millions of separators took minutes and gigabytes
    most = header.count(sep) + 1
    wide = next(((n, ln) for n, ln in numbered[1:] if ln.count(sep) > most), None)
    if wide is not None:
        raise SeriesFormatError(
            f"{name} could not be parsed as a table: line {wide[0]} has {wide[1].count(sep) + 1:,} fields and the "
            f"header {most}; give each row at most the header's columns (an empty cell for a missing value)."
        )
    names = [c.strip('"').strip() for c in fields]
    duplicated = _duplicates([c for c in names if c])  # nameless columns: _without_empty_nameless_columns
    if duplicated:
        raise SeriesFormatError(
            f"{name}: column(s) {', '.join(quoted(c) for c in duplicated[:10])} appear more than once."
        )
    return _Table(text=text, sep=sep, names=names)


def _read(table: _Table, name: str, *, as_text: bool = False) -> pd.DataFrame:
    """``table`` read by pandas (a row with more fields than the header is refused), its blank-named empty columns
    dropped and its column names stripped. ``as_text``: every cell as its text (:data:`MISSING_TOKENS` too), for
    :func:`deidentified` to write back; else :data:`MISSING_TOKENS` read as missing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.StringIO(table.text),
                sep=table.sep,
                keep_default_na=False,
                skip_blank_lines=True,
                index_col=False,
                dtype=object if as_text else None,  # dtype=str refuses a row's trailing separator
                na_values=None if as_text else MISSING_TOKENS,
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as exc:
        raise SeriesFormatError(f"{name} could not be parsed as a table ({str(exc)[:200]}).") from exc
    frame = _without_empty_nameless_columns(frame, table.names, name)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def parse_series_bytes(
    data: bytes,
    filename: str | None = None,
    *,
    min_hours: int = 1,
    on_impossible: Literal["reject", "drop"] = "reject",
) -> SepsisRecord:
    """One stay (a PhysioNet ``.psv`` or a CSV) -> :class:`SepsisRecord`."""
    name = filename or "upload"
    frame = _read(_table(data, name), name)
    return record_from_frame(frame, name, min_hours=min_hours, on_impossible=on_impossible)


def _separator(header: str) -> str:
    """The separator a header row uses: '|' (PhysioNet), a tab, else ','."""
    return "|" if "|" in header else ("\t" if "\t" in header else ",")


def _without_empty_nameless_columns(frame: pd.DataFrame, names: list[str], name: str) -> pd.DataFrame:
    """``frame`` without the columns whose header is blank and whose cells are all empty (the trailing separators a
    spreadsheet leaves); a blank-headed column that holds a value is refused, by its position. Empty: missing, or
    one of :data:`MISSING_TOKENS` (a frame read as text, by :func:`deidentified`, keeps them as text)."""
    blank = [i for i, c in enumerate(names) if not c and i < frame.shape[1]]
    for i in blank:
        column = frame.iloc[:, i]
        if (column.notna() & ~column.isin(MISSING_TOKENS)).any():
            raise SeriesFormatError(
                f"{name}: column {i + 1} has no name in the header but holds values; name it (PhysioNet 2019 "
                "names) or remove it."
            )
    return frame.drop(columns=frame.columns[blank]) if blank else frame


def record_from_frame(
    frame: pd.DataFrame,
    name: str,
    *,
    min_hours: int = 1,
    on_impossible: Literal["reject", "drop"] = "reject",
) -> SepsisRecord:
    columns = list(frame.columns)
    duplicated = _duplicates(columns)
    if duplicated:
        raise SeriesFormatError(
            f"{name}: column(s) {', '.join(quoted(c) for c in duplicated[:10])} appear more than once."
        )
    known = set(FEATURES) | {LABEL}
    unknown = [c for c in columns if c not in known]
    if unknown:
        by_case = {k.lower(): k for k in known}
        meant = [f"{by_case[c.lower()]!r} for {c!r}" for c in unknown if c.lower() in by_case]  # c: a known length
        raise SeriesFormatError(
            f"{name}: unknown column(s) {', '.join(quoted(c) for c in unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}. Use the PhysioNet 2019 names (HR, O2Sat, Temp, SBP, "
            "MAP, DBP, Resp, ..., Age, Gender, ICULOS; SepsisLabel optional), separated by '|' or ','"
            + (f"; names are case-sensitive: {', '.join(meant[:10])}." if meant else ".")
        )
    present = [c for c in FEATURES if c in columns]
    if not present:
        raise SeriesFormatError(f"{name}: none of the PhysioNet 2019 feature columns is present.")
    hours = len(frame)
    if hours < max(1, min_hours):
        raise SeriesFormatError(
            f"{name} has {hours} hourly row(s); at least {max(1, min_hours)} are needed for a risk trajectory."
        )
    if hours > MAX_HOURS:
        raise PayloadTooLargeError(f"{name} has {hours:,} rows; at most {MAX_HOURS:,} hours are accepted.")

    warnings: list[str] = []
    values = np.full((hours, len(FEATURES)), np.nan, dtype=np.float32)  # (hours, 40)
    labels: np.ndarray | None = None
    for col in [*present, *([LABEL] if LABEL in columns else [])]:
        arr = _numeric_column(frame[col], col, name)
        if np.isinf(arr).any():
            row = int(np.flatnonzero(np.isinf(arr))[0])
            raise SeriesFormatError(f"{name}: column {col} row {row + 1} is infinite.")
        if col in CODES:
            _check_codes(col, arr, name)
        arr = _check_limits(col, arr, name, on_impossible, warnings)
        if col == "ICULOS":
            _check_whole_hours(arr, name)
        if col == "Age":
            arr = _aged_90_or_older(arr, warnings)
        if col == LABEL:
            labels = np.nan_to_num(arr, nan=0.0).astype(np.int64)
        else:
            values[:, FEATURES.index(col)] = arr
    both = (values[:, FEATURES.index("Unit1")] == 1) & (values[:, FEATURES.index("Unit2")] == 1)
    if both.any():
        raise SeriesFormatError(
            f"{name}: row {int(np.flatnonzero(both)[0]) + 1} has Unit1 = 1 and Unit2 = 1; a stay is in one unit, "
            "medical (Unit1) or surgical (Unit2): set the other to 0, or leave both empty if unknown."
        )
    if np.isnan(values[:, : len(MEASURED)]).all():
        # an hourly early warning answers from the first hour, often before any measurement: scored, and said
        warnings.append(
            f"{name} holds no measured value yet (every vital sign and lab is empty"
            + (" or was impossible)" if on_impossible == "drop" else ")")
            + ": the risk rests on age, sex, unit and the hours in the ICU alone."
        )
    absent = [c for c in FEATURES if c not in columns]
    if absent:
        warnings.append(f"Column(s) not in the file, treated as never measured: {', '.join(absent)}.")
    iculos = values[:, FEATURES.index("ICULOS")]
    if np.isnan(iculos).all():
        values[:, FEATURES.index("ICULOS")] = np.arange(1, hours + 1, dtype=np.float32)
    else:
        _check_hour_order(iculos, name, warnings)
        if np.nanmax(iculos) > MAX_TRAINED_ICULOS:
            warnings.append(
                f"ICULOS reaches {np.nanmax(iculos):g} hours; the models learnt from stays of at most "
                f"{MAX_TRAINED_ICULOS} hours, so the risk after hour {MAX_TRAINED_ICULOS} is extrapolated (less "
                "reliable)."
            )
    return SepsisRecord(values=values, name=name, labels=labels, warnings=warnings)


def _check_hour_order(iculos: np.ndarray, name: str, warnings: list[str]) -> None:
    """The models read row k as the stay's k-th hour. ICULOS (hours in the ICU) that does not rise from row to
    row is a file of unsorted rows or of more than one stay, and one that rises by fewer hours than rows (a blank
    ICULOS between) repeats an hour: both refused. One that skips hours is read as given, with a warning (every stay
    of the 2019 challenge data rises by exactly one hour per row)."""
    rows = np.flatnonzero(~np.isnan(iculos))  # (known,) row indices
    known = iculos[rows]
    steps = np.diff(known)
    if (steps <= 0).any():
        at = int(np.flatnonzero(steps <= 0)[0])
        raise SeriesFormatError(
            f"{name}: ICULOS goes from {known[at]:g} at row {rows[at] + 1} to {known[at + 1]:g} at row "
            f"{rows[at + 1] + 1}; rows must be one stay's hours in time order (one stay per file)."
        )
    skipped = steps - np.diff(rows)
    if (skipped < 0).any():
        at = int(np.flatnonzero(skipped < 0)[0])
        raise SeriesFormatError(
            f"{name}: ICULOS goes from {known[at]:g} at row {rows[at] + 1} to {known[at + 1]:g} at row "
            f"{rows[at + 1] + 1}: {int(rows[at + 1] - rows[at])} rows for {steps[at]:g} hour(s), so an hour repeats; "
            "rows must be one stay's hours, one row per hour (one stay per file)."
        )
    if (skipped > 0).any():
        at = int(np.flatnonzero(skipped > 0)[0])
        warnings.append(
            f"ICULOS skips from {known[at]:g} to {known[at + 1]:g} at row {rows[at + 1] + 1}: the models read rows "
            f"as consecutive hours, so {int(skipped.sum()):g} hour(s) without a row are not accounted for."
        )


def _numeric_column(series: pd.Series, col: str, name: str) -> np.ndarray:
    """(hours,) float64 with NaN for missing; a non-numeric cell is named by column and row (True / False too,
    which pandas reads as a boolean column)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        raise SeriesFormatError(
            f"{name}: column {col} row 1 holds {bool(series.iloc[0])} (true / false), which is not a number (use "
            "0 / 1 for a code, NaN or an empty cell for a missing value)."
        )
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64)
    raw = series.astype(str).str.strip()
    missing = series.isna() | raw.isin(MISSING_TOKENS)
    numbers = pd.to_numeric(raw.where(~missing), errors="coerce")
    bad = numbers.isna() & ~missing
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SeriesFormatError(
            f"{name}: column {col} row {row + 1} holds {quoted(raw.iloc[row])}, which is not a number "
            "(use NaN or leave the cell empty for a missing value)."
        )
    return numbers.to_numpy(dtype=np.float64)


def _check_codes(col: str, arr: np.ndarray, name: str) -> None:
    """A coded column (:data:`CODES`) holds 0, 1 or missing; anything else is refused, naming the row."""
    bad = ~np.isnan(arr) & (arr != 0) & (arr != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        codes = " or ".join(f"{k} ({v})" for k, v in CODES[col].items())
        raise SeriesFormatError(
            f"{name}: {col} = {arr[row]:g} at row {row + 1} is not a valid code; use {codes}, or leave it empty "
            "for unknown."
        )


def _check_whole_hours(iculos: np.ndarray, name: str) -> None:
    """ICULOS counts whole hours (one row per hour); a fraction is refused, naming the row."""
    bad = ~np.isnan(iculos) & (iculos != np.round(iculos))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SeriesFormatError(
            f"{name}: ICULOS = {iculos[row]:g} at row {row + 1} is not a whole number of hours; ICULOS counts the "
            "stay's hours, one row per hour (1, 2, 3, ...)."
        )


def _aged_90_or_older(ages: np.ndarray, warnings: list[str]) -> np.ndarray:
    """(hours,) ages with 90 or older written as :data:`AGE_90_OR_OLDER`, as the challenge coded them (and the
    models learnt them; it has no age from 90 to 99)."""
    older = ~np.isnan(ages) & (ages >= 90) & (ages != AGE_90_OR_OLDER)
    if not older.any():
        return ages
    warnings.append(f"An age of 90 or more was read as {AGE_90_OR_OLDER:g}, the challenge's code for 90 or older.")
    return np.where(older, AGE_90_OR_OLDER, ages)


def deidentified(data: bytes) -> bytes:
    """A stay (one that :func:`parse_series_bytes` reads) as a case keeps it: an age of 90 or more written as
    :data:`AGE_90_OR_OLDER` (HIPAA's Safe Harbor aggregates ages over 89). The bytes themselves when no age
    changes; else the table as the loader parses it (the same separator and cells, quoted cells and line breaks
    in them included, the blank-named empty columns the loader drops dropped), written again with the code in place
    of each such age. The same model input: the loader reads such an age as the code too. A file the loader refuses
    before or while pandas reads it (size, shape, a ragged row) is refused with the same error."""
    table = _table(data, "stay")
    frame = _read(table, "stay", as_text=True)
    if list(frame.columns).count("Age") != 1:
        return data  # no age
    aged = (
        frame["Age"]
        .map(lambda cell: isinstance(cell, str) and to_age_code(cell, AGE_90_OR_OLDER, LIMITS["Age"][1]))
        .astype(bool)
    )
    if not aged.any():
        return data
    frame.loc[aged, "Age"] = f"{AGE_90_OR_OLDER:g}"
    return str(frame.to_csv(sep=table.sep, index=False, lineterminator="\n")).encode("utf-8")


def _check_limits(col: str, arr: np.ndarray, name: str, on_impossible: str, warnings: list[str]) -> np.ndarray:
    lo, hi = LIMITS[col]
    if col == "FiO2":
        percent = arr > 1.0
        percent &= arr <= 100.0
        if percent.any():
            arr = np.where(percent, arr / 100.0, arr)
            warnings.append(f"FiO2 above 1 in {int(percent.sum())} row(s) read as percent and divided by 100.")
    outside = ~np.isnan(arr) & ((arr < lo) | (arr > hi))
    if not outside.any():
        return arr
    rows = np.flatnonzero(outside)
    unit = f" {UNITS[col]}" if col in UNITS else ""
    message = (
        f"{name}: {col} = {arr[rows[0]]:g}{unit} at row {rows[0] + 1} is impossible "
        f"(allowed {lo:g} to {hi:g}{unit}); {len(rows)} row(s) affected."
    )
    if on_impossible == "reject":
        raise SeriesFormatError(message + " Correct or blank those cells and upload again.")
    warnings.append(message + " Those cells were treated as missing.")
    return np.where(outside, np.nan, arr)


def load_series_file(path: str | Path, **kwargs: object) -> SepsisRecord:
    path = Path(path)
    return parse_series_bytes(path.read_bytes(), path.name, **kwargs)  # type: ignore[arg-type]


#: the suffixes of the record files a folder of training stays holds
SERIES_SUFFIXES = (".psv", ".csv")


def iter_series_files(root: str | Path, suffixes: Collection[str] = SERIES_SUFFIXES) -> Iterator[Path]:
    """``root`` itself when it is a file, else its files ending in one of ``suffixes`` (any case), sorted by name;
    ``models.predict`` passes every suffix serving reads a sepsis record from (the catalogue's)."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    shown = "/".join(suffixes)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist: pass a {shown} file or a folder of them.")
    yield from sorted(p for p in root.iterdir() if p.suffix.lower() in suffixes)


def load_labelled_dir(root: str | Path, limit: int | None = None) -> list[SepsisRecord]:
    """Every labelled stay in a folder (the challenge's training layout), impossible values dropped."""
    from tqdm import tqdm

    paths = list(iter_series_files(root))[:limit]
    if not paths:
        raise FileNotFoundError(f"No .psv files in {root}.")
    records = [load_series_file(p, on_impossible="drop") for p in tqdm(paths, desc="read", unit="stay")]
    missing = [r.name for r in records if r.labels is None]
    if missing:
        raise SeriesFormatError(f"{len(missing)} file(s) have no SepsisLabel column, e.g. {missing[0]}.")
    return records
