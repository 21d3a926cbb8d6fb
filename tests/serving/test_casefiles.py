"""Which kind of case a file of a case upload is (serving/_casefiles.py): by its suffix, and for .csv and .txt by
whether its first line is the header of a PhysioNet 2012 record (any other .txt is no case: 415)."""

from __future__ import annotations

import io
import zipfile

import pytest

from serving._casefiles import CaseFile, Rejected, ZipLimits, classify

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
