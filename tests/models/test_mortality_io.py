"""PhysioNet/CinC 2012 record loader (models/mortality_io.py) on hand-written records and the real sets a, b."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from models.config import DataPaths
from models.errors import PayloadTooLargeError, SeriesFormatError
from models.mortality_io import (
    COLUMNS,
    GLOSSARY,
    HOURS,
    ICU_TYPES,
    LIMITS,
    MAX_BYTES,
    MAX_ROWS,
    STATIC,
    TIME_SERIES,
    MortalityRecord,
    deidentified,
    iter_record_files,
    load_labelled_sets,
    load_outcomes,
    load_record_file,
    parse_record_bytes,
)

COL = {name: i for i, name in enumerate(COLUMNS)}
HEAD = "Time,Parameter,Value\n"
DESCRIPTORS = "00:00,RecordID,132539\n00:00,Age,54\n00:00,Gender,0\n00:00,Height,-1\n00:00,ICUType,4\n00:00,Weight,-1\n"


def parse(
    rows: str, *, head: str = HEAD, on_impossible: Literal["reject", "drop"] = "reject", require_series: bool = True
) -> MortalityRecord:
    return parse_record_bytes(
        (head + rows).encode(), "132539.txt", on_impossible=on_impossible, require_series=require_series
    )


def refused(rows: str, *, head: str = HEAD) -> str:
    with pytest.raises(SeriesFormatError) as info:
        parse(rows, head=head)
    return info.value.message


def test_constants() -> None:
    assert len(TIME_SERIES) == 37 and len(set(TIME_SERIES)) == 37
    assert TIME_SERIES[0] == "Albumin" and TIME_SERIES[-1] == "Weight"
    assert COLUMNS == TIME_SERIES + STATIC and len(COLUMNS) == 45 and HOURS == 48
    assert ICU_TYPES == {1: "Coronary care", 2: "Cardiac surgery recovery", 3: "Medical", 4: "Surgical"}
    assert all(p in LIMITS for p in TIME_SERIES) and all(lo < hi for lo, hi in LIMITS.values())


# ----------------------------------------------------------------------------------------------------------
# the hourly grid
# ----------------------------------------------------------------------------------------------------------
def test_binning_mean_and_urine_sum() -> None:
    record = parse(
        DESCRIPTORS + "00:07,HR,73\n00:37,HR,77\n00:59,HR,90\n01:00,HR,100\n"
        "00:07,Urine,900\n00:40,Urine,100\n02:30,Urine,0\n05:10,Temp,37.5\n"
    )
    assert record.values.shape == (HOURS, len(COLUMNS)) and record.values.dtype == np.float32
    hr = record.values[:, COL["HR"]]
    np.testing.assert_allclose(hr[:2], [80.0, 100.0])  # (73 + 77 + 90) / 3 in hour 0; 01:00 opens hour 1
    assert np.isnan(hr[2:]).all()
    urine = record.values[:, COL["Urine"]]
    assert urine[0] == 1000.0 and np.isnan(urine[1]) and urine[2] == 0.0  # summed; a measured 0 stays 0
    assert record.values[5, COL["Temp"]] == 37.5
    assert record.hours_observed == 4
    assert record.name == "132539" and record.label is None and record.warnings == []


def test_48_hours_exactly_goes_into_the_last_hour_and_later_rows_are_ignored() -> None:
    record = parse(DESCRIPTORS + "47:10,HR,80\n48:00,HR,100\n48:01,HR,200\n52:00,GCS,3\n72:00,HR,1\n")
    assert record.values[47, COL["HR"]] == 90.0
    assert np.isnan(record.values[:, COL["GCS"]]).all()
    assert any("3 row(s) after 48:00 ignored" in w for w in record.warnings)


def test_minus_one_is_missing_and_descriptors_are_broadcast() -> None:
    record = parse(
        "00:00,RecordID,140001\n00:00,Age,71\n00:00,Gender,1\n00:00,Height,175.3\n00:00,ICUType,2\n"
        "00:00,Weight,82.5\n00:30,Weight,81\n01:00,HR,-1\n01:00,GCS,15\n"
    )
    assert record.name == "140001"
    values = record.values
    assert np.isnan(values[:, COL["HR"]]).all()  # -1: missing
    assert values[0, COL["Weight"]] == 81.0 and np.isnan(values[1:, COL["Weight"]]).all()  # the series
    static = values[:, [COL[c] for c in STATIC]]
    np.testing.assert_allclose(static, np.tile([71, 1, 175.3, 82.5, 0, 1, 0, 0], (HOURS, 1)), rtol=1e-6)
    assert record.static["Weight0"] == pytest.approx(82.5) and record.static["ICUType2"] == 1.0


def test_icutype_one_hot_for_every_unit() -> None:
    for code in ICU_TYPES:
        record = parse(DESCRIPTORS.replace("ICUType,4", f"ICUType,{code}") + "00:07,HR,73\n")
        one_hot = record.values[:, [COL[f"ICUType{k}"] for k in ICU_TYPES]]
        expected = np.zeros(4, dtype=np.float32)
        expected[code - 1] = 1.0
        np.testing.assert_array_equal(one_hot, np.tile(expected, (HOURS, 1)))


def test_unknown_descriptors_are_nan() -> None:
    record = parse(
        "00:00,RecordID,-1\n00:00,Age,-1\n00:00,Gender,-1\n00:00,Height,-1\n00:00,ICUType,-1\n"
        "00:00,Weight,-1\n00:07,HR,73\n"
    )
    assert np.isnan(record.values[:, [COL[c] for c in STATIC]]).all()
    assert record.name == "132539"  # no RecordID: the file stem
    assert record.warnings == []  # -1 is the format's "unknown", not worth a warning


def test_absent_descriptors_are_unknown_and_named() -> None:
    record = parse("00:07,HR,73\n")
    assert np.isnan(record.values[:, [COL[c] for c in STATIC]]).all()
    assert any("not in the file" in w and "ICUType" in w for w in record.warnings)
    assert parse_record_bytes(b"Time,Parameter,Value\n00:07,HR,73\n").name == "upload"


def test_second_weight_at_admission_is_a_measurement() -> None:
    record = parse(DESCRIPTORS.replace("Weight,-1", "Weight,70.8") + "00:00,Weight,70.4\n00:05,HR,80\n")
    assert record.static["Weight0"] == pytest.approx(70.8)
    assert record.values[0, COL["Weight"]] == pytest.approx(70.4)


def test_equal_duplicate_descriptors_are_accepted() -> None:
    record = parse(DESCRIPTORS + "00:00,Age,54\n00:07,HR,73\n")
    assert record.static["Age"] == 54.0


def test_csv_from_other_tools() -> None:
    """BOM, CRLF, spaces, quotes, blank lines, unsorted rows, decimals like 54.0, empty / NaN values."""
    text = (
        '\ufeff Time , Parameter , Value \r\n"00:00","RecordID","132539"\r\n\r\n'
        "01:10, HR ,88.0\r\n00:00,Age,54.0\r\n00:10,HR,80\r\n00:20,Temp,\r\n00:30,GCS,NaN\r\n"
    )
    record = parse_record_bytes(text.encode("utf-8"), "export.csv")
    assert record.name == "132539" and record.static["Age"] == 54.0
    assert record.values[0, COL["HR"]] == 80.0 and record.values[1, COL["HR"]] == 88.0
    assert np.isnan(record.values[:, COL["Temp"]]).all() and np.isnan(record.values[:, COL["GCS"]]).all()


# ----------------------------------------------------------------------------------------------------------
# impossible values: reject or drop
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("quoted", [False, True])
def test_deidentified_is_the_same_model_input(newline: str, quoted: bool) -> None:
    """A case keeps its record without the RecordID that names the stay: every RecordID row goes, in any form
    the loader reads, and the hourly grid it reads is the same."""
    rows = DESCRIPTORS + "00:07,HR,88\n00:07,RecordID,132539\n01:30,Temp,37.2\n47:59,Urine,250\n"
    if quoted:
        rows = "\n".join(",".join(f'"{cell}"' for cell in row.split(",")) for row in rows.splitlines()) + "\n"
    data = "\ufeff" + (HEAD + rows).replace("\n", newline)
    kept = deidentified(data.encode())
    assert b"RecordID" not in kept and b"132539" not in kept
    original, stripped = parse_record_bytes(data.encode(), "upload.txt"), parse_record_bytes(kept, "upload.txt")
    np.testing.assert_array_equal(original.values, stripped.values)
    assert original.name == "132539" and stripped.name == "upload"  # named after the file, not the stay


def test_impossible_value_rejected_with_parameter_value_line_and_range() -> None:
    message = refused(DESCRIPTORS + "00:07,HR,73\n00:10,pH,7.35\n01:10,pH,735\n02:00,pH,99\n")
    assert "pH = 735" in message and "line 10" in message and "6.5 to 8" in message
    assert "2 value(s) of pH" in message and "upload again" in message


def test_impossible_values_dropped_and_named() -> None:
    record = parse(DESCRIPTORS + "00:07,Temp,-17.8\n00:08,Temp,36.6\n00:09,HR,400\n01:00,HR,80\n", on_impossible="drop")
    assert record.values[0, COL["Temp"]] == pytest.approx(36.6)  # the impossible -17.8 is not averaged in
    assert np.isnan(record.values[0, COL["HR"]]) and record.values[1, COL["HR"]] == 80.0
    temp = next(w for w in record.warnings if "Temp" in w)
    assert "-17.8" in temp and "line 8" in temp and "10 to 45" in temp and "treated as missing" in temp
    assert any("HR = 400" in w for w in record.warnings)


def test_impossible_descriptor_rejected_or_dropped() -> None:
    rows = DESCRIPTORS.replace("Height,-1", "Height,462.3") + "00:07,HR,73\n"
    message = refused(rows)
    assert "Height = 462.3 cm" in message and "line 5" in message and "50 to 275" in message
    record = parse(rows, on_impossible="drop")
    assert np.isnan(record.static["Height"]) and any("Height = 462.3" in w for w in record.warnings)


@pytest.mark.parametrize("on_impossible", ["reject", "drop"])
@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ("00:00,Gender,2\n", "Gender = 2 is not a valid code; use 0 (female), 1 (male) or -1"),
        ("00:00,ICUType,5\n", "ICUType = 5 is not a valid code"),
        ("00:00,ICUType,0\n", "1 (Coronary care), 2 (Cardiac surgery recovery)"),
    ],
)
def test_invalid_codes_are_always_refused(rows: str, expected: str, on_impossible: Literal["reject", "drop"]) -> None:
    with pytest.raises(SeriesFormatError) as info:
        parse(rows + "00:07,HR,73\n", on_impossible=on_impossible)
    assert expected in info.value.message


# ----------------------------------------------------------------------------------------------------------
# refusals
# ----------------------------------------------------------------------------------------------------------
def test_not_utf8() -> None:
    with pytest.raises(SeriesFormatError, match="not a text file"):
        parse_record_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe", "scan.png")


@pytest.mark.parametrize("data", [b"", b"  \n\r\n\t\n", b"\xef\xbb\xbf"])
def test_empty(data: bytes) -> None:
    with pytest.raises(SeriesFormatError, match="is empty"):
        parse_record_bytes(data, "empty.txt")


@pytest.mark.parametrize(
    "head", ["Time|Parameter|Value\n", "HR,Temp,GCS\n", "Time,Parameter\n", "00:00,RecordID,132539\n"]
)
def test_wrong_header(head: str) -> None:
    message = refused("00:07,HR,73\n", head=head)
    assert "header" in message and "Time,Parameter,Value" in message


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ("00:07,HR\n", "line 2 has 2 field(s)"),
        ("00:07,HR,73,1\n", "line 2 has 4 field(s)"),
        ("00:07|HR|73\n", "three comma-separated fields"),
        ("7 min,HR,73\n", "Time '7 min' is not HH:MM"),
        ("00:60,HR,73\n", "Time '00:60' is not HH:MM"),
        ("00:07:30,HR,73\n", "is not HH:MM"),
        ("0\u00b2:00,HR,73\n", "Time '0\u00b2:00' is not HH:MM"),  # '²' is a digit to str.isdigit, not to int()
        ("-00:05,HR,73\n", "Time '-00:05' is negative"),
        ("00:07,HeartRate,73\n", "unknown Parameter 'HeartRate'. Accepted: RecordID, Age"),
        ("00:07,hr,73\n", "case-sensitive"),
        ("00:07,HR,high\n", "line 2: the Value of HR is 'high', which is not a number"),
        ("00:07,HR,inf\n", "line 2: the Value of HR is infinite"),
        ("00:07,HR,-1e999\n", "infinite"),
        ("00:00,Age,54\n00:00,Age,60\n00:07,HR,73\n", "Age is given twice with different values (54 at line 2"),
        ("00:00,RecordID,12.5\n00:07,HR,73\n", "line 2: the RecordID is not a whole number"),
        ("00:00,Age,54\n", "holds no time-series measurement"),
        ("00:00,Age,54\n00:07,HR,-1\n", "holds no time-series measurement"),
        ("50:00,HR,73\n", "holds no time-series measurement"),
        ("", "holds no time-series measurement"),
    ],
)
def test_refusals_name_the_problem(rows: str, expected: str) -> None:
    assert expected in refused(rows)


@pytest.mark.parametrize(
    ("rows", "head"),
    [
        ("00:00,RecordID,MRN-481516\n00:07,HR,73\n", None),  # not a number
        ("00:00,RecordID,481516,x\n00:07,HR,73\n", None),  # four fields
        ("00:00,RecordID,481516\n00:00,RecordID,481517\n00:07,HR,73\n", None),  # given twice
        ("00:00,RecordID,481516.5\n00:07,HR,73\n", None),  # not whole
        ("00:07,HR,73\n", "00:00,RecordID,481516\n"),  # the header missing: the first row read as it
    ],
    ids=["not a number", "four fields", "twice", "not whole", "as the header"],
)
def test_a_refusal_never_quotes_the_record_id(rows: str, head: str | None) -> None:
    """A hospital's export may put its own patient identifier in RecordID: a refusal names the problem and the
    line, never the value (it quoted it, in the answer to the upload)."""
    message = refused(rows) if head is None else refused(rows, head=head)
    assert "481516" not in message
    assert "RecordID" in message


def test_descriptor_only_record_accepted_when_asked() -> None:
    record = parse(DESCRIPTORS, require_series=False)
    assert record.hours_observed == 0 and record.static["Age"] == 54.0
    assert any("no time-series measurement" in w for w in record.warnings)


def test_too_large() -> None:
    with pytest.raises(PayloadTooLargeError, match="bytes"):
        parse_record_bytes(b"x" * (MAX_BYTES + 1), "big.txt")
    with pytest.raises(PayloadTooLargeError, match="rows"):
        parse_record_bytes(HEAD.encode() + b"0:0,HR,1\n" * (MAX_ROWS + 1), "long.txt")


def test_record_files(tmp_path: Path) -> None:
    (tmp_path / "200002.txt").write_text(HEAD + "00:00,RecordID,200002\n00:07,HR,73\n")
    (tmp_path / "200001.txt").write_text(HEAD + "00:07,HR,73\n")
    (tmp_path / "notes.md").write_text("not a record")
    paths = list(iter_record_files(tmp_path))
    assert [p.name for p in paths] == ["200001.txt", "200002.txt"]
    assert list(iter_record_files(paths[0])) == [paths[0]]
    assert [load_record_file(p).name for p in paths] == ["200001", "200002"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_record_files(tmp_path / "missing"))


# ----------------------------------------------------------------------------------------------------------
# outcomes and labelled sets
# ----------------------------------------------------------------------------------------------------------
OUTCOMES_HEAD = "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n"


def test_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "Outcomes-a.txt"
    path.write_text(OUTCOMES_HEAD + "132539,6,1,5,-1,0\n132540,16,8,8,-1,1\n\n")
    assert load_outcomes(path) == {"132539": 0, "132540": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty"),
        ("RecordID,SAPS-I,Survival\n132539,6,-1\n", "no In-hospital_death column"),
        (OUTCOMES_HEAD, "no outcome rows"),
        (OUTCOMES_HEAD + "132539,6,1,5,-1\n", "line 2 has 5 field(s)"),
        (OUTCOMES_HEAD + "132539,6,1,5,-1,yes\n", "In-hospital_death is 'yes'; it must be 0"),
        (OUTCOMES_HEAD + "x1,6,1,5,-1,0\n", "RecordID 'x1' is not a whole number"),
        (OUTCOMES_HEAD + "1\u00b2,6,1,5,-1,0\n", "RecordID '1\u00b2' is not a whole number"),
        (OUTCOMES_HEAD + "132539,6,1,5,-1,0\n132539,6,1,5,-1,1\n", "listed twice with different outcomes"),
    ],
)
def test_outcomes_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "Outcomes-a.txt"
    path.write_text(text)
    with pytest.raises(SeriesFormatError) as info:
        load_outcomes(path)
    assert expected in info.value.message


def test_labelled_sets(tmp_path: Path) -> None:
    for s, ids in (("a", (100001, 100002)), ("b", (200001,))):
        (tmp_path / f"set-{s}").mkdir()
        for rid in ids:
            rows = f"00:00,RecordID,{rid}\n00:07,HR,73\n00:08,pH,735\n"
            (tmp_path / f"set-{s}" / f"{rid}.txt").write_text(HEAD + rows)
        lines = "".join(f"{rid},1,1,1,-1,{rid % 2}\n" for rid in ids)
        (tmp_path / f"Outcomes-{s}.txt").write_text(OUTCOMES_HEAD + lines)
    records = load_labelled_sets(tmp_path)
    assert [(r.name, r.label) for r in records] == [("100001", 1), ("100002", 0), ("200001", 1)]
    assert all(any("pH = 735" in w for w in r.warnings) for r in records)  # dropped, not refused
    assert [r.name for r in load_labelled_sets(tmp_path, sets=("b",))] == ["200001"]
    assert len(load_labelled_sets(tmp_path, limit=2)) == 2

    (tmp_path / "set-b" / "200009.txt").write_text(HEAD + "00:00,RecordID,200009\n00:07,HR,73\n")
    with pytest.raises(SeriesFormatError, match=r"RecordID 200009 has no row in Outcomes-b\.txt"):
        load_labelled_sets(tmp_path)
    with pytest.raises(FileNotFoundError, match="set-c"):
        load_labelled_sets(tmp_path, sets=("c",))


# ----------------------------------------------------------------------------------------------------------
# the real sets a and b (skipped when the data is absent)
# ----------------------------------------------------------------------------------------------------------
def _mortality(real_data: DataPaths) -> Path:
    root = real_data.mortality
    if not (root / "set-a").is_dir() or not (root / "Outcomes-a.txt").is_file():
        pytest.skip(f"PhysioNet 2012 mortality data not found under {root} (set-a/, Outcomes-a.txt)")
    return root


@pytest.mark.data
def test_real_labelled_records(real_data: DataPaths) -> None:
    root = _mortality(real_data)
    records = load_labelled_sets(root, sets=("a",), limit=50)
    assert len(records) == 50
    assert all(r.values.shape == (HOURS, len(COLUMNS)) and r.values.dtype == np.float32 for r in records)
    assert all(r.label in (0, 1) for r in records)
    assert 0.02 <= np.mean([r.label for r in records]) <= 0.4  # set a: 554 of 4,000 died (13.9 %)
    first = records[0]
    assert first.name == "132539" and first.label == 0  # the example in the challenge's documentation
    assert first.static["Age"] == 54 and first.static["Gender"] == 0 and first.static["ICUType4"] == 1
    assert first.values[0, COL["HR"]] == pytest.approx((73 + 77) / 2)  # 00:07 and 00:37
    assert np.mean([r.hours_observed for r in records]) > 30


@pytest.mark.data
@pytest.mark.timeout(600)  # a hang guard, not a speed target (speed lives in benchmarks/)
def test_real_every_record_parses(real_data: DataPaths) -> None:
    """All 8,000 stays of sets a and b, impossible values dropped."""
    root = _mortality(real_data)
    if not (root / "set-b").is_dir():
        pytest.skip(f"{root / 'set-b'} not found")
    paths = [p for s in "ab" for p in iter_record_files(root / f"set-{s}")]
    assert len(paths) == 8000
    records = [load_record_file(p, on_impossible="drop", require_series=False) for p in paths]
    assert [r.name for r in records] == [p.stem for p in paths]
    assert sum(r.hours_observed == 0 for r in records) == 10  # stays with descriptors only
    assert not [w for r in records for w in r.warnings if "Urine sums to" in w]  # MAX_URINE_PER_HOUR keeps them all
    dropped = [w for r in records for w in r.warnings if "impossible" in w]
    assert dropped and all(p in " ".join(dropped) for p in ("pH", "Temp", "Weight", "Height"))
    stacked = np.stack([r.values for r in records])
    for p in TIME_SERIES:  # what is kept lies inside the limits
        lo, hi = LIMITS[p]
        column = stacked[:, :, COL[p]]
        assert np.nanmin(column) >= lo and np.nanmax(column) <= hi * (HOURS if p == "Urine" else 1)
    outcomes = {**load_outcomes(root / "Outcomes-a.txt"), **load_outcomes(root / "Outcomes-b.txt")}
    assert set(outcomes) == {r.name for r in records}


def test_an_age_over_90_is_read_and_kept_as_90() -> None:
    """HIPAA's Safe Harbor aggregates ages over 89; the challenge wrote 90 for 90 or older, which the models
    learnt. An older age is read as 90 (with a warning that does not repeat it), and the record a case keeps says
    90, in any form the loader reads; 90 itself and younger ages are untouched."""
    old = DESCRIPTORS.replace("00:00,Age,54", "00:00,Age,97") + "00:07,HR,88\n"
    record = parse(old)
    assert record.static["Age"] == 90
    assert any("over 90" in w for w in record.warnings) and not any("97" in w for w in record.warnings)
    for text in (HEAD + old, (HEAD + old).replace(",Age,97", ', "Age" , "97.0" ')):
        kept = deidentified(text.encode())
        assert b"97" not in kept and b"00:00,Age,90" in kept.replace(b' "Age" ', b"Age")
        again = parse_record_bytes(kept, "upload.txt")
        np.testing.assert_array_equal(again.values, record.values)
    for age in ("90", "54"):
        text = HEAD + DESCRIPTORS.replace("00:00,Age,54", f"00:00,Age,{age}") + "00:07,HR,88\n"
        assert f"00:00,Age,{age}\n".encode() in deidentified(text.encode())
        assert not any("over 90" in w for w in parse_record_bytes(text.encode(), "upload.txt").warnings)


def test_an_age_is_shown_in_words_from_90() -> None:
    assert GLOSSARY.value_text("Age", 90.0) == "90 or older"
    assert GLOSSARY.value_text("Age", 89.0) == "89 years"


# ----------------------------------------------------------------------------------------------------------
# sizes, line breaks, repeated rows, hourly Urine
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("newline", [b"\r", b"\r\n", b"\n"])
def test_rows_are_counted_as_they_are_split(newline: bytes) -> None:
    """MAX_ROWS counted line feeds while the lines were split at any line break: a record ending its lines in \\r
    alone went past it."""
    data = (HEAD.encode() + b"00:07,HR,73\n" * (MAX_ROWS + 1)).replace(b"\n", newline)
    for read in (lambda d: parse_record_bytes(d, "long.txt"), deidentified):
        with pytest.raises(PayloadTooLargeError, match="more than 200,000 rows"):
            read(data)
    with pytest.raises(PayloadTooLargeError, match="bytes"):
        deidentified(b"x" * (MAX_BYTES + 1))


def test_lines_end_only_at_cr_and_lf() -> None:
    """A form feed or U+2028 inside a row is not a line break (str.splitlines() made two rows of it)."""
    record = parse(DESCRIPTORS + "00:07,HR,73\x0c\n00:37,HR,77\u2028\n")
    assert record.values[0, COL["HR"]] == 75
    assert refused(DESCRIPTORS + "00:07,HR,73\x0c00:37,HR,77\n").startswith("132539.txt: line 8 has 5 field(s)")


def test_an_hour_of_thousands_of_digits_is_a_format_error() -> None:
    """int() refuses over 4,300 digits with a bare ValueError."""
    message = refused(DESCRIPTORS + "9" * 5000 + ":00,HR,73\n")
    assert message.startswith("132539.txt: line 8: Time '9999") and "an hour of 5,000 digits" in message
    assert len(message) < 300


def test_a_repeated_row_is_refused() -> None:
    """Every row written twice doubled the summed Urine (and the risk); none of the 8,000 real stays repeats a row
    (Time, Parameter and Value)."""
    rows = DESCRIPTORS + "00:07,HR,73\n00:30,Urine,250\n"
    assert parse(rows).values[0, COL["Urine"]] == 250
    message = refused(rows + "00:30,Urine,250\n")
    assert "line 10 repeats line 9 (the same Time, Parameter and Value: Urine = 250 at 00:30)" in message
    assert "line 9 repeats line 8" in refused(DESCRIPTORS + "00:07,HR,73\n0:07,HR,73.0\n")  # the same, written apart
    assert parse(rows + "00:31,Urine,250\n00:30,Urine,251\n").values[0, COL["Urine"]] == 751  # not repeats


@pytest.mark.parametrize("on_impossible", ["reject", "drop"])
def test_an_hour_of_more_urine_than_any_real_one_is_impossible(on_impossible: Literal["reject", "drop"]) -> None:
    """60 rows of 19,000 mL in one hour summed to 1.14e6 mL; the most in one hour of the real stays is 23,580."""
    rows = DESCRIPTORS + "".join(f"00:{m:02d},Urine,19000\n" for m in range(60)) + "01:10,Urine,20000\n01:20,HR,70\n"
    if on_impossible == "reject":
        message = refused(rows)
        assert "Urine sums to 1.14e+06 mL in hour 0" in message and "at most 25,000 mL" in message
        return
    record = parse(rows, on_impossible="drop")
    urine = record.values[:, COL["Urine"]]
    assert np.isnan(urine[0]) and urine[1] == 20000
    assert any("Urine sums to 1.14e+06 mL in hour 0" in w and "treated as missing" in w for w in record.warnings)
    assert parse(DESCRIPTORS + "00:10,Urine,19990\n00:50,Urine,3590\n").values[0, COL["Urine"]] == 23580


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_utf16_is_named(encoding: str) -> None:
    with pytest.raises(SeriesFormatError, match="is UTF-16 text, not UTF-8: save it as UTF-8"):
        parse_record_bytes((HEAD + "00:07,HR,73\n").encode(encoding), "132539.txt")
