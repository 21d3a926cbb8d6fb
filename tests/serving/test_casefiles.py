"""Which kind of case a file of a case upload is (serving/_casefiles.py): by its suffix, and for .csv and .txt by
whether its first line is the header of a PhysioNet 2012 record (any other .txt is no case: 415)."""

from __future__ import annotations

import io
import zipfile

import pytest

from serving._casefiles import CaseFile, Rejected, Unpacked, ZipLimits, classify
from serving._http import ApiError

LIMITS = ZipLimits(max_members=10, max_unzipped_bytes=10**6, max_member_bytes=10**6)
LONG = b"Time,Parameter,Value\n00:00,RecordID,1\n00:00,Age,54\n"
WIDE = b"HR,O2Sat,Temp,SepsisLabel\n80,97,36.5,0\n"


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("a.txt", LONG, "mortality"),
        ("a.csv", LONG, "mortality"),
        ("a.csv", b"\xef\xbb\xbf" + LONG.replace(b"\n", b"\r\n"), "mortality"),  # BOM, Windows lines
        ("a.csv", b'"Time","Parameter","Value"\n00:00,Age,54\n', "mortality"),
        ("a.csv", WIDE, "sepsis"),
        ("a.psv", LONG, "sepsis"),  # a .psv is a 2019 record whatever it holds: its parser says what is wrong
        ("a.csv", b"Time,Parameter,Value,Extra\n", "sepsis"),  # not the 2012 header: the sepsis parser answers
        ("a.png", b"\x89PNG\r\n\x1a\n", "xray"),
    ],
)
def test_a_file_is_the_kind_its_suffix_and_header_say(name: str, data: bytes, kind: str) -> None:
    (item,) = classify("file 1", name, data, LIMITS)
    assert isinstance(item, CaseFile) and item.kind == kind and item.upload_name == "upload" + name[1:]


@pytest.mark.parametrize("data", [b"hello\n", WIDE.replace(b",", b"|"), b""])
def test_a_txt_that_is_not_a_2012_record_is_no_case(data: bytes) -> None:
    (item,) = classify("file 3", "notes.txt", data, LIMITS)
    assert isinstance(item, Rejected) and item.error.status == 415 and "PhysioNet 2012 .txt" in item.error.detail


def test_a_zip_member_is_sniffed_too() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("set-a/1.txt", LONG)
        zf.writestr("stays/2.csv", WIDE)
    items = list(classify("file 1", "batch.zip", buffer.getvalue(), LIMITS))
    assert [(i.where, i.kind) for i in items if isinstance(i, CaseFile)] == [
        ("file 1, member 1", "mortality"),
        ("file 1, member 2", "sepsis"),
    ]


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA])
def test_a_member_whose_compressed_data_is_corrupt_is_refused_alone(compression: int) -> None:
    """zlib and lzma raise their own errors on a corrupt stream: the member is refused, the next one read."""
    data = bytearray(_zip({"a.csv": WIDE * 200, "b.csv": WIDE}, compression))
    start = data.index(b"a.csv") + len("a.csv")  # the first member's compressed bytes follow its name
    data[start + 8 : start + 24] = b"\xff" * 16
    first, second = classify("file 2", "batch.zip", bytes(data), LIMITS)
    assert isinstance(first, Rejected) and first.error.status == 422
    assert first.error.detail == "File 2, member 1 cannot be unpacked (its compressed data is corrupt)."
    assert isinstance(second, CaseFile) and second.kind == "sepsis"


def _many(n: int) -> bytes:
    return _zip({f"{i}.png": b"" for i in range(n)}, zipfile.ZIP_STORED)


def test_a_zip_of_too_many_entries_is_refused_by_its_index_size_before_it_is_parsed() -> None:
    with pytest.raises(ApiError) as err:
        list(classify("file 1", "a.zip", _many(12_000), LIMITS))
    assert err.value.status == 413 and "more than 10 entries" in err.value.detail
    # 11 entries: a small index, parsed, and counted
    with pytest.raises(ApiError) as err:
        list(classify("file 1", "a.zip", _many(11), LIMITS))
    assert err.value.status == 413 and "a .zip of 11 entries" in err.value.detail


def test_the_index_size_of_a_zip64_archive_is_its_zip64_record_s() -> None:
    """Over 65,535 entries a zip carries a ZIP64 end record, whose index size zipfile reads; the plain record's
    may say anything."""
    data = bytearray(_many(70_000))
    end = data.rindex(b"PK\x05\x06")
    assert data[end - 20 : end - 16] == b"PK\x06\x07"  # the ZIP64 locator
    data[end + 12 : end + 16] = (0).to_bytes(4, "little")  # the plain record lies: an empty index
    with pytest.raises(ApiError) as err:
        list(classify("file 1", "a.zip", bytes(data), LIMITS))
    assert err.value.status == 413 and "more than 10 entries" in err.value.detail


def test_the_zips_of_one_upload_share_one_unpacked_budget() -> None:
    """Each zip under the limit, together over it: the upload is refused at the zip that passes it."""
    limits = ZipLimits(max_members=10, max_unzipped_bytes=3 * 2**20, max_member_bytes=2**20)
    member = {f"{i}.csv": WIDE + b"0" * (2**20 - len(WIDE) - 1) for i in range(2)}  # 2 MiB a zip
    unpacked = Unpacked()
    assert len(list(classify("file 1", "a.zip", _zip(member), limits, unpacked))) == 2
    with pytest.raises(ApiError) as err:
        list(classify("file 2", "b.zip", _zip(member), limits, unpacked))
    assert err.value.status == 413 and err.value.detail.startswith(
        "File 2 unpacks to 2 MiB (with the upload's earlier zips, 4 MiB); at most 3 MiB are accepted in one case "
        "upload;"
    )
    # each zip alone is within the limit
    assert len(list(classify("file 2", "b.zip", _zip(member), limits))) == 2
