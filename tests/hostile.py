"""A corpus of hostile files, generated here (never downloaded): image bombs, disguised and truncated
images, lying and polyglot DICOMs, every DICOM of pydicom-data, and ICU records with every kind of
breakage. ``python -m tests.hostile --out DIR`` writes them to a folder for trying by hand.

Each item says which prediction route it goes to and what MedLens must answer: a 4xx (``statuses``),
or, for the real DICOMs of pydicom-data, either a 4xx or a 200 that flags a non-chest image as out of
distribution (``ood_ok``).
"""

from __future__ import annotations

import argparse
import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files

FOUR_XX = frozenset(range(400, 500))


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    route: str  # "xray" | "sepsis"
    statuses: frozenset[int] = FOUR_XX
    ood_ok: bool = False  # a 200 is right when it says in_distribution: false


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` 8-bit gray pixels, with a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + _png_chunk(b"IEND", b"")
    )


def png_bomb(side: int = 12_000) -> bytes:
    """A real, complete PNG of ``side`` x ``side`` zeros: tiny on disk, 144 MB once decoded."""
    row = b"\0" + b"\0" * side  # filter byte + pixels
    raw = zlib.compress(row * side, 9)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b"")


def _image_bytes(fmt: str, size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, size[::-1], dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def _tiff_bomb() -> bytes:
    """A deflate-compressed TIFF of 9000 x 9000 zeros (81 M pixels), a few hundred kB on disk."""
    buffer = io.BytesIO()
    Image.new("L", (9000, 9000)).save(buffer, format="TIFF", compression="tiff_deflate")
    return buffer.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 marker is patched to claim ``width`` x ``height``."""
    data = bytearray(_image_bytes("JPEG"))
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _radiograph() -> pydicom.Dataset:
    return pydicom.dcmread(str(get_testdata_file("RG1_UNCR.dcm")))


def _dicom_bytes(ds: pydicom.Dataset, preamble: bytes | None = None) -> bytes:
    if preamble is not None:
        ds.preamble = preamble.ljust(128, b"\0")
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def lying_dicom() -> bytes:
    """Rows x Columns far beyond the pixel data that follows."""
    ds = _radiograph()
    ds.Rows, ds.Columns = 7000, 7000
    return _dicom_bytes(ds)


def wrong_syntax_dicom() -> bytes:
    """Uncompressed pixels declared as RLE Lossless (the UID patched in place: pydicom refuses to write it)."""
    data = _dicom_bytes(_radiograph())
    explicit, rle = b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.5\x00"
    assert explicit in data[:512]
    return data.replace(explicit, rle, 1)


def polyglot_dicom() -> bytes:
    """A valid radiograph whose preamble starts like a Windows executable (CVE-2019-11687)."""
    return _dicom_bytes(_radiograph(), b"MZ\x90\x00\x03\x00\x00\x00\x04\x00This program cannot be run in DOS mode")


def truncated_dicom() -> bytes:
    data = _dicom_bytes(_radiograph())
    return data[: len(data) // 2]


def nested_sequence(depth: int) -> bytes:
    """A private sequence (0009,1010) of undefined length whose one item holds the next, ``depth`` deep (explicit
    VR little endian): 16 bytes a level."""
    opened = struct.pack("<HH2sHI", 0x0009, 0x1010, b"SQ", 0, 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    closed = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return opened * depth + closed * depth


def deep_dicom(data: bytes | None = None, depth: int = 300) -> bytes:
    """A DICOM (explicit VR little endian; by default a real radiograph) with :func:`nested_sequence` just before
    its PatientName: pydicom reads sequences recursively, and 300 levels exhaust Python's stack."""
    data = _dicom_bytes(_radiograph()) if data is None else data
    at = data.index(b"\x10\x00\x10\x00PN")
    return data[:at] + nested_sequence(depth) + data[at:]


def xray_corpus() -> Iterator[Hostile]:
    yield Hostile("png claiming 100000 x 100000.png", png_claiming(100_000, 100_000), "xray", frozenset({413, 415}))
    yield Hostile("png bomb 12000 x 12000.png", png_bomb(), "xray", frozenset({413}))
    yield Hostile("jpeg claiming 60000 x 60000.jpeg", jpeg_claiming(60_000, 60_000), "xray", frozenset({413, 415}))
    yield Hostile("tiff bomb named .png.png", _tiff_bomb(), "xray", frozenset({413}))
    yield Hostile("gif.png", _image_bytes("GIF"), "xray", frozenset({415}))
    yield Hostile("truncated png.png", _image_bytes("PNG", (512, 512))[:300], "xray", frozenset({415}))
    yield Hostile("zip as image.png", b"PK\x03\x04" + b"\0" * 64, "xray", frozenset({415}))
    yield Hostile("html.png", b"<html><script>alert(1)</script></html>", "xray", frozenset({415}))
    yield Hostile("dicom rows x columns beyond its pixels.dcm", lying_dicom(), "xray", frozenset({413, 415, 422}))
    yield Hostile("dicom with the wrong transfer syntax.dcm", wrong_syntax_dicom(), "xray", frozenset({415, 422}))
    yield Hostile("dicom with an executable preamble.dcm", polyglot_dicom(), "xray", frozenset({422}))
    yield Hostile("truncated dicom.dcm", truncated_dicom(), "xray", frozenset({415, 422}))
    yield Hostile("dicom with sequences nested 300 deep.dcm", deep_dicom(), "xray", frozenset({415}))
    with warnings.catch_warnings():  # offline: pydicom warns that it could not download more test files
        warnings.simplefilter("ignore", UserWarning)
        local = sorted(get_testdata_files("*.dcm"))
    for path in local:
        name = Path(str(path)).name
        if name.startswith("RG1_"):
            continue  # the real chest radiographs: answered 200 (tests/serving/test_api.py)
        yield Hostile(f"pydicom-data {name}", Path(str(path)).read_bytes(), "xray", FOUR_XX, ood_ok=True)


def series_corpus() -> Iterator[Hostile]:
    header = "HR|O2Sat|Temp|SBP|MAP|Resp|ICULOS"
    good_row = "80|97|37|120|80|18|{}"
    long_stay = header + "\n" + "\n".join(good_row.format(i) for i in range(1, 200_001))
    yield Hostile("200000 rows.psv", long_stay.encode(), "sepsis", frozenset({413, 422}))
    yield Hostile("utf-16.csv", "HR,Temp\n80,37\n".encode("utf-16"), "sepsis", frozenset({422}))
    yield Hostile("formulas.csv", b"HR,Temp\n=cmd|' /C calc'!A0,37\n", "sepsis", frozenset({422}))
    yield Hostile("binary.psv", bytes(range(256)) * 40, "sepsis", frozenset({422}))
    yield Hostile("all unknown columns.csv", b"Shoe,Hat\n1,2\n", "sepsis", frozenset({422}))
    yield Hostile("duplicate columns.csv", b"HR,HR,Temp\n80,81,37\n", "sepsis", frozenset({422}))
    yield Hostile("infinite value.csv", b"HR,Temp\n80,37\ninf,37\n", "sepsis", frozenset({422}))
    yield Hostile("negative heart rate.csv", b"HR,Temp\n-80,37\n", "sepsis", frozenset({422}))
    yield Hostile("one endless line.csv", b"HR," * 200_000 + b"\n", "sepsis", frozenset({413, 422}))
    yield Hostile("only separators.psv", b"|||\n|||\n", "sepsis", frozenset({422}))
    yield Hostile("a zip named .csv.csv", b"PK\x03\x04\x14\x00\x00\x00HR,Temp\n80,37\n", "sepsis", frozenset({422}))
    yield Hostile("two stays in one file.psv", b"HR|ICULOS\n80|1\n81|2\n90|1\n", "sepsis", frozenset({422}))


def corpus() -> Iterator[Hostile]:
    yield from xray_corpus()
    yield from series_corpus()


def main() -> int:
    parser = argparse.ArgumentParser(description="Write the hostile-file corpus to a folder.")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for item in corpus():
        folder = args.out / item.route
        folder.mkdir(parents=True, exist_ok=True)
        (folder / item.name.replace("/", "_")).write_bytes(item.data)
    print(f"wrote the corpus under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
