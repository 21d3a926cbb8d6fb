"""ICU time-series loader (models/sepsis_io.py) on a real PhysioNet 2019 stay and generated files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from models.config import DataPaths
from models.errors import PayloadTooLargeError, SeriesFormatError
from models.sepsis_io import (
    FEATURES,
    GLOSSARY,
    LABEL,
    MAX_HOURS,
    SepsisRecord,
    deidentified,
    iter_series_files,
    load_labelled_dir,
    load_series_file,
    parse_series_bytes,
)

COL = {name: i for i, name in enumerate(FEATURES)}


def parse(text: str, min_hours: int = 1, on_impossible: Literal["reject", "drop"] = "reject") -> SepsisRecord:
    return parse_series_bytes(text.encode(), "stay.csv", min_hours=min_hours, on_impossible=on_impossible)


# ----------------------------------------------------------------------------------------------------------
# a real stay
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.data
def test_real_psv(real_data: DataPaths) -> None:
    files = sorted(real_data.sepsis_training.glob("*.psv"))[:2] if real_data.sepsis_training.is_dir() else []
    if not files:
        pytest.skip(f"no .psv files under {real_data.sepsis_training}")
    for path in files:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        header = lines[0].split("|")
        assert len(header) == 41 and header[:40] == FEATURES and header[40] == LABEL
        expected = np.genfromtxt(path, delimiter="|", skip_header=1, dtype=np.float64)  # (hours, 41), nan

        record = load_series_file(path)
        assert record.name == path.name
        assert record.hours == len(lines) - 1 == expected.shape[0]
        assert record.values.shape == (record.hours, 40) and record.values.dtype == np.float32
        np.testing.assert_allclose(record.values, expected[:, :40].astype(np.float32), equal_nan=True)
        assert record.labels is not None and record.labels.dtype == np.int64
        np.testing.assert_array_equal(record.labels, expected[:, 40].astype(np.int64))
        assert record.warnings == []  # a complete file: nothing missing, nothing impossible
        assert list(record.frame().columns) == FEATURES


@pytest.mark.data
def test_real_labelled_dir(real_data: DataPaths) -> None:
    if not real_data.sepsis_training.is_dir():
        pytest.skip(f"{real_data.sepsis_training} not found")
    records = load_labelled_dir(real_data.sepsis_training, limit=3)
    assert len(records) == 3 and all(r.labels is not None and len(r.labels) == r.hours for r in records)


# ----------------------------------------------------------------------------------------------------------
# columns
# ----------------------------------------------------------------------------------------------------------
def test_subset_of_columns_in_another_order() -> None:
    record = parse("Resp,SepsisLabel,Temp,Age,HR\n18,0,37.2,64,80\n22,1,38.4,64,NaN\n")
    assert record.hours == 2
    np.testing.assert_array_equal(record.values[:, COL["HR"]], [80, np.nan])
    np.testing.assert_allclose(record.values[:, COL["Temp"]], [37.2, 38.4], rtol=1e-6)
    np.testing.assert_array_equal(record.values[:, COL["Resp"]], [18, 22])
    np.testing.assert_array_equal(record.values[:, COL["Age"]], [64, 64])
    np.testing.assert_array_equal(record.values[:, COL["ICULOS"]], [1, 2])  # filled in when absent
    assert record.labels is not None and record.labels.tolist() == [0, 1]
    untouched = [c for c in FEATURES if c not in {"HR", "Temp", "Resp", "Age", "ICULOS"}]
    assert np.isnan(record.values[:, [COL[c] for c in untouched]]).all()
    assert any("O2Sat" in w and "never measured" in w for w in record.warnings)


def test_pipe_and_tab_separators_and_bom() -> None:
    for text in ("HR|Temp\n80|37\n", "HR\tTemp\n80\t37\n", "\ufeffHR,Temp\n80,37\n"):
        record = parse(text)
        assert record.values[0, COL["HR"]] == 80 and record.values[0, COL["Temp"]] == 37


def test_unknown_column_is_named() -> None:
    with pytest.raises(SeriesFormatError, match="'HeartRate'") as info:
        parse("HeartRate,Temp\n80,37\n")
    assert "HR" in info.value.message and info.value.status_code == 422


def test_a_column_name_in_the_wrong_case_is_pointed_out() -> None:
    with pytest.raises(SeriesFormatError) as info:
        parse("hr,Temp,iculos,Shoe\n80,37,1,9\n")
    assert "case-sensitive: 'HR' for 'hr', 'ICULOS' for 'iculos'." in info.value.message, info.value.message


def test_semicolons_are_named_with_the_way_out() -> None:
    """As spreadsheets in a European locale export CSV: semicolons between columns, commas in numbers."""
    with pytest.raises(SeriesFormatError, match="separated by semicolons") as info:
        parse("HR;Temp;ICULOS\n80;37,5;1\n")
    assert "commas between columns and points as the decimal mark" in info.value.message


def test_empty_nameless_columns_are_dropped_and_nameless_values_refused() -> None:
    """Trailing separators, as a spreadsheet leaves them, are not columns; a value under no name is refused."""
    record = parse("HR,Temp,ICULOS,,\n80,37,1,,\n81,37.2,2,,\n")
    assert record.values[1, COL["HR"]] == 81 and record.values[1, COL["Temp"]] == pytest.approx(37.2)
    with pytest.raises(SeriesFormatError, match="column 2 has no name in the header but holds values"):
        parse("HR,,Temp\n80,5,37\n")


def test_duplicated_column_is_named_as_duplicated() -> None:
    with pytest.raises(SeriesFormatError) as info:
        parse("HR,Temp,HR\n80,37,81\n")
    assert "HR" in info.value.message and "more than once" in info.value.message, info.value.message


def test_no_feature_column() -> None:
    with pytest.raises(SeriesFormatError, match="none of the PhysioNet"):
        parse("SepsisLabel\n0\n")


def test_row_with_more_fields_than_the_header_is_refused() -> None:
    """A surplus field must not silently shift every value into the next column."""
    with pytest.raises(SeriesFormatError):
        record = parse("HR,Temp\n80,37,38\n81,37.5,38.5\n")
        raise AssertionError(f"accepted: HR={record.values[:, COL['HR']]}, Temp={record.values[:, COL['Temp']]}")


def test_ragged_row_later_in_the_file_is_refused() -> None:
    with pytest.raises(SeriesFormatError, match="could not be parsed"):
        parse("HR,Temp\n80,37\n81,37.5,99\n")


# ----------------------------------------------------------------------------------------------------------
# cells
# ----------------------------------------------------------------------------------------------------------
def test_non_numeric_cell_is_named_with_row() -> None:
    with pytest.raises(SeriesFormatError, match=r"column Temp row 3 holds 'high'"):
        parse("HR,Temp\n80,37\n81,37.1\n82,high\n")


def test_infinite_value_is_refused() -> None:
    with pytest.raises(SeriesFormatError, match="HR row 2 is infinite"):
        parse("HR\n80\ninf\n")


def test_impossible_value_is_rejected_with_column() -> None:
    with pytest.raises(SeriesFormatError, match=r"HR = 500 beats/min at row 2 is impossible") as info:
        parse("HR,Temp\n80,37\n500,37\n")
    assert "0 to 350" in info.value.message


def test_impossible_value_dropped_with_warning() -> None:
    record = parse("HR,Temp\n80,37\n500,37\n90,5\n", on_impossible="drop")
    np.testing.assert_array_equal(record.values[:, COL["HR"]], [80, np.nan, 90])
    np.testing.assert_array_equal(record.values[:, COL["Temp"]], [37, 37, np.nan])
    assert any("HR = 500" in w and "treated as missing" in w for w in record.warnings)
    assert any("Temp = 5" in w for w in record.warnings)


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        ("80,5\n81,2\n", "ICULOS goes from 5 at row 1 to 2 at row 2"),  # rows out of order
        ("80,1\n81,2\n82,1\n83,2\n", "from 2 at row 2 to 1 at row 3"),  # two stays in one file
        ("80,3\n81,\n82,3\n", "from 3 at row 1 to 3 at row 3"),  # a repeated hour, a blank ICULOS between
    ],
    ids=["backwards", "two stays", "repeated"],
)
def test_hours_out_of_order_are_refused(rows: str, said: str) -> None:
    with pytest.raises(SeriesFormatError, match=said) as info:
        parse("HR,ICULOS\n" + rows)
    assert "one stay per file" in info.value.message


def test_skipped_hours_are_read_with_a_warning() -> None:
    record = parse("HR,ICULOS\n80,1\n81,2\n82,5\n83,\n84,7\n")
    assert record.values.shape[0] == 5
    assert [w for w in record.warnings if "ICULOS" in w] == [
        "ICULOS skips from 2 to 5 at row 3: the models read rows as consecutive hours, so 2 hour(s) without a row "
        "are not accounted for."
    ]
    assert not [w for w in parse("HR,ICULOS\n80,1\n81,\n82,3\n").warnings if "ICULOS" in w]


def test_impossible_label_is_rejected() -> None:
    with pytest.raises(SeriesFormatError, match="SepsisLabel = 2"):
        parse("HR,SepsisLabel\n80,2\n")


def test_fio2_in_percent_is_converted_with_a_warning() -> None:
    record = parse("FiO2,HR\n40,80\n0.5,81\n100,82\nNaN,83\n")
    np.testing.assert_allclose(record.values[:, COL["FiO2"]], [0.4, 0.5, 1.0, np.nan], rtol=1e-6)
    assert any("FiO2" in w and "percent" in w and "2 row" in w for w in record.warnings)
    with pytest.raises(SeriesFormatError, match="FiO2 = 150"):
        parse("FiO2\n150\n")


def test_missing_value_tokens() -> None:
    record = parse("HR,Temp,O2Sat,Resp\nNaN,,nan,NA\nnull,None,N/A,20\n 80 , NaN ,95,  \n")
    block = record.values[:, [COL["HR"], COL["Temp"], COL["O2Sat"], COL["Resp"]]]
    expected = np.array([[np.nan] * 4, [np.nan, np.nan, np.nan, 20], [80, np.nan, 95, np.nan]])
    np.testing.assert_array_equal(block, expected)


def test_missing_labels_read_as_zero() -> None:
    record = parse("HR,SepsisLabel\n80,NaN\n81,1\n")
    assert record.labels is not None and record.labels.tolist() == [0, 1]


# ----------------------------------------------------------------------------------------------------------
# sizes and encodings
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [b"", b"   \n\n \n"], ids=["empty", "blank"])
def test_empty_file(data: bytes) -> None:
    with pytest.raises(SeriesFormatError, match="empty"):
        parse_series_bytes(data, "empty.psv")


def test_header_only() -> None:
    with pytest.raises(SeriesFormatError, match="0 hourly row"):
        parse("HR|O2Sat|Temp\n")


def test_min_hours() -> None:
    with pytest.raises(SeriesFormatError, match="at least 3"):
        parse("HR\n80\n81\n", min_hours=3)
    assert parse("HR\n80\n81\n82\n", min_hours=3).hours == 3


def test_max_hours() -> None:
    assert parse("HR\n" + "80\n" * MAX_HOURS).hours == MAX_HOURS
    with pytest.raises(PayloadTooLargeError, match="1,001 rows") as info:
        parse("HR\n" + "80\n" * (MAX_HOURS + 1))
    assert info.value.status_code == 413


def test_non_utf8_bytes() -> None:
    with pytest.raises(SeriesFormatError, match=r"not a text file \(byte 17 is not text\)"):
        parse_series_bytes(b"HR,Temp\n80,37\n80,\xff\xfe\x00\x81,37\n", "binary.psv")


def test_a_binary_file_that_is_valid_utf8_is_not_text() -> None:
    """A zip (an .xlsx) is valid UTF-8 often enough, NULs included: it was read as a header of unknown columns."""
    with pytest.raises(SeriesFormatError, match=r"stay.xlsx is not a text file \(byte 4 is not text\)"):
        parse_series_bytes(b"PK\x03\x04\x00\x00\x08\x00HR,Temp\n", "stay.xlsx")


def test_iter_series_files(tmp_path: Path) -> None:
    for name in ("b.psv", "a.CSV", "c.txt"):
        (tmp_path / name).write_text("HR\n80\n")
    assert [p.name for p in iter_series_files(tmp_path)] == ["a.CSV", "b.psv"]
    with pytest.raises(FileNotFoundError):
        list(iter_series_files(tmp_path / "missing"))


def test_labelled_dir_needs_labels(tmp_path: Path) -> None:
    (tmp_path / "x.psv").write_text("HR|SepsisLabel\n80|0\n")
    (tmp_path / "y.psv").write_text("HR\n80\n")
    with pytest.raises(SeriesFormatError, match="no SepsisLabel"):
        load_labelled_dir(tmp_path)


def test_an_age_of_90_or_more_is_read_and_kept_as_the_challenges_code() -> None:
    """HIPAA's Safe Harbor aggregates ages over 89; the 2019 challenge wrote 100 for 90 or older (its stays hold
    no age from 90 to 99), which the models learnt. An age from 90 is read as 100, with a warning that does not
    repeat it, and the stay a case keeps says 100, every other byte as uploaded."""
    text = "HR|Age|Temp\r\n80|95|37\r\n81|95.0|37.1\r\n82||37\r\n"
    record = parse_series_bytes(text.encode(), "stay.psv")
    np.testing.assert_array_equal(record.values[:, COL["Age"]], [100, 100, np.nan])
    assert any("90 or more" in w for w in record.warnings) and not any("95" in w for w in record.warnings)
    kept = deidentified(text.encode())
    assert kept == b"HR|Age|Temp\n80|100|37\n81|100|37.1\n82||37\n"
    np.testing.assert_array_equal(parse_series_bytes(kept, "stay.psv").values, record.values)
    # read as the loader reads it: quoted cells, a line break inside one (the loader's parse, not a line split)
    for tricky in ('"HR","Age"\n80,"93"\n', 'HR|ICULOS|Age\n80|"1\n"|93\n81|2|93\n', "HR,Age\r80,93\r81,91\r"):
        kept = deidentified(tricky.encode())
        assert b"93" not in kept and b"91" not in kept, kept
        np.testing.assert_array_equal(
            parse_series_bytes(kept, "stay.csv").values, parse_series_bytes(tricky.encode(), "stay.csv").values
        )
    for untouched in ("\ufeffHR,Age\n80,89\n81,100\n", "HR,Temp\n80,37\n"):
        assert deidentified(untouched.encode()) == untouched.encode()  # the same bytes: the same case id as before
    with pytest.raises(SeriesFormatError, match="empty"):
        deidentified(b"")  # refused, as the loader refuses it
    assert not any("90 or more" in w for w in parse("HR,Age\n80,89\n81,100\n").warnings)
    assert GLOSSARY.value_text("Age", 100.0) == "90 or older" and GLOSSARY.value_text("Age", 64.0) == "64 years"


# ----------------------------------------------------------------------------------------------------------
# size and shape, checked before pandas reads a file: the loader and deidentified alike
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.timeout(20)  # each took minutes and gigabytes when pandas saw it
@pytest.mark.parametrize(
    ("data", "error", "said"),
    [
        (b"HR" + b"," * 100_000 + b"\n" + b"80\n" * 500, SeriesFormatError, "the header has 100,001 columns"),
        # str.splitlines() split the header at the form feed, so its width went uncounted; pandas does not split there
        (b"HR\x0c" + b"," * 200_000 + b"\n" + b"80\n" * 1000, SeriesFormatError, "the header has 200,001 columns"),
        (b"HR\n80" + b"," * 3_000_000 + b"\n", SeriesFormatError, "line 2 has 3,000,001 fields and the header 1"),
        # a quote left open in the header runs it on, through the separators of the next line
        (b'x"y,"z\n' + b"," * 200_000 + b'"\n' + b"80\n" * 500, SeriesFormatError, "has a stray quote"),
        (b"HR\n" + b"\n" * 3_000_000 + b"80\n", PayloadTooLargeError, "3,000,003 lines"),
        (b"HR\r" + b"80\r" * (MAX_HOURS + 1), PayloadTooLargeError, "1,001 rows"),  # \r alone ends a line
        (b"HR\n80\n\x0c\n81\n", SeriesFormatError, r"line 3 holds only '\\x0c'"),  # pandas: an hour of nothing
        (b"HR,Temp,HR\n80,37,81\n", SeriesFormatError, "'HR' appear more than once"),
    ],
    ids=["wide header", "form feed in header", "wide row", "open quote", "blank lines", "cr rows", "form feed row",
         "duplicate"],
)  # fmt: skip
def test_size_and_shape_are_refused_before_parsing_by_the_loader_and_deidentified(
    data: bytes, error: type[Exception], said: str
) -> None:
    """deidentified (serving computes every uploaded stay's case id with it) refuses, with the loader's error,
    every file the loader refuses for its size or shape, before pandas reads it."""
    with pytest.raises(error, match=said):
        parse_series_bytes(data, "stay.csv")
    with pytest.raises(error, match=said):
        deidentified(data)


@pytest.mark.parametrize(
    "text",
    [
        "HR|Age|\n80|95|\n81|95|\n",
        "HR,Age,\r\n80,95,\r\n",
        "HR,Age,,\n80,95,,\n81,NA,,\n",
        "HR|Age|\n80|95|NA\n81|95|\n",
        '"HR","Age",""\n80,93,\n',
        "HR|Age\n80|95\n   \n81|95\n",
        "Age,HR\n95,80\n,81\n",
        "HR,Age\n80,95,\n81,95\n",
        'HR|ICULOS|Age|\n80|"1\n"|93|\n81|2|93|\n',
    ],
)
def test_the_kept_record_parses_as_the_upload(text: str) -> None:
    """A case's stay is read again when it is explained: it must be the same model input. A trailing separator (a
    blank-named empty column, which the loader drops) came back as a column 'Unnamed: 2', which it refused."""
    upload = parse_series_bytes(text.encode(), "stay.csv")
    kept = deidentified(text.encode())
    assert b"95" not in kept and b"93" not in kept and b"Unnamed" not in kept, kept
    again = parse_series_bytes(kept, "stay.csv")
    np.testing.assert_array_equal(again.values, upload.values)


def test_deidentified_refuses_a_blank_named_column_with_values_as_the_loader_does() -> None:
    for parse_it in (lambda d: parse_series_bytes(d, "stay"), deidentified):
        with pytest.raises(SeriesFormatError, match="column 3 has no name in the header but holds values"):
            parse_it(b"HR|Age|\n80|95|7\n")


# ----------------------------------------------------------------------------------------------------------
# what a refusal quotes
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"HR|Temp\n" + b"x" * 5_000_000 + b"|37\n", "column HR row 1 holds 'xxxxxxxxxx"),
        (b"HR|" + b"y" * 5_000_000 + b"\n80|37\n", r"unknown column\(s\) 'yyyyyyyyyy"),
        (b"HR|" + b"y" * 5_000_000 + b"|" + b"y" * 5_000_000 + b"\n80|37|1\n", "'yyyyyyyyyy"),  # duplicated
    ],
    ids=["cell", "column", "duplicated column"],
)
def test_a_refusal_quotes_at_most_40_characters_of_the_file(data: bytes, said: str) -> None:
    with pytest.raises(SeriesFormatError, match=said) as info:
        parse_series_bytes(data, "stay.psv")
    assert len(info.value.message) < 400, len(info.value.message)


# ----------------------------------------------------------------------------------------------------------
# cells: codes, booleans, hours, an empty stay
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["True", "False", "TRUE", "true"])
def test_a_boolean_cell_is_not_a_number(cell: str) -> None:
    """pandas reads a column of True / False as booleans, which passed as 1 / 0."""
    with pytest.raises(SeriesFormatError, match=f"column HR row 1 holds {cell.capitalize()} .*, which is not a num"):
        parse(f"HR,Temp\n{cell},37\n{cell},37\n")
    with pytest.raises(SeriesFormatError, match="column Gender row 1 holds True"):
        parse("HR,Gender\n80,True\n")


@pytest.mark.parametrize("on_impossible", ["reject", "drop"])
@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("HR,Gender\n80,0.5\n", "Gender = 0.5 at row 1 is not a valid code; use 0 (female) or 1 (male)"),
        ("HR,Gender\n80,1\n81,2\n", "Gender = 2 at row 2 is not a valid code"),
        ("HR,Unit1\n80,0.5\n", "Unit1 = 0.5 at row 1 is not a valid code"),
        ("HR,SepsisLabel\n80,0\n81,0.9\n", "SepsisLabel = 0.9 at row 2 is not a valid code"),
        ("HR,Unit1,Unit2\n80,0,1\n81,1,1\n", "row 2 has Unit1 = 1 and Unit2 = 1"),  # none of the real stays has
    ],
)
def test_coded_columns_hold_0_or_1(text: str, said: str, on_impossible: Literal["reject", "drop"]) -> None:
    with pytest.raises(SeriesFormatError, match=re.escape(said)):
        parse(text, on_impossible=on_impossible)
    assert parse("HR,Gender,Unit1,Unit2,SepsisLabel\n80,0,1,0,0\n81,,,,1\n").labels is not None


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        ("80,1\n81,1.25\n82,1.5\n", "ICULOS = 1.25 at row 2 is not a whole number of hours"),
        ("80,1\n81,\n82,\n83,2\n", "from 1 at row 1 to 2 at row 4: 3 rows for 1 hour"),  # an hour repeats
        ("80,-1\n81,0\n", "ICULOS = -1 hours at row 1 is impossible"),
    ],
    ids=["fraction", "rows between", "negative"],
)
def test_iculos_counts_whole_hours_one_row_each(rows: str, said: str) -> None:
    with pytest.raises(SeriesFormatError, match=said):
        parse("HR,ICULOS\n" + rows)


def test_an_hour_later_than_the_longest_training_stay_is_read_with_a_warning() -> None:
    """The longest stay of the challenge's training data is 336 hours; ICULOS 5000 to 5049 turned the answer into
    an alert where 1 to 50 did not: the risk there is extrapolated, and the reader is told."""
    late = parse("HR,ICULOS\n" + "".join(f"80,{5000 + h}\n" for h in range(50)))
    assert any("ICULOS reaches 5049 hours" in w and "extrapolated" in w for w in late.warnings), late.warnings
    assert any("after hour 336" in w for w in parse("HR,ICULOS\n80,336\n81,337\n").warnings)
    assert not [w for w in parse("HR,ICULOS\n" + "".join(f"80,{h}\n" for h in range(287, 337))).warnings if "ICU" in w]


@pytest.mark.parametrize(
    "text", ["HR,Temp\n" + "NaN,NaN\n" * 30, "ICULOS\n1\n2\n3\n", "Gender,Age\n1,70\n", "HR,Temp\n,\n"]
)
def test_a_stay_with_no_measured_value_is_scored_and_says_so(text: str) -> None:
    """The first hour of many stays has no measurement yet: an hourly early warning answers it, and says what the
    risk rests on (before, such a file was scored without a word)."""
    record = parse(text)
    assert [w for w in record.warnings if "holds no measured value yet" in w and "rests on age" in w]
    assert not [w for w in parse("HR,Temp\n80,\n").warnings if "no measured value" in w]


def test_all_measured_values_impossible_and_dropped_says_so() -> None:
    record = parse("HR,Age\n500,70\n", on_impossible="drop")
    assert [w for w in record.warnings if re.search(r"holds no measured value yet \(.* or was impossible\)", w)]


# ----------------------------------------------------------------------------------------------------------
# encodings
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_is_named(encoding: str) -> None:
    with pytest.raises(SeriesFormatError, match="is UTF-16 text, not UTF-8: save it as UTF-8"):
        parse_series_bytes("HR,Temp\n80,37\n".encode(encoding), "stay.csv")


def test_latin1_is_named() -> None:
    with pytest.raises(SeriesFormatError, match=r"is not UTF-8 \(byte 13, 0xb0.*another 8-bit encoding.*UTF-8"):
        parse_series_bytes("HR,Temp\n80,37°\n".encode("latin-1"), "stay.csv")
