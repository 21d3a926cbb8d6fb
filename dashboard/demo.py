"""Built-in demo inputs: the pydicom-data chest radiograph, a few PhysioNet 2019 stays, a few PhysioNet 2012
ICU records and one made-up 2012 record that needs no data directory.

Pure functions (no Streamlit): the pages cache them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEMO_DICOM = "RG1_UNCR.dcm"


@dataclass(frozen=True)
class DemoCase:
    """A PhysioNet 2019 training stay offered as a demo (public, de-identified data)."""

    path: Path
    hours: int
    septic: bool
    first_label_hour: int | None  # first row with SepsisLabel = 1

    @property
    def record(self) -> str:
        return self.path.stem

    @property
    def title(self) -> str:
        """What the picker shows: the record and its length, never its outcome (which would sway a review)."""
        return f"{self.record}, {self.hours} h"

    @property
    def outcome(self) -> str:
        """The recorded outcome, shown only when a reader asks."""
        if self.septic:
            return f"septic: SepsisLabel from hour {self.first_label_hour}"
        return "no sepsis (SepsisLabel 0 throughout)"


def demo_radiograph() -> bytes:
    """``RG1_UNCR.dcm`` from pydicom-data: a real CR chest radiograph (MONOCHROME1, 1955 x 1841)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(DEMO_DICOM)
    if path is None:
        raise FileNotFoundError(
            f"{DEMO_DICOM} is not available: install the pydicom-data package (pip install pydicom-data)."
        )
    return Path(str(path)).read_bytes()


def _scan(path: Path) -> DemoCase | None:
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError):
        return None
    if len(lines) < 2:
        return None
    header = lines[0].split("|")
    if "SepsisLabel" not in header:
        return None
    col = header.index("SepsisLabel")
    labels = []
    for line in lines[1:]:
        cells = line.split("|")
        labels.append(cells[col].strip() == "1" if col < len(cells) else False)
    first = next((i for i, v in enumerate(labels) if v), None)
    return DemoCase(path=path, hours=len(labels), septic=first is not None, first_label_hour=first)


def find_sepsis_demo_cases(
    directory: Path, n_each: int = 4, *, min_hours: int = 24, min_lead: int = 12, scan_limit: int = 3000
) -> list[DemoCase]:
    """Up to ``n_each`` septic and ``n_each`` non-septic stays of at least ``min_hours`` hours; septic
    ones only when the label starts after ``min_lead`` hours (so there is an early warning to see).

    Files are scanned in sorted order (deterministic). Raises FileNotFoundError if ``directory`` is
    not a folder.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} does not exist")
    septic: list[DemoCase] = []
    other: list[DemoCase] = []
    for i, path in enumerate(sorted(directory.glob("*.psv"))):
        if i >= scan_limit or (len(septic) >= n_each and len(other) >= n_each):
            break
        case = _scan(path)
        if case is None or case.hours < min_hours:
            continue
        if case.septic and len(septic) < n_each and (case.first_label_hour or 0) >= min_lead:
            septic.append(case)
        elif not case.septic and len(other) < n_each:
            other.append(case)
    return sorted(septic + other, key=lambda c: c.record)  # by record: the order tells no outcome


@dataclass(frozen=True)
class MortalityDemo:
    """A PhysioNet 2012 record offered as a demo (public, de-identified data), known by its place in the list: its
    file name is its RecordID, which the page never shows."""

    path: Path
    number: int
    died: bool

    @property
    def title(self) -> str:
        """What the picker shows: the stay's place in the list, never its outcome (which would sway a review)."""
        return f"demo stay {self.number}"

    @property
    def outcome(self) -> str:
        """The recorded outcome, shown only when a reader asks."""
        return "died in hospital" if self.died else "survived to hospital discharge"


def find_mortality_demo_cases(root: Path, n_each: int = 3, *, sets: tuple[str, ...] = ("a",)) -> list[MortalityDemo]:
    """Up to ``n_each`` stays that ended in death in hospital and ``n_each`` that did not, from ``root/set-X/`` and
    ``root/Outcomes-X.txt`` (the 2012 layout), the first ones by file name (deterministic), listed by file name.
    Raises FileNotFoundError if neither is there."""
    outcomes: dict[str, int] = {}
    files: list[Path] = []
    for name in sets:
        folder, table = root / f"set-{name}", root / f"Outcomes-{name}.txt"
        if not folder.is_dir() or not table.is_file():
            raise FileNotFoundError(f"{folder} or {table} does not exist")
        lines = table.read_text().splitlines()
        header = [c.strip() for c in lines[0].split(",")] if lines else []
        if "RecordID" not in header or "In-hospital_death" not in header:
            raise FileNotFoundError(f"{table} has no RecordID / In-hospital_death columns")
        id_col, label_col = header.index("RecordID"), header.index("In-hospital_death")
        for line in lines[1:]:
            cells = [c.strip() for c in line.split(",")]
            if len(cells) == len(header):
                outcomes[cells[id_col]] = int(cells[label_col] == "1")
        files += sorted(folder.glob("*.txt"))
    died = [f for f in files if outcomes.get(f.stem) == 1][:n_each]
    survived = [f for f in files if outcomes.get(f.stem) == 0][:n_each]
    ordered = sorted(died + survived, key=lambda f: f.name)  # by RecordID: the order tells no outcome
    return [MortalityDemo(path, i, outcomes[path.stem] == 1) for i, path in enumerate(ordered, start=1)]


EXAMPLE_RECORD_TITLE = "built-in example record (made up: no patient)"


def example_mortality_record() -> bytes:
    """A made-up PhysioNet 2012 record (``Time,Parameter,Value``): a 67-year-old in a medical ICU whose blood
    pressure falls and lactate rises over 48 hours, measured hourly to four-hourly; no RecordID (-1: unknown)."""
    rows = ["Time,Parameter,Value"]
    rows += [f"00:00,{p},{v}" for p, v in (("RecordID", -1), ("Age", 67), ("Gender", 1), ("Height", 175))]
    rows += ["00:00,ICUType,3", "00:00,Weight,82"]
    for hour in range(48):
        t = f"{hour:02d}:{(7 * hour) % 60:02d}"
        rows += [
            f"{t},HR,{88 + hour // 2}",
            f"{t},MAP,{round(82 - 0.4 * hour, 1)}",
            f"{t},RespRate,{18 + hour // 8}",
            f"{t},Temp,{round(37.2 + 0.02 * hour, 2)}",
        ]
        if hour % 4 == 0:
            rows += [f"{t},GCS,{max(15 - hour // 8, 9)}", f"{t},Urine,{max(120 - 2 * hour, 20)}"]
        if hour % 12 == 2:
            rows += [
                f"{t},Lactate,{round(1.8 + 0.05 * hour, 2)}",
                f"{t},Creatinine,{round(1.1 + 0.02 * hour, 2)}",
                f"{t},WBC,{round(11.5 + 0.1 * hour, 1)}",
                f"{t},pH,{round(7.38 - 0.002 * hour, 3)}",
            ]
    return ("\n".join(rows) + "\n").encode()


__all__ = [
    "DEMO_DICOM",
    "EXAMPLE_RECORD_TITLE",
    "DemoCase",
    "MortalityDemo",
    "demo_radiograph",
    "example_mortality_record",
    "find_mortality_demo_cases",
    "find_sepsis_demo_cases",
]
