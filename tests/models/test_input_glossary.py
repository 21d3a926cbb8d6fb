"""The sequence tasks' inputs in a reader's words (models/input_glossary.py and the loaders' glossaries)."""

from __future__ import annotations

import pytest

from models.input_glossary import InputGlossary
from models.mortality_features import MORTALITY_V1
from models.mortality_io import GLOSSARY as MORTALITY
from models.sepsis_io import FEATURES
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
        (SEPSIS, "Lactate", 2.1, "Lactate", None, "2.1"),  # no unit stated for it: none printed
    ],
)
def test_inputs_read_as_a_reader_says_them(
    glossary: InputGlossary, column: str, value: float | None, name: str, unit: str | None, text: str
) -> None:
    assert (glossary.name(column), glossary.unit(column), glossary.value_text(column, value)) == (name, unit, text)


def test_a_code_outside_its_table_is_shown_as_a_number() -> None:
    assert MORTALITY.value_text("Gender", 0.5) == "0.5"


@pytest.mark.parametrize(("glossary", "columns"), [(MORTALITY, MORTALITY_V1.columns), (SEPSIS, FEATURES)])
def test_every_glossary_entry_is_a_model_input(glossary: InputGlossary, columns: tuple[str, ...]) -> None:
    """A renamed or dropped column would leave a dead entry: each named, coded or unit-bearing column is an input
    (the mortality units table also covers the record's raw ``Weight`` parameter)."""
    known = set(columns) | {"Weight"}
    assert set(glossary.names) <= known and set(glossary.codes) <= known and set(glossary.units) <= known
