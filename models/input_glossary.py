"""How a sequence task's model inputs read to a clinician: each column's name, unit and coded values.

Serving puts these beside every attribution it answers (``FeatureContribution``), so every client shows the
same words; the tables themselves sit with each task's loader (models/sepsis_io.py, models/mortality_io.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: units not worth printing after a value (a GCS of 7 points, an FiO2 of 0.5 fraction)
SILENT_UNITS = frozenset({"points", "fraction"})
YES_NO: Mapping[int, str] = {0: "no", 1: "yes"}
#: both challenges code every age from 90 as one value (HIPAA's Safe Harbor aggregates ages over 89): read in words
AGE_WORDS: Mapping[str, tuple[float, str]] = {"Age": (90.0, "90 or older")}


def to_age_code(cell: str, code: float, highest: float) -> bool:
    """Whether a file's Age cell (its text, quotes allowed) is an age from 90 up to ``highest`` other than
    ``code``, its challenge's value for 90 or older: one a case keeps as the code. A higher age is impossible (the
    loader refuses it), and so is never kept."""
    try:
        age = float(cell.strip().strip('"'))
    except ValueError:
        return False
    return 90 <= age <= highest and age != code


#: both challenges code sex as 0 = female, 1 = male
FEMALE_MALE: Mapping[int, str] = {0: "female", 1: "male"}


@dataclass(frozen=True)
class InputGlossary:
    """A task's input columns in words. A column without an entry keeps its own name and has no unit."""

    units: Mapping[str, str]
    #: the task's own columns, or the source's cryptic ones, as a reader says them
    names: Mapping[str, str] = field(default_factory=dict)
    #: coded columns: each code in words
    codes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    #: open-ended top codes: a value at or above the bound reads as the words (Age: 90 or older)
    at_least: Mapping[str, tuple[float, str]] = field(default_factory=dict)

    def name(self, column: str) -> str:
        return self.names.get(column, column)

    def unit(self, column: str) -> str | None:
        return None if column in self.codes else self.units.get(column)

    def value_text(self, column: str, value: float | None) -> str:
        """``value`` of ``column`` as shown: ``58 mg/dL``, ``female``, ``yes``; ``90 or older``; ``not measured`` for
        None."""
        if value is None:
            return "not measured"
        codes = self.codes.get(column, {})
        if value.is_integer() and int(value) in codes:
            return codes[int(value)]
        if column in self.at_least and value >= self.at_least[column][0]:
            return self.at_least[column][1]
        unit = self.unit(column)
        return f"{value:.4g}" + (f" {unit}" if unit and unit not in SILENT_UNITS else "")
