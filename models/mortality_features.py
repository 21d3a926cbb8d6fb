"""The mortality models' inputs: PhysioNet 2012 records (models/mortality_io.py) as hourly rows for the
shared sequence machinery (models/sequence.py), with the vital signs first (they get trends), then the
labs, then the static descriptors and the hour of the stay."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from models.mortality_io import COLUMNS, HOURS, MortalityRecord, load_labelled_sets
from models.sequence import FeatureSchema, register_schema
from models.sequence_tasks import Stay

#: vital signs and bedside observations, in this order (the first N_TREND get 1 h / 6 h change and 12 h std)
VITALS = ("HR", "MAP", "SysABP", "DiasABP", "NIMAP", "NISysABP", "NIDiasABP", "RespRate", "Temp", "GCS", "Urine")
LABS = (
    "SaO2", "FiO2", "MechVent", "pH", "PaCO2", "PaO2", "HCO3", "Lactate", "HCT", "Platelets", "WBC", "K", "Na",
    "Mg", "Glucose", "BUN", "Creatinine", "Bilirubin", "AST", "ALT", "ALP", "Albumin", "TroponinI", "TroponinT",
    "Cholesterol", "Weight",
)  # fmt: skip
STATIC = ("Age", "Gender", "Height", "Weight0", "ICUType1", "ICUType2", "ICUType3", "ICUType4", "Hour")

MORTALITY_V1 = register_schema(
    FeatureSchema(
        name="mortality-v1",
        columns=(*VITALS, *LABS, *STATIC),
        n_measured=len(VITALS) + len(LABS),
        n_trend=len(VITALS),
        binary=("Gender", "ICUType1", "ICUType2", "ICUType3", "ICUType4"),
        ple_static=("Age", "Weight0", "Hour"),
        # P/F ratio (oxygenation, as in SOFA), shock index, BUN / creatinine
        derived=(
            ("PaO2/FiO2", "PaO2", "FiO2"),
            ("ShockIndex", "HR", "SysABP"),
            ("BUN/Creatinine", "BUN", "Creatinine"),
        ),
        summaries=True,
        clock="Hour",
    )
)
#: mortality-v1 and the level-2 log-signature of the last 12 hours' path of heart rate, invasive and
#: non-invasive MAP, respiratory rate, temperature and GCS against time (models/sequence.py log_signature)
MORTALITY_V2 = register_schema(
    replace(MORTALITY_V1, name="mortality-v2", signature=("HR", "MAP", "NIMAP", "RespRate", "Temp", "GCS"))
)


def stay_aggregates(values: np.ndarray, schema: FeatureSchema = MORTALITY_V1) -> np.ndarray:
    """(hours, len(schema.columns)) one stay's raw grid, NaN where unmeasured -> (n,) classic per-stay aggregates
    over those hours: first, last, min, max, mean and count of each measured variable (NaN and 0 when never
    measured), the total urine, and the static descriptors (not the hour)."""
    out: list[float] = []
    for j, column in enumerate(schema.measured):
        x = values[:, j]
        seen = x[np.isfinite(x)]  # (measured hours,)
        out += [seen[0], seen[-1], seen.min(), seen.max(), seen.mean(), seen.size] if seen.size else [np.nan] * 5 + [0]
        if column == "Urine":
            out.append(float(np.nansum(x)))
    out += [values[0, schema.columns.index(c)] for c in schema.static if c != "Hour"]
    return np.array(out, dtype=np.float64)


def model_values(record: MortalityRecord, columns: tuple[str, ...] = MORTALITY_V1.columns) -> np.ndarray:
    """(HOURS, len(COLUMNS)) record -> (HOURS, len(columns)) in the schema's order, with the hour (1..48)."""
    source = {c: i for i, c in enumerate(COLUMNS)}
    out = np.empty((record.values.shape[0], len(columns)), dtype=np.float32)
    for j, c in enumerate(columns):
        out[:, j] = np.arange(1, record.values.shape[0] + 1) if c == "Hour" else record.values[:, source[c]]
    return out


def load_mortality_stays(
    data: Path, limit: int | None = None, columns: tuple[str, ...] = MORTALITY_V1.columns
) -> list[Stay]:
    """The labelled stays of sets a and b under ``data`` (the 2012 layout), every hour labelled with the outcome."""
    records = load_labelled_sets(data, limit=limit)
    return [
        Stay(r.name, model_values(r, columns), np.full(r.values.shape[0], int(r.label or 0), dtype=np.int64))
        for r in records
    ]


if {*VITALS, *LABS, *STATIC} - {"Hour"} != set(COLUMNS) or HOURS != 48:
    raise ImportError("models/mortality_features.py does not list every column of models/mortality_io.py")
