"""A corpus of hostile files, generated here (never downloaded): image bombs (pixels, a TIFF's tile, a JPEG's
scans), disguised and truncated images, lying and polyglot DICOMs (codestreams larger than the header says, RLE
segments that decode past it), DICOM structure bombs (sequence items, a deflated data set), every DICOM of
pydicom-data, and ICU records with every kind of breakage. ``python -m tests.hostile --out DIR`` writes them to a
folder for trying by hand.

Each item says which prediction route it goes to and what MedLens must answer: a 4xx (``statuses``),
or, for the real DICOMs of pydicom-data, either a 4xx or a 200 that flags a non-chest image as out of
distribution (``ood_ok``).
"""

from __future__ import annotations

import argparse
import io
import itertools
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom import uid
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

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


def scan_bomb(extra_scans: int, side: int = 64) -> bytes:
    """A progressive gray JPEG whose first AC scan is repeated ``extra_scans`` times: each repeat is a few bytes and
    costs the decoder a pass over every block (the reviewer's 7745 x 7745 one, 1.2 MB, took 66 s)."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 100).save(buffer, format="JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    markers = [m.start() for m in re.finditer(rb"\xff[\x01-\xcf\xd8-\xfe]", data)]
    scans = [(at, end) for at, end in itertools.pairwise(markers) if data[at + 1] == 0xDA]
    components = data[scans[0][0] + 4]
    ac_first = next(  # spectral selection start > 0 (AC), successive approximation high 0 (first)
        (at, end) for at, end in scans if data[at + 5 + 2 * components] > 0 and data[at + 7 + 2 * components] >> 4 == 0
    )
    last = scans[-1][1]
    return data[:last] + data[ac_first[0] : ac_first[1]] * extra_scans + data[last:]


def tiff_tile_bomb(tile: int, side: int = 64) -> bytes:
    """A ``side`` x ``side`` 8-bit gray TIFF whose one tile is declared ``tile`` x ``tile`` (deflated zeros): Pillow
    decodes the whole tile (46,336 a side, 2.1 MB: 2 GB)."""
    deflater, row = zlib.compressobj(9), b"\0" * tile
    data = b"".join(deflater.compress(row) for _ in range(tile)) + deflater.flush()  # never held inflated
    entries = [(256, 3, side), (257, 3, side), (258, 3, 8), (259, 3, 8), (262, 3, 1), (277, 3, 1)]
    entries += [(322, 4, tile), (323, 4, tile), (324, 4, 8 + 2 + 12 * 10 + 4), (325, 4, len(data))]
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, kind, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, 1) + packed
    return out + b"\0\0\0\0" + data


#: 64 x 64 uint16, a ramp from 0 to 4032 across: :func:`small_dataset`'s pixels unless told otherwise.
RAMP = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (64, 1))


def small_dataset(
    pixels: np.ndarray | None = RAMP, syntax: str = uid.ExplicitVRLittleEndian, **fields: object
) -> Dataset:
    """A CR chest image data set with its file meta (no identifiers): ``pixels`` (H, W) uint8 or uint16 written
    natively, None for no pixel module; ``fields`` set last."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined = "CR", "CHEST"
    if pixels is not None:
        bits = pixels.dtype.itemsize * 8
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
        ds.PixelData = pixels.tobytes()
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    return ds


def dicom_file(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def deflated_dicom(inflated_extra: int = 0, *, corrupt: bool = False, pixels: np.ndarray = RAMP) -> bytes:
    """A Deflated Explicit VR Little Endian DICOM of :func:`small_dataset` (of ``pixels``), whose data set holds a
    private OB element of ``inflated_extra`` zero bytes before its pixel data (deflated a MiB at a time: never held
    inflated), or whose deflate stream is replaced by bytes that are none (``corrupt``)."""
    ds = small_dataset(pixels, syntax=uid.DeflatedExplicitVRLittleEndian)
    meta = DicomBytesIO()
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    head = b"\0" * 128 + b"DICM" + meta.getvalue()
    if corrupt:
        return head + b"\xff" * 4000
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    data = body.getvalue()
    at = data.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflater.compress(data[:at])]
    if inflated_extra:
        parts.append(deflater.compress(struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 4) + b"BOMB"))
        parts.append(deflater.compress(struct.pack("<HH2sHI", 0x0009, 0x1000, b"OB", 0, inflated_extra)))
        # each MiB of zeros deflated alone after a full flush: blocks that refer to nothing before them, repeated
        parts.append(deflater.flush(zlib.Z_FULL_FLUSH))
        mib = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        parts.append((mib.compress(b"\0" * (1 << 20)) + mib.flush(zlib.Z_FULL_FLUSH)) * (inflated_extra >> 20))
        parts.append(deflater.compress(b"\0" * (inflated_extra & ((1 << 20) - 1))))
    parts += [deflater.compress(data[at:]), deflater.flush()]
    return head + b"".join(parts)


