"""The sequence tasks' inputs in a reader's words (models/input_glossary.py and the loaders' glossaries)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.input_glossary import InputGlossary
from models.mortality_features import MORTALITY_V1
from models.mortality_io import GLOSSARY as MORTALITY
from models.sepsis_io import FEATURES, LABS, UNITS
from models.sepsis_io import GLOSSARY as SEPSIS


@pytest.mark.parametrize(
    ("glossary", "column", "value", "name", "unit", "text"),
    [
        (MORTALITY, "BUN", 58.0, "BUN", "mg/dL", "58 mg/dL"),
        (MORTALITY, "Lactate", None, "Lactate", "mmol/L", "not measured"),
        (MORTALITY, "Weight0", 48.4, "Weight at admission", "kg", "48.4 kg"),
        (MORTALITY, "ICUType2", 1.0, "ICU type: Cardiac surgery recovery", None, "yes"),
        (MORTALITY, "ICUType4", 0.0, "ICU type: Surgical", None, "no"),
        (MORTALITY, "MechVent", 1.0, "Mechanical ventilation", None, "yes"),
        (MORTALITY, "Gender", 1.0, "Gender", None, "male"),
        (MORTALITY, "Age", 78.0, "Age", "years", "78 years"),
        (MORTALITY, "GCS", 7.0, "GCS", "points", "7"),  # a score's points go unsaid
        (MORTALITY, "FiO2", 0.5, "FiO2", "fraction", "0.5"),
        (MORTALITY, "Hour", 48.0, "Hours of the stay read", "hours", "48 hours"),
        (MORTALITY, "Creatinine", 1.23456, "Creatinine", "mg/dL", "1.235 mg/dL"),  # 4 significant digits
        (SEPSIS, "HR", 106.0, "HR", "beats/min", "106 beats/min"),
        (SEPSIS, "Gender", 0.0, "Gender", None, "female"),
        (SEPSIS, "Unit1", 1.0, "Medical ICU (Unit1)", None, "yes"),
        (SEPSIS, "ICULOS", 12.0, "Hours in the ICU", "hours", "12 hours"),
        (SEPSIS, "Lactate", 2.1, "Lactate", None, "2.1"),  # its stated unit disagrees with the data: none printed
        (SEPSIS, "BUN", 64.0, "BUN", "mg/dL", "64 mg/dL"),
        (SEPSIS, "Alkalinephos", 240.0, "Alkaline phosphatase", "IU/L", "240 IU/L"),
        (SEPSIS, "WBC", 9.6, "WBC", "×10³/µL", "9.6 ×10³/µL"),
        # negative: admitted to hospital that long before the ICU
        (SEPSIS, "HospAdmTime", -253.6, "Hospital admission, relative to ICU admission", "hours", "-253.6 hours"),
        (MORTALITY, "ShockIndex", 0.82, "Shock index (HR / SysABP)", None, "0.82"),
    ],
)
def test_inputs_read_as_a_reader_says_them(
    glossary: InputGlossary, column: str, value: float | None, name: str, unit: str | None, text: str
) -> None:
    assert (glossary.name(column), glossary.unit(column), glossary.value_text(column, value)) == (name, unit, text)


def test_a_code_outside_its_table_is_shown_as_a_number() -> None:
    assert MORTALITY.value_text("Gender", 0.5) == "0.5"


@pytest.mark.parametrize(("glossary", "columns"), [(MORTALITY, MORTALITY_V1.explained_columns), (SEPSIS, FEATURES)])
def test_every_glossary_entry_is_a_model_input(glossary: InputGlossary, columns: tuple[str, ...]) -> None:
    """A renamed or dropped column would leave a dead entry: each named, coded or unit-bearing column is an input
    or a derived ratio attributed on its own (the mortality units table also covers the record's raw ``Weight``
    parameter)."""
    known = set(columns) | {"Weight"}
    assert set(glossary.names) <= known and set(glossary.codes) <= known and set(glossary.units) <= known


#: where the median of each sepsis lab that shows a unit must lie, in that unit, in ICU stays (adult reference
#: intervals, widened to what ICU patients' typical values span): a median outside says the unit is not the data's
ICU_MEDIAN_IN_UNIT: dict[str, tuple[float, float]] = {
    "BaseExcess": (-10, 5), "HCO3": (15, 32), "PaCO2": (25, 60), "SaO2": (85, 100), "AST": (10, 200),
    "BUN": (5, 60), "Alkalinephos": (30, 250), "Chloride": (90, 120), "Creatinine": (0.4, 4),
    "Bilirubin_direct": (0, 3), "Glucose": (70, 250), "Phosphate": (2, 6), "Potassium": (3, 5.5),
    "Bilirubin_total": (0.2, 5), "TroponinI": (0, 10), "Hct": (20, 50), "Hgb": (6, 17), "PTT": (20, 80),
    "WBC": (3, 25), "Fibrinogen": (100, 700), "Platelets": (50, 450),
}  # fmt: skip
#: the challenge's stated units the glossary leaves out, and where a median in that unit would lie
STATED_BUT_WRONG: dict[str, tuple[str, tuple[float, float]]] = {
    "Lactate": ("mg/dL", (4.5, 40)),  # 0.5-4.4 mmol/L is 4.5-40 mg/dL
    "Magnesium": ("mmol/dL", (0.05, 0.15)),
}


@pytest.fixture(scope="module")
def sepsis_labs(data_dir: Path) -> pd.DataFrame:
    files = sorted((data_dir / "sepsis" / "training").rglob("*.psv"))[:2000]
    if len(files) < 2000:
        pytest.skip(f"fewer than 2000 .psv files under {data_dir / 'sepsis' / 'training'}")
    return pd.concat([pd.read_csv(f, sep="|", usecols=LABS) for f in files])


def test_every_lab_unit_shown_has_the_data_on_its_side() -> None:
    """A lab gains a unit only with the range its median must meet in that unit (checked on real stays below)."""
    assert {c for c in LABS if c in UNITS} - {"FiO2"} == set(ICU_MEDIAN_IN_UNIT)
    assert not set(STATED_BUT_WRONG) & set(UNITS) and "Calcium" not in UNITS


@pytest.mark.parametrize("lab", sorted(ICU_MEDIAN_IN_UNIT))
def test_a_lab_unit_agrees_with_the_shared_stays(sepsis_labs: pd.DataFrame, lab: str) -> None:
    lo, hi = ICU_MEDIAN_IN_UNIT[lab]
    median = float(sepsis_labs[lab].median())
    assert lo <= median <= hi, f"{lab}: median {median:g} is not a {UNITS[lab]} value ({lo:g}-{hi:g})"


def test_the_units_left_out_disagree_with_the_shared_stays(sepsis_labs: pd.DataFrame) -> None:
    """Why Lactate, Magnesium and Calcium show no unit: the challenge states one the data do not bear out."""
    for lab, (_, (lo, hi)) in STATED_BUT_WRONG.items():
        assert not lo <= float(sepsis_labs[lab].median()) <= hi, lab
    calcium = sepsis_labs["Calcium"].dropna().to_numpy()
    assert np.mean(calcium < 4) > 0.01  # no total calcium in mg/dL is below 4: these rows are ionised, in mmol/L
