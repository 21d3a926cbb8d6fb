"""ICU stays of the PhysioNet/CinC 2012 in-hospital mortality challenge: one long-format file per stay.

A record (``RecordID.txt``, or a CSV with the same header from another tool) holds rows
``Time,Parameter,Value``: ``Time`` is ``HH:MM`` since ICU admission (the first 48 hours), ``Parameter`` one
of the six descriptors (RecordID, Age, Gender, Height, ICUType, Weight; recorded at 00:00, -1 = unknown)
or one of the 37 time series (:data:`TIME_SERIES`; -1 = missing). The first ``Weight`` row at 00:00 is
the admission-weight descriptor (``Weight0``); later ``Weight`` rows are the weight time series.

:func:`parse_record_bytes` bins a record into an hourly grid (:data:`HOURS` x :data:`COLUMNS`): hour
``h`` holds the observations with ``h * 60 <= minutes < (h + 1) * 60`` (hour 47 also takes 48:00);
several values of one parameter in one hour are averaged, except ``Urine`` (volume per interval), which
is summed. Descriptors are repeated on every hour. Malformed files are refused with a
:class:`~models.errors.SeriesFormatError` that names the line (the header is line 1), the parameter and
what to do; physically impossible values (outside :data:`LIMITS`) are refused too, or, with
``on_impossible="drop"``, treated as missing and named in ``warnings``.

No pandas per file: a plain loop over the lines and ``np.bincount`` read all 8,000 stays of sets a and
b in about 5 s on one core.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from models.errors import PayloadTooLargeError, SeriesFormatError, line_count, quoted, series_text, split_lines
from models.input_glossary import AGE_WORDS, FEMALE_MALE, YES_NO, InputGlossary, to_age_code

TIME_SERIES = [
    "Albumin", "ALP", "ALT", "AST", "Bilirubin", "BUN", "Cholesterol", "Creatinine", "DiasABP", "FiO2",
    "GCS", "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "Mg", "MAP", "MechVent", "Na", "NIDiasABP",
    "NIMAP", "NISysABP", "PaCO2", "PaO2", "pH", "Platelets", "RespRate", "SaO2", "SysABP", "Temp",
    "TroponinI", "TroponinT", "Urine", "WBC", "Weight",
]  # fmt: skip
ICU_TYPES = {1: "Coronary care", 2: "Cardiac surgery recovery", 3: "Medical", 4: "Surgical"}
GENDERS = FEMALE_MALE  # -1: unknown
HOURS = 48
STATIC = ["Age", "Gender", "Height", "Weight0", "ICUType1", "ICUType2", "ICUType3", "ICUType4"]
COLUMNS = TIME_SERIES + STATIC  # 45
#: The descriptors of a record, recorded at 00:00 (-1 = unknown). ``Weight`` is also a time series.
DESCRIPTORS = ["RecordID", "Age", "Gender", "Height", "ICUType", "Weight"]
PARAMETERS = DESCRIPTORS[:-1] + TIME_SERIES  # every accepted Parameter name (42)
HEADER = ["Time", "Parameter", "Value"]
_RECORD_ID = "RecordID"
#: In an error message, for a RecordID's value: a hospital's export may put its own patient identifier there.
_WITHHELD_ID = "(withheld: a RecordID may identify the patient)"
UNITS = {
    "Age": "years", "Height": "cm", "Weight": "kg", "HR": "beats/min", "RespRate": "breaths/min",
    "Temp": "°C", "DiasABP": "mm Hg", "MAP": "mm Hg", "SysABP": "mm Hg", "NIDiasABP": "mm Hg",
    "NIMAP": "mm Hg", "NISysABP": "mm Hg", "PaCO2": "mm Hg", "PaO2": "mm Hg", "SaO2": "%", "HCT": "%",
    "FiO2": "fraction", "Urine": "mL", "Glucose": "mg/dL", "BUN": "mg/dL", "Creatinine": "mg/dL",
    "Bilirubin": "mg/dL", "Albumin": "g/dL", "Lactate": "mmol/L", "Na": "mEq/L", "K": "mEq/L",
    "HCO3": "mmol/L", "Platelets": "cells/nL", "WBC": "cells/nL", "GCS": "points",
}  # fmt: skip
#: the mortality models' inputs (models/mortality_features.py columns) in words: the challenge's parameter names,
#: but for the columns this project made (the admission weight, the ICU type's indicators, the hour)
GLOSSARY = InputGlossary(
    units={**UNITS, "Weight0": UNITS["Weight"], "Hour": "hours"},
    names={
        "Weight0": "Weight at admission",
        "MechVent": "Mechanical ventilation",
        "Hour": "Hours of the stay read",
        # the derived ratios (models/mortality_features.py), each attributed as a reason of its own
        "PaO2/FiO2": "PaO2/FiO2 ratio",
        "ShockIndex": "Shock index (HR / SysABP)",
        "BUN/Creatinine": "BUN/creatinine ratio",
        **{f"ICUType{code}": f"ICU type: {title}" for code, title in ICU_TYPES.items()},
    },
    codes={"Gender": GENDERS, "MechVent": YES_NO, **{f"ICUType{code}": YES_NO for code in ICU_TYPES}},
    at_least=AGE_WORDS,
)

#: Physically possible ranges (inclusive) in the challenge's units, for the time series and the numeric
#: descriptors (``Weight`` bounds both the descriptor and the series). Every plausible value of the
#: 8,000 stays of sets a and b lies inside. Outside them (clear recording errors), counted over both sets:
#:   pH: 15 values in 13 stays: 0, 0.4, 1, 2, 3 and 94 to 735 (pH x 100, e.g. 735 for 7.35); the
#:       lowest other pH is 6.75.
#:   Temp: 205 values in 143 stays: -17.8 (0 °F converted, 39x), -12.8, -12.5, 0 (74x) and 0.4 to 3.6
#:       (89x); the lowest kept is 18.6 (the lowest temperature a patient is known to have survived: 13.7 °C).
#:   Weight (series): 330 values in 15 stays: 0 (255x), 0.6 (48x), 3.4 (3x), 5.0 (24x); kept: 21.7 kg (one
#:       stay) to 300 kg. Weight (descriptor, Weight0): none outside (21.7 to 472 kg).
#:   Height: 20 stays: 1.8 to 17.8 cm (12) and 365.8 to 462.3 cm (8); kept: 121.9 to 208.3 cm.
#:   WBC: 1 value, 12500 (the next highest is 528).
#: Everything else lies inside: HR reaches 300 and MAP / NISysABP 300 (monitor ceilings), PaO2 500,
#: K 22.9, Mg 21, Urine 19990 mL in one interval (the next: 11000, 8000); zeros are kept (HR 32x, arterial
#: pressures ~1,200x each: a flushed or disconnected line, not a unit error). Age 15 to 90 (90 = 90 or
#: older).
LIMITS: dict[str, tuple[float, float]] = {
    "Albumin": (0, 10), "ALP": (0, 10000), "ALT": (0, 50000), "AST": (0, 50000), "Bilirubin": (0, 100),
    "BUN": (0, 500), "Cholesterol": (0, 1500), "Creatinine": (0, 100), "DiasABP": (0, 300), "FiO2": (0, 1),
    "GCS": (3, 15), "Glucose": (0, 3000), "HCO3": (0, 80), "HCT": (0, 100), "HR": (0, 300), "K": (0, 25),
    "Lactate": (0, 50), "Mg": (0, 25), "MAP": (0, 300), "MechVent": (0, 1), "Na": (50, 250),
    "NIDiasABP": (0, 300), "NIMAP": (0, 300), "NISysABP": (0, 300), "PaCO2": (0, 250), "PaO2": (0, 800),
    "pH": (6.5, 8.0), "Platelets": (0, 5000), "RespRate": (0, 150), "SaO2": (0, 100), "SysABP": (0, 300),
    "Temp": (10, 45), "TroponinI": (0, 1000), "TroponinT": (0, 1000), "Urine": (0, 20000), "WBC": (0, 1000),
    "Weight": (20, 650), "Age": (0, 120), "Height": (50, 275),
}  # fmt: skip

#: The age the challenge wrote for 90 or older, which the models learnt: an older age is read, and kept, as it
#: (HIPAA's Safe Harbor aggregates ages over 89).
AGE_90_OR_OLDER = 90

MAX_BYTES = 5_000_000  # the largest real record is 24 kB
#: Lines of a record: one row per parameter per minute of 48 hours is 106,560; the largest real one has 1,503.
MAX_ROWS = 200_000
#: The most Urine one hour may sum to, in mL: the largest hourly sum of the 8,000 stays of sets a and b is 23,580 mL
#: (record 149746, hour 2; the next largest: 11,000 and 8,000). More is a file whose rows repeat, not a patient.
MAX_URINE_PER_HOUR = 25_000
#: Digits of a Time's hour: 48 hours are read and later rows ignored; a longer hour is not a time (and Python's
#: int() refuses one of over 4,300 digits).
MAX_HOUR_DIGITS = 6
MISSING_TOKENS = frozenset({"", "NaN", "nan", "NA", "N/A", "null", "None"})
SUMMED = frozenset({"Urine"})  # volumes per interval: an hour holds their sum, not their mean

_N_SERIES = len(TIME_SERIES)
_SERIES_INDEX = {p: i for i, p in enumerate(TIME_SERIES)}
_SUMMED_INDEX = [_SERIES_INDEX[p] for p in sorted(SUMMED)]
_LO = np.array([LIMITS[p][0] for p in TIME_SERIES])
_HI = np.array([LIMITS[p][1] for p in TIME_SERIES])
_END = HOURS * 60  # 48:00, the last minute that is read (into hour 47)
_STATIC_DESCRIPTORS = frozenset(DESCRIPTORS[:-1])


@dataclass
class MortalityRecord:
    """One ICU stay. ``values``: (HOURS, 45) float32 in :data:`COLUMNS` order, NaN = not measured that hour
    (static columns: repeated on every hour, NaN when unknown)."""

    values: np.ndarray
    name: str = "record"
    label: int | None = None  # In-hospital_death (0/1) when known
    warnings: list[str] = field(default_factory=list)

    @property
    def hours_observed(self) -> int:
        """Hours with at least one time-series measurement."""
        return int((~np.isnan(self.values[:, :_N_SERIES])).any(axis=1).sum())

    @property
    def static(self) -> dict[str, float]:
        """The static columns (NaN = unknown)."""
        return {c: float(self.values[0, _N_SERIES + i]) for i, c in enumerate(STATIC)}


def _quoted(text: str, param: str | None = None) -> str:
    """``text`` from the file, quoted for an error message; :data:`_WITHHELD_ID` for a RecordID or its row."""
    return _WITHHELD_ID if param == _RECORD_ID or _RECORD_ID in text else repr(text)


def _accepted() -> str:
    return f"{', '.join(PARAMETERS[:12])}, ... ({len(PARAMETERS)} names: the PhysioNet 2012 parameters)"


def _unit(param: str) -> str:
    return f" {UNITS[param]}" if param in UNITS else ""


def _minutes(time: str, name: str, line: int) -> int:
    """``HH:MM`` -> minutes since admission; anything else is refused with the line."""
    hh, sep, mm = time.partition(":")
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses
    if sep and hh.isascii() and hh.isdigit() and mm.isascii() and mm.isdigit() and len(mm) == 2 and int(mm) < 60:
        if len(hh) > MAX_HOUR_DIGITS:
            raise SeriesFormatError(
                f"{name}: line {line}: Time {quoted(time)} has an hour of {len(hh):,} digits; times are HH:MM since "
                f"ICU admission (the first {HOURS} hours are read)."
            )
        return int(hh) * 60 + int(mm)
    if time.startswith("-"):
        raise SeriesFormatError(
            f"{name}: line {line}: Time {quoted(time)} is negative; times count from ICU admission (00:00 and later)."
        )
    raise SeriesFormatError(
        f"{name}: line {line}: Time {quoted(time)} is not HH:MM (hours and minutes since ICU admission, e.g. 07:45)."
    )


def _code(param: str, value: float, allowed: Mapping[int, str], name: str, line: int) -> float:
    """A categorical descriptor: one of ``allowed`` or -1 (unknown -> NaN)."""
    if value == -1:
        return math.nan
    if value not in allowed:
        codes = ", ".join(f"{k} ({v})" for k, v in allowed.items())
        raise SeriesFormatError(
            f"{name}: line {line}: {param} = {value:g} is not a valid code; use {codes} or -1 for unknown."
        )
    return value


def _impossible(param: str, value: float, line: int, count: int, name: str) -> str:
    lo, hi = LIMITS[param]
    unit = _unit(param)
    return (
        f"{name}: {param} = {value:g}{unit} at line {line} is impossible (allowed {lo:g} to {hi:g}{unit}); "
        f"{count} value(s) of {param} affected."
    )


def _lines(data: bytes, name: str) -> list[str]:
    """A record's lines, for :func:`parse_record_bytes` and :func:`deidentified` alike: at most :data:`MAX_BYTES`
    bytes and :data:`MAX_ROWS` line breaks (counted before the split), split at ``\\r\\n``, ``\\r`` or ``\\n``
    only (a form feed or U+2028 inside a line stays in it)."""
    if len(data) > MAX_BYTES:
        raise PayloadTooLargeError(f"{name} is {len(data):,} bytes; the limit is {MAX_BYTES:,}.")
    text = series_text(data, name, "a PhysioNet 2012 record (Time,Parameter,Value rows)")
    if line_count(text) - 1 > MAX_ROWS:
        raise PayloadTooLargeError(
            f"{name} has more than {MAX_ROWS:,} rows; a 48-hour record has at most one row per parameter per minute."
        )
    return split_lines(text)


def parse_record_bytes(
    data: bytes,
    filename: str | None = None,
    *,
    on_impossible: Literal["reject", "drop"] = "reject",
    require_series: bool = True,
) -> MortalityRecord:
    """One record (``Time,Parameter,Value``) -> :class:`MortalityRecord` on the hourly grid.

    ``require_series=False`` accepts a record with descriptors only (10 of the 8,000 real stays have no
    measurement in their first 48 hours; they are kept for training, with a warning).
    """
    name = filename or "upload"
    lines = _lines(data, name)
    start = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if start is None:
        raise SeriesFormatError(f"{name} is empty: it needs the header Time,Parameter,Value and one row per value.")
    header = [c.strip().strip('"').strip() for c in lines[start].split(",")]
    if header != HEADER:
        raise SeriesFormatError(
            f"{name}: the header is {_quoted(lines[start].strip()[:80])}; a PhysioNet 2012 record starts with "
            "'Time,Parameter,Value' (comma-separated, one observation per row)."
        )

    series_index = _SERIES_INDEX
    cells: list[int] = []  # hour * 37 + series column, per kept observation
    observed: list[float] = []
    where: list[int] = []  # file line of each observation
    seen: dict[tuple[int, int, float], int] = {}  # (minutes, series column, value) -> its line: repeats are refused
    descriptors: dict[str, tuple[float, int]] = {}  # name -> (value, line); -1 = unknown
    time_cache: dict[str, int] = {}
    late = 0
    weight0_seen = False
    for i in range(start + 1, len(lines)):
        row = lines[i]
        parts = row.split(",")
        if len(parts) != 3:
            if not row.strip():
                continue
            raise SeriesFormatError(
                f"{name}: line {i + 1} has {len(parts)} field(s) ({_quoted(row.strip()[:60])}); every row is "
                "Time,Parameter,Value (three comma-separated fields)."
            )
        time, param, raw = parts
        if '"' in row:
            time, param, raw = time.strip().strip('"'), param.strip().strip('"'), raw.strip().strip('"')
        time, param, raw = time.strip(), param.strip(), raw.strip()
        minutes = time_cache.get(time)
        if minutes is None:
            minutes = time_cache[time] = _minutes(time, name, i + 1)
        col = series_index.get(param)
        if col is None and param not in _STATIC_DESCRIPTORS:
            raise SeriesFormatError(
                f"{name}: line {i + 1}: unknown Parameter {param[:40]!r}. Accepted: {_accepted()}; names are "
                "case-sensitive."
            )
        try:
            value = float(raw)
        except ValueError:
            if raw in MISSING_TOKENS:
                continue
            raise SeriesFormatError(
                f"{name}: line {i + 1}: the Value of {param} is {_quoted(raw[:40], param)}, which is not a number "
                "(use -1 or leave it empty for a missing value)."
            ) from None
        if math.isinf(value):
            raise SeriesFormatError(f"{name}: line {i + 1}: the Value of {param} is infinite.")
        if value != value:  # NaN: missing
            continue
        if minutes > _END:
            late += 1
            continue
        if col is None or (param == "Weight" and minutes == 0 and not weight0_seen):
            key = "Weight" if col is not None else param
            weight0_seen = weight0_seen or key == "Weight"
            previous = descriptors.get(key)
            if previous is not None and previous[0] != value and previous[0] != -1 and value != -1:
                said = "" if key == _RECORD_ID else f"{previous[0]:g} at line {previous[1]}, {value:g} at "
                raise SeriesFormatError(
                    f"{name}: {key} is given twice with different values ({said}line {i + 1}); keep one of them."
                )
            if previous is None or previous[0] == -1:
                descriptors[key] = (value, i + 1)
            continue
        if value == -1:  # the challenge's missing value
            continue
        first_line = seen.setdefault((minutes, col, value), i + 1)
        if first_line != i + 1:  # none of the 8,000 real stays repeats a row
            raise SeriesFormatError(
                f"{name}: line {i + 1} repeats line {first_line} (the same Time, Parameter and Value: {param} = "
                f"{value:g} at {minutes // 60:02d}:{minutes % 60:02d}); a row written twice would count twice (Urine "
                "is summed). Remove the repeated rows and upload again."
            )
        cells.append((minutes // 60 if minutes < _END else HOURS - 1) * _N_SERIES + col)
        observed.append(value)
        where.append(i + 1)

    warnings: list[str] = []
    if late:
        warnings.append(f"{late} row(s) after 48:00 ignored: only the first {HOURS} hours are read.")
    absent = [d for d in DESCRIPTORS if d not in descriptors]
    if absent:
        warnings.append(f"Descriptor(s) not in the file, treated as unknown: {', '.join(absent)}.")

    # time series: impossible values, then the hourly grid
    flat = np.asarray(cells, dtype=np.int64)
    obs = np.asarray(observed, dtype=np.float64)
    column = flat % _N_SERIES
    outside = (obs < _LO[column]) | (obs > _HI[column])
    if outside.any():
        bad = np.flatnonzero(outside)
        if on_impossible == "reject":
            first = int(bad[0])
            param = TIME_SERIES[int(column[first])]
            count = int((column[bad] == column[first]).sum())
            raise SeriesFormatError(
                _impossible(param, float(obs[first]), where[first], count, name)
                + " Correct or remove those rows and upload again."
            )
        for c in sorted(set(column[bad].tolist())):
            of_c = bad[column[bad] == c]
            first = int(of_c[0])
            warnings.append(
                _impossible(TIME_SERIES[c], float(obs[first]), where[first], len(of_c), name)
                + " Those values were treated as missing."
            )
        keep = ~outside
        flat, obs = flat[keep], obs[keep]
    size = HOURS * _N_SERIES
    sums = np.bincount(flat, weights=obs, minlength=size).reshape(HOURS, _N_SERIES)
    counts = np.bincount(flat, minlength=size).reshape(HOURS, _N_SERIES)
    with np.errstate(invalid="ignore", divide="ignore"):
        series = sums / counts
    series[:, _SUMMED_INDEX] = sums[:, _SUMMED_INDEX]
    series[counts == 0] = np.nan
    _check_urine_per_hour(series, name, on_impossible, warnings)
    if not len(obs):
        message = f"{name} holds no time-series measurement in its first {HOURS} hours (only descriptors)"
        if require_series:
            raise SeriesFormatError(message + ": a risk needs at least one value of HR, Temp, GCS, ... .")
        warnings.append(message + ".")

    values = np.full((HOURS, len(COLUMNS)), np.nan, dtype=np.float32)
    values[:, :_N_SERIES] = series
    static = _static(descriptors, name, on_impossible, warnings)
    values[:, _N_SERIES:] = static
    record_id = descriptors.get(_RECORD_ID, (-1.0, 0))
    if record_id[0] != -1 and (record_id[0] < 0 or record_id[0] != int(record_id[0])):
        raise SeriesFormatError(f"{name}: line {record_id[1]}: the RecordID is not a whole number (or -1 for unknown).")
    if record_id[0] != -1:
        stem = str(int(record_id[0]))
    elif filename:
        stem = Path(filename).stem
    else:
        stem = name
    return MortalityRecord(values=values, name=stem, warnings=warnings)


def _check_urine_per_hour(series: np.ndarray, name: str, on_impossible: str, warnings: list[str]) -> None:
    """An hour's summed Urine above :data:`MAX_URINE_PER_HOUR` is refused, or (``on_impossible="drop"``) set
    missing with a warning; ``series``: (HOURS, 37), changed in place."""
    urine = series[:, _SERIES_INDEX["Urine"]]  # a view
    over = np.flatnonzero(urine > MAX_URINE_PER_HOUR)
    if not len(over):
        return
    hour = int(over[0])
    message = (
        f"{name}: Urine sums to {urine[hour]:g} mL in hour {hour} ({hour:02d}:00 to {hour:02d}:59); at most "
        f"{MAX_URINE_PER_HOUR:,} mL an hour is accepted (the most in one hour of the 8,000 real stays: 23,580 mL); "
        f"{len(over)} hour(s) affected."
    )
    if on_impossible == "reject":
        raise SeriesFormatError(message + " Correct or remove those rows and upload again.")
    warnings.append(message + " Those hours' Urine was treated as missing.")
    urine[over] = np.nan


def deidentified(data: bytes) -> bytes:
    """A record (one that :func:`parse_record_bytes` reads) as a case keeps it, in UTF-8: without its ``RecordID``
    rows (a hospital's export may put its own identifier there) and with an age over :data:`AGE_90_OR_OLDER` written as
    :data:`AGE_90_OR_OLDER` (HIPAA's Safe Harbor aggregates ages over 89). The same model input: the loader reads
    such an age as :data:`AGE_90_OR_OLDER` too. Split into lines, and refused for size, as the loader does
    (:func:`_lines`)."""
    kept = []
    for row in _lines(data, "record"):
        parts = row.split(",")
        parameter = _unquoted(parts[1]) if len(parts) == 3 else None
        if parameter == _RECORD_ID:
            continue
        if parameter == "Age" and to_age_code(parts[2], AGE_90_OR_OLDER, LIMITS["Age"][1]):
            kept.append(f"{parts[0]},{parts[1]},{AGE_90_OR_OLDER}")
        else:
            kept.append(row)
    return ("\n".join(kept) + "\n").encode("utf-8")


def _unquoted(cell: str) -> str:
    return cell.strip().strip('"').strip()


def _static(
    descriptors: dict[str, tuple[float, int]], name: str, on_impossible: str, warnings: list[str]
) -> np.ndarray:
    """(8,) float32 in :data:`STATIC` order from the descriptors (NaN = unknown)."""
    out = np.full(len(STATIC), np.nan, dtype=np.float32)
    for key, column in (("Age", "Age"), ("Height", "Height"), ("Weight", "Weight0")):
        value, line = descriptors.get(key, (-1.0, 0))
        if value == -1:
            continue
        lo, hi = LIMITS[key]
        if not lo <= value <= hi:
            message = _impossible(key, value, line, 1, name)
            if on_impossible == "reject":
                raise SeriesFormatError(message + " Correct it (or write -1 for unknown) and upload again.")
            warnings.append(message + " It was treated as unknown.")
            continue
        if key == "Age" and value > AGE_90_OR_OLDER:
            value = AGE_90_OR_OLDER
            warnings.append(
                f"An age over {AGE_90_OR_OLDER} was read as {AGE_90_OR_OLDER}, the challenge's code for 90 or older."
            )
        out[STATIC.index(column)] = value
    if "Gender" in descriptors:
        value, line = descriptors["Gender"]
        out[STATIC.index("Gender")] = _code("Gender", value, GENDERS, name, line)
    if "ICUType" in descriptors:
        value, line = descriptors["ICUType"]
        icu = _code("ICUType", value, ICU_TYPES, name, line)
        if not math.isnan(icu):
            first = STATIC.index("ICUType1")
            out[first : first + len(ICU_TYPES)] = 0.0
            out[first + int(icu) - 1] = 1.0
    return out


def load_record_file(
    path: str | Path, *, on_impossible: Literal["reject", "drop"] = "reject", require_series: bool = True
) -> MortalityRecord:
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise PayloadTooLargeError(f"{path.name} is {size:,} bytes; the limit is {MAX_BYTES:,}.")
    return parse_record_bytes(path.read_bytes(), path.name, on_impossible=on_impossible, require_series=require_series)


def iter_record_files(root: str | Path) -> Iterator[Path]:
    """``root`` itself when it is a file, else its ``*.txt`` / ``*.csv`` files sorted by name."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist: pass a PhysioNet 2012 record (.txt) or a folder of them.")
    yield from sorted(p for p in root.iterdir() if p.suffix.lower() in {".txt", ".csv"} and p.is_file())


OUTCOME = "In-hospital_death"


def load_outcomes(path: str | Path) -> dict[str, int]:
    """``Outcomes-X.txt`` -> {RecordID: In-hospital_death (0/1)}; the other columns are not read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the challenge's outcomes file (Outcomes-a.txt, ...).")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeriesFormatError(f"{path.name} is not a text file (byte {exc.start} is not UTF-8).") from exc
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise SeriesFormatError(f"{path.name} is empty: it needs a header with RecordID and {OUTCOME}.")
    header = [c.strip().strip('"') for c in lines[0][1].split(",")]
    missing = [c for c in ("RecordID", OUTCOME) if c not in header]
    if missing:
        raise SeriesFormatError(
            f"{path.name}: the header has no {' or '.join(missing)} column; expected "
            f"RecordID,SAPS-I,SOFA,Length_of_stay,Survival,{OUTCOME} (comma-separated)."
        )
    id_col, label_col = header.index("RecordID"), header.index(OUTCOME)
    outcomes: dict[str, int] = {}
    for line, row in lines[1:]:
        cells = [c.strip().strip('"') for c in row.split(",")]
        if len(cells) != len(header):
            raise SeriesFormatError(
                f"{path.name}: line {line} has {len(cells)} field(s); the header has {len(header)}."
            )
        record_id, label = cells[id_col], cells[label_col]
        if not (record_id.isascii() and record_id.isdigit()):
            raise SeriesFormatError(f"{path.name}: line {line}: RecordID {record_id[:40]!r} is not a whole number.")
        if label not in {"0", "1"}:
            raise SeriesFormatError(
                f"{path.name}: line {line}: {OUTCOME} is {label[:40]!r}; it must be 0 (survived) or 1 (died)."
            )
        key = str(int(record_id))
        if key in outcomes and outcomes[key] != int(label):
            raise SeriesFormatError(f"{path.name}: RecordID {key} is listed twice with different outcomes.")
        outcomes[key] = int(label)
    if not outcomes:
        raise SeriesFormatError(f"{path.name} has a header but no outcome rows.")
    return outcomes


def load_labelled_sets(
    root: str | Path, sets: Sequence[str] = ("a", "b"), limit: int | None = None
) -> list[MortalityRecord]:
    """The labelled stays of ``root/set-X/`` with ``root/Outcomes-X.txt`` for X in ``sets``, impossible values
    dropped (named in each record's ``warnings``) and descriptor-only stays kept. ``limit``: the first
    ``limit`` files over all sets, in the order of ``sets`` then by name."""
    from tqdm import tqdm

    root = Path(root)
    jobs: list[tuple[Path, str]] = []  # (record file, its set)
    outcomes: dict[str, dict[str, int]] = {}
    for s in sets:
        folder = root / f"set-{s}"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found: the PhysioNet 2012 layout is set-a/, Outcomes-a.txt, ...")
        outcomes[s] = load_outcomes(root / f"Outcomes-{s}.txt")
        jobs += [(p, s) for p in iter_record_files(folder)]
    jobs = jobs[:limit]
    if not jobs:
        raise FileNotFoundError(f"No record files under {root} (sets {', '.join(sets)}).")
    records = []
    for path, s in tqdm(jobs, desc="read", unit="stay"):
        record = load_record_file(path, on_impossible="drop", require_series=False)
        label = outcomes[s].get(record.name)
        if label is None:
            raise SeriesFormatError(
                f"{path}: RecordID {record.name} has no row in Outcomes-{s}.txt; add its outcome or remove the file."
            )
        record.label = label
        records.append(record)
    return records
