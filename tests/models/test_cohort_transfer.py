"""The other cohort's stays in a task's columns (models/cohort_transfer.py): which column comes from which,
the hour of the stay, the 48 hours the mortality networks read, and the foreign reserve left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.cohort_transfer import MORTALITY_FROM_2019, SEPSIS_FROM_2012, foreign_stays, translate
from models.mortality_features import MORTALITY_V1
from models.mortality_io import COLUMNS
from models.protocol import is_reserved
from models.sepsis_io import FEATURES
from models.sequence import SEPSIS_V1
from models.sequence_tasks import sequence_task


def test_every_mapped_column_exists_on_both_sides() -> None:
    assert set(SEPSIS_FROM_2012) <= set(SEPSIS_V1.columns)
    assert {c for sources in SEPSIS_FROM_2012.values() for c in sources} <= set(MORTALITY_V1.columns)
    assert set(MORTALITY_FROM_2019) <= set(MORTALITY_V1.columns)
    assert {c for sources in MORTALITY_FROM_2019.values() for c in sources} <= set(SEPSIS_V1.columns)


def test_a_2012_stay_in_sepsis_columns() -> None:
    """An invasive pressure wins over the cuff's in the same hour, the cuff's fills the hours without one; the
    hour of the stay counts rows; what 2012 never records stays unmeasured."""
    source = MORTALITY_V1.columns
    values = np.full((4, len(source)), np.nan, dtype=np.float32)  # (hours, columns)
    values[:, source.index("NISysABP")] = [110, 111, 112, np.nan]
    values[[0, 2], source.index("SysABP")] = [150, 152]
    values[:, source.index("RespRate")] = 20
    values[:, source.index("ICUType3")] = 1
    values[:, source.index("ICUType4")] = 0
    values[:, source.index("Hour")] = [7, 8, 9, 10]  # not what ICULOS is: the row counts
    out = translate(values, source, SEPSIS_V1.columns, "sepsis")  # (4, 40)
    col = {c: out[:, j] for j, c in enumerate(SEPSIS_V1.columns)}
    np.testing.assert_array_equal(col["SBP"], [150, 111, 152, np.nan])
    np.testing.assert_array_equal(col["Resp"], [20] * 4)
    np.testing.assert_array_equal(col["ICULOS"], [1, 2, 3, 4])
    np.testing.assert_array_equal(col["Unit1"], [1] * 4)
    np.testing.assert_array_equal(col["Unit2"], [0] * 4)
    assert np.isnan(col["EtCO2"]).all() and np.isnan(col["HospAdmTime"]).all() and np.isnan(col["O2Sat"]).all()


def test_a_2019_stay_in_mortality_columns() -> None:
    """Pressures go to the cuff's columns; a known unit rules out ICU types 1 and 2, an unknown one leaves all
    four unknown."""
    source = SEPSIS_V1.columns
    values = np.full((3, len(source)), np.nan, dtype=np.float32)
    values[:, source.index("MAP")] = [70, np.nan, 72]
    values[:, source.index("Potassium")] = [np.nan, 4.5, np.nan]
    values[:2, source.index("Unit1")] = 0
    values[:2, source.index("Unit2")] = 1
    out = translate(values, source, MORTALITY_V1.columns, "mortality")
    col = {c: out[:, j] for j, c in enumerate(MORTALITY_V1.columns)}
    np.testing.assert_array_equal(col["NIMAP"], [70, np.nan, 72])
    assert np.isnan(col["MAP"]).all() and np.isnan(col["GCS"]).all()
    np.testing.assert_array_equal(col["K"], [np.nan, 4.5, np.nan])
    np.testing.assert_array_equal(col["ICUType4"], [1, 1, np.nan])
    np.testing.assert_array_equal(col["ICUType1"], [0, 0, np.nan])
    np.testing.assert_array_equal(col["Hour"], [1, 2, 3])


def test_the_other_cohorts_development_stays(psv_folder: Path, mortality_folder: Path) -> None:
    """Sepsis pretrains on 2012 stays labelled with death on every hour; mortality on 2019 stays cut to 48 hours
    with their hourly SepsisLabel. Neither cohort's reserve takes part."""
    sepsis, mortality = sequence_task("sepsis"), sequence_task("mortality")
    for_sepsis = foreign_stays(sepsis, mortality_folder)
    assert for_sepsis.task.name == "mortality"
    own = mortality.load(mortality_folder)
    kept = [s for s in own if not is_reserved(s.name)]
    assert 0 < len(for_sepsis.stays) == len(kept) < len(own)
    for mine, theirs in zip(for_sepsis.stays, kept, strict=True):
        assert mine.values.shape == (48, len(FEATURES)) and np.array_equal(mine.labels, theirs.labels)
    for_mortality = foreign_stays(mortality, psv_folder)
    assert for_mortality.task.name == "sepsis"
    own = sepsis.load(psv_folder)
    kept = [s for s in own if not is_reserved(s.name)]
    assert len(for_mortality.stays) == len(kept) < len(own)
    for mine, theirs in zip(for_mortality.stays, kept, strict=True):
        hours = min(48, len(theirs.labels))
        assert mine.values.shape == (hours, len(COLUMNS) + 1)  # the 2012 columns and the hour
        assert np.array_equal(mine.labels, theirs.labels[:hours])