def item_bomb(items: int, *, defined_length: bool = False, tag: int = 0x00081140, pixels: bool = True) -> bytes:
    """A :func:`small_dataset` DICOM with a sequence of ``items`` empty items (8 bytes each) just before its pixel
    data; by default (0008,1140) of undefined length, which pydicom reads as it reads the file (3.3 M items, 25 MB:
    49 s and 2.2 GB); ``defined_length``: of defined length, which pydicom reads when the element is first used (the
    Modality LUT Sequence, (0028,3000), by the loader)."""
    ds = small_dataset()
    data = dicom_file(ds)
    at = data.index(b"\xe0\x7f\x10\x00")
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0)
    group, element = tag >> 16, tag & 0xFFFF
    if defined_length:
        sequence = struct.pack("<HH2sHI", group, element, b"SQ", 0, 8 * items) + item * items
    else:
        end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        sequence = struct.pack("<HH2sHI", group, element, b"SQ", 0, 0xFFFFFFFF) + item * items + end
    return data[:at] + sequence + (data[at:] if pixels else b"")


def lying_codestream_dicom(codec: str, claimed: int, rows: int = 64) -> bytes:
    """A DICOM whose header says ``rows`` x ``rows`` and whose one frame is a ``rows`` x ``rows`` codestream
    (``codec``: "jpeg", baseline; "j2k", JPEG 2000 lossless) patched to claim ``claimed`` x ``claimed``: decoders
    allocate what the codestream says (24,000 a side, 2.2 KB: 2.8 GB)."""
    image = np.tile(np.arange(0, 256, 256 // rows, dtype=np.uint8), (rows, 1))
    if codec == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        frame = bytearray(buffer.getvalue())
        at = frame.find(b"\xff\xc0")
        frame[at + 5 : at + 9] = struct.pack(">HH", claimed, claimed)
        syntax = uid.JPEGBaseline8Bit
    else:
        from openjpeg import encode

        frame = bytearray(encode(image, photometric_interpretation=2, use_mct=False))  # 2: gray
        at = frame.find(b"\xff\x51")
        frame[at + 6 : at + 14] = struct.pack(">II", claimed, claimed)  # Xsiz, Ysiz (offsets 0)
        frame[at + 22 : at + 30] = struct.pack(">II", claimed, claimed)  # one tile of it
        syntax = uid.JPEG2000Lossless
    ds = small_dataset(image, syntax=syntax)
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR = "OB"
    return dicom_file(ds)


def rle_bomb(runs: int, side: int = 64) -> bytes:
    """An RLE Lossless 8-bit DICOM saying ``side`` x ``side`` whose one segment holds ``runs`` replicate runs of
    128 bytes (2 bytes each): pydicom decodes a segment whole before it checks its length."""
    segment = b"\x81\x07" * runs
    header = struct.pack("<16L", 1, 64, *([0] * 14))
    ds = small_dataset(np.zeros((side, side), dtype=np.uint8), syntax=uid.RLELossless)
    ds.PixelData = encapsulate([header + segment])
    ds["PixelData"].VR = "OB"
    return dicom_file(ds)


def xray_corpus() -> Iterator[Hostile]:
    yield Hostile("png claiming 100000 x 100000.png", png_claiming(100_000, 100_000), "xray", frozenset({413, 415}))
    yield Hostile("png bomb 12000 x 12000.png", png_bomb(), "xray", frozenset({413}))
    yield Hostile("jpeg claiming 60000 x 60000.jpeg", jpeg_claiming(60_000, 60_000), "xray", frozenset({413, 415}))
    yield Hostile("tiff bomb named .png.png", _tiff_bomb(), "xray", frozenset({413}))  # refused as Pillow opens it
    yield Hostile("tiff tile bomb named .png.png", tiff_tile_bomb(16_384), "xray", frozenset({415}))
    yield Hostile("progressive jpeg of 10000 scans.jpg", scan_bomb(10_000, side=2048), "xray", frozenset({415}))
    yield Hostile("gif.png", _image_bytes("GIF"), "xray", frozenset({415}))
    yield Hostile("truncated png.png", _image_bytes("PNG", (512, 512))[:300], "xray", frozenset({415}))
    yield Hostile("zip as image.png", b"PK\x03\x04" + b"\0" * 64, "xray", frozenset({415}))
    yield Hostile("html.png", b"<html><script>alert(1)</script></html>", "xray", frozenset({415}))
    yield Hostile("dicom rows x columns beyond its pixels.dcm", lying_dicom(), "xray", frozenset({413, 415, 422}))
    yield Hostile("dicom with the wrong transfer syntax.dcm", wrong_syntax_dicom(), "xray", frozenset({415, 422}))
    yield Hostile("dicom with an executable preamble.dcm", polyglot_dicom(), "xray", frozenset({422}))
    yield Hostile("truncated dicom.dcm", truncated_dicom(), "xray", frozenset({415, 422}))
    yield Hostile("dicom with sequences nested 300 deep.dcm", deep_dicom(), "xray", frozenset({415}))
    yield Hostile("dicom of 1 M empty sequence items.dcm", item_bomb(1_000_000), "xray", frozenset({413}))
    yield Hostile("deflated dicom inflating to 1 GB.dcm", deflated_dicom(1 << 30), "xray", frozenset({413}))
    yield Hostile("deflated dicom, corrupt stream.dcm", deflated_dicom(corrupt=True), "xray", frozenset({415}))
    for codec in ("jpeg", "j2k"):
        lying = lying_codestream_dicom(codec, 24_000)
        yield Hostile(f"dicom of 64 x 64 with a 24000 x 24000 {codec} frame.dcm", lying, "xray", frozenset({415}))
    yield Hostile("rle dicom whose segment decodes to 3 GB.dcm", rle_bomb(12_000_000), "xray", frozenset({415}))
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
