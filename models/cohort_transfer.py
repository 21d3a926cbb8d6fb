"""The other ICU cohort's stays in a task's columns, to pretrain the task's networks on before they learn the task
(a stand-in for more stays of the task's own kind).

The sepsis task's other cohort is PhysioNet 2012 (the mortality stays); the mortality task's is PhysioNet 2019
(the sepsis stays). Each foreign stay keeps its own cohort's task: a 2012 stay is labelled with its in-hospital
death on every hour and weighted as the mortality task weights its hours; a 2019 stay keeps its hourly
``SepsisLabel`` and the sepsis task's weights, cut to the 48 hours the mortality networks read. A variable the
foreign cohort does not record is never measured there (NaN), which the features already say of any absent
variable. Only the foreign cohort's development stays are used: its reserve stays untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.sequence_tasks import SequenceTask, Stay, TaskName, sequence_task

#: sepsis column (PhysioNet 2019) <- the 2012 columns that measure it, the first measured one that hour winning
#: (an invasive arterial pressure before the cuff's). Same units in both challenges. The hour of the stay is the
#: row (ICULOS counts hours in the ICU, the 2012 grid starts at admission).
SEPSIS_FROM_2012: dict[str, tuple[str, ...]] = {
    "HR": ("HR",), "Temp": ("Temp",), "SBP": ("SysABP", "NISysABP"), "MAP": ("MAP", "NIMAP"),
    "DBP": ("DiasABP", "NIDiasABP"), "Resp": ("RespRate",), "HCO3": ("HCO3",), "FiO2": ("FiO2",), "pH": ("pH",),
    "PaCO2": ("PaCO2",), "SaO2": ("SaO2",), "AST": ("AST",), "BUN": ("BUN",), "Alkalinephos": ("ALP",),
    "Creatinine": ("Creatinine",), "Glucose": ("Glucose",), "Lactate": ("Lactate",), "Magnesium": ("Mg",),
    "Potassium": ("K",), "Bilirubin_total": ("Bilirubin",), "TroponinI": ("TroponinI",), "Hct": ("HCT",),
    "WBC": ("WBC",), "Platelets": ("Platelets",), "Age": ("Age",), "Gender": ("Gender",),
    "Unit1": ("ICUType3",), "Unit2": ("ICUType4",),  # medical and surgical ICU
}  # fmt: skip
#: mortality column (PhysioNet 2012) <- the 2019 columns. 2019 does not say whether a pressure was invasive: it
#: goes to the cuff's columns. Unit1 / Unit2 (medical / surgical ICU) are ICU types 3 and 4; a stay in a known
#: unit is in neither type 1 nor 2 (coronary care, cardiac surgery recovery), otherwise all four are unknown.
MORTALITY_FROM_2019: dict[str, tuple[str, ...]] = {
    "HR": ("HR",), "NIMAP": ("MAP",), "NISysABP": ("SBP",), "NIDiasABP": ("DBP",), "RespRate": ("Resp",),
    "Temp": ("Temp",), "SaO2": ("SaO2",), "FiO2": ("FiO2",), "pH": ("pH",), "PaCO2": ("PaCO2",),
    "HCO3": ("HCO3",), "Lactate": ("Lactate",), "HCT": ("Hct",), "Platelets": ("Platelets",), "WBC": ("WBC",),
    "K": ("Potassium",), "Mg": ("Magnesium",), "Glucose": ("Glucose",), "BUN": ("BUN",),
    "Creatinine": ("Creatinine",), "Bilirubin": ("Bilirubin_total",), "AST": ("AST",), "ALP": ("Alkalinephos",),
    "TroponinI": ("TroponinI",), "Age": ("Age",), "Gender": ("Gender",), "ICUType3": ("Unit1",),
    "ICUType4": ("Unit2",),
}  # fmt: skip
#: the column holding the hour of the stay (1, 2, ...) in each task's schemas
HOUR_COLUMN: dict[TaskName, str] = {"sepsis": "ICULOS", "mortality": "Hour"}
OTHER: dict[TaskName, TaskName] = {"sepsis": "mortality", "mortality": "sepsis"}


def translate(values: np.ndarray, source: tuple[str, ...], target: tuple[str, ...], task: TaskName) -> np.ndarray:
    """(hours, len(source)) a foreign stay in its cohort's columns -> (hours, len(target)) in ``task``'s columns:
    each target column from the first of its source columns measured that hour, NaN where none is."""
    mapping = SEPSIS_FROM_2012 if task == "sepsis" else MORTALITY_FROM_2019
    index = {c: i for i, c in enumerate(source)}
    hours = values.shape[0]
    out = np.full((hours, len(target)), np.nan, dtype=np.float32)
    for j, column in enumerate(target):
        if column == HOUR_COLUMN[task]:
            out[:, j] = np.arange(1, hours + 1)
            continue
        for name in reversed(mapping.get(column, ())):  # the first listed is written last, so it wins
            col = values[:, index[name]]
            out[:, j] = np.where(np.isnan(col), out[:, j], col)
    if task == "mortality":  # a 2019 stay in a known unit (medical or surgical) is in neither ICU type 1 nor 2
        known = ~np.isnan(values[:, index["Unit1"]]) | ~np.isnan(values[:, index["Unit2"]])
        for column in ("ICUType1", "ICUType2"):
            if column in target:
                out[:, target.index(column)] = np.where(known, 0.0, np.nan)
    return out


@dataclass(frozen=True)
class ForeignStays:
    """The other cohort's development stays in a task's raw columns, and the task they were labelled for."""

    stays: list[Stay]
    task: SequenceTask


def foreign_stays(task: SequenceTask, data: Path | None = None, limit: int | None = None) -> ForeignStays:
    """The development stays of ``task``'s other cohort (under ``data``, default its configured path), in
    ``task.schema``'s columns, labelled and weighted by the other cohort's own task."""
    from models.protocol import drop_reserved

    other = sequence_task(OTHER[task.name])
    stays = drop_reserved(other.load(data or other.default_data(), limit=limit), exclude=True)
    source = other.schema.columns
    cut = 48 if task.name == "mortality" else None  # the mortality networks read the first 48 hours
    translated = [
        Stay(s.name, translate(s.values[:cut], source, task.schema.columns, task.name), s.labels[:cut])
        for s in stays
        if len(s.labels[:cut])
    ]
    return ForeignStays(translated, other)
