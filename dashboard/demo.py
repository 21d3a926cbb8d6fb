"""Built-in demo inputs: the pydicom-data chest radiograph and a few PhysioNet 2019 stays.

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
        if self.septic:
            return f"{self.record} — septic (SepsisLabel from hour {self.first_label_hour}), {self.hours} h"
        return f"{self.record} — no sepsis, {self.hours} h"


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
    return septic + other


__all__ = ["DEMO_DICOM", "DemoCase", "demo_radiograph", "find_sepsis_demo_cases"]
