"""Chest X-ray input: PNG / JPEG of any size and mode, and single-frame image DICOM.

Every loader returns an :class:`XrayImage` whose ``pixels`` are display-ready grayscale in
[0, 1] (DICOM: modality LUT, then VOI LUT / window, then MONOCHROME1 inverted; PNG / JPEG: turned upright
by their EXIF orientation), so the model,
the heatmap overlay and the dashboard all see the same picture. ``pixels`` are the image area-averaged to at most
:data:`KEPT_SIDE` pixels on its longer side (what serving's preview shows, several times the model's input), made a
tile at a time as the image is decoded: a decoded image holds a few MB, whatever its size (a 60-megapixel
one held 240 MB of float32 until its batch was answered). Bad input raises a typed
:class:`~models.errors.MedLensInputError` that names the problem, before the costly step where the bytes allow it
(a format, a size, a JPEG's scans, a DICOM's structure and its codestream's size are read first).
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import re
import struct
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import ExifTags, Image, UnidentifiedImageError
from pydicom import uid
from pydicom.encaps import generate_frames
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

from models.dicom_isolation import GDCM_ONLY, decode_isolated, keep_gdcm_to_its_own_syntaxes, readable_dicom
from models.dicom_privacy import exception_kind, keep_header_text_out_of_logs
from models.errors import ImageDecodeError, MedLensInputError, PayloadTooLargeError, UnsupportedDicomError
from models.synthetic_mark import MARK_KEY, burned_band

logger = logging.getLogger(__name__)

#: Images above this many pixels are refused (a 2,500 x 2,500 radiograph has 6.3 MP).
MAX_PIXELS = 60_000_000
MIN_SIDE = 32
#: The longer side of :attr:`XrayImage.pixels`, the decoded image area-averaged: what serving's preview shows (1024
#: px) and several times the model's input (192 px). A smaller image is kept as it is.
KEPT_SIDE = 1024
#: Scans a JPEG may hold. libjpeg's progressive script writes 6 (gray) or 10 (colour), and each scan costs the
#: decoder a pass over the whole image; Pillow sets no limit (10,000 repeats of one scan, 1.2 MB, took 66 s).
MAX_JPEG_SCANS = 100
#: Marker segments a JPEG may hold before its image ends (a real one holds a few dozen).
MAX_JPEG_SEGMENTS = 1_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
CLASS_NAMES = ("NORMAL", "PNEUMONIA")

#: DICOM header fields a reviewer may see: acquisition facts, never names, identifiers or dates. A study's date is
#: a date of service, an identifier under HIPAA's Safe Harbor and removed by DICOM's basic de-identification
#: profile (PS3.15): only its year is kept (``StudyYear``), which Safe Harbor allows.
DICOM_SAFE_FIELDS = (
    "Modality",
    "ViewPosition",
    "BodyPartExamined",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "PhotometricInterpretation",
    "BitsStored",
    "Rows",
    "Columns",
    "Manufacturer",
    # "YES": text that may identify the patient is burned into the pixels (DICOM PS3.3 C.7.6.1.1.7)
    "BurnedInAnnotation",
)

Image.MAX_IMAGE_PIXELS = MAX_PIXELS
keep_gdcm_to_its_own_syntaxes()
keep_header_text_out_of_logs()


@dataclass(frozen=True)
class XrayImage:
    """A decoded radiograph. ``pixels``: (height, width) float32 in [0, 1], display orientation, the image
    area-averaged to at most :data:`KEPT_SIDE` pixels on its longer side (:func:`kept_shape`)."""

    pixels: np.ndarray
    source_format: str  # "png" | "jpeg" | "dicom"
    dicom_fields: dict[str, str] = field(default_factory=dict)
    #: a PNG's ``MedLens-Synthetic`` text chunk (models/synthetic_mark.py), at most 200 characters: a generated image
    synthetic_mark: str | None = None
    #: (height, width) of the image as uploaded, in display orientation; None: ``pixels``' own
    full_size: tuple[int, int] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the image as uploaded (``pixels`` may be smaller)."""
        if self.full_size is not None:
            return self.full_size
        height, width = self.pixels.shape
        return int(height), int(width)


def kept_shape(height: int, width: int) -> tuple[int, int]:
    """The (height, width) :attr:`XrayImage.pixels` has for an image of ``height`` x ``width``: the longer side at
    most :data:`KEPT_SIDE`, rounded as serving's preview is (``serving.images.downsample``)."""
    scale = max(height, width) / float(KEPT_SIDE)
    if scale <= 1.0:
        return height, width
    return max(1, round(height / scale)), max(1, round(width / scale))


def is_dicom_bytes(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def load_xray_bytes(data: bytes, filename: str | None = None) -> XrayImage:
    """Decode an uploaded PNG, JPEG or DICOM whatever its file name says."""
    if not data:
        raise ImageDecodeError("The file is empty: upload a PNG, JPEG or DICOM chest X-ray.")
    name = filename or "upload"
    if is_dicom_bytes(data):  # routed on content, never on the file name
        return _load_dicom(data, name)
    try:
        return _load_raster(data, name)
    except ImageDecodeError:
        # DICOM files written without the 128-byte preamble have no "DICM" marker.
        try:
            return _load_dicom(data, name, force=True)
        except MedLensInputError:
            if Path(name).suffix.lower() in {".dcm", ".dicom"}:
                raise
        raise


def load_xray_file(path: str | Path) -> XrayImage:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    return load_xray_bytes(data, path.name)


#: the ISO base media file's major brands of a HEIC/HEIF image (its bytes 8-12, after ``ftyp``)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


#: The raster formats MedLens reads (Pillow's names), as ``XrayImage.source_format`` names them. MPO is a JPEG with
#: more pictures after the first (phones write it), which is the one read.
_RASTERS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg"}


def _load_raster(data: bytes, name: str) -> XrayImage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = _RASTERS.get(image.format or "")
            if fmt is None:  # before anything is decoded (a TIFF's tile may be of any size, whatever the image's)
                raise ImageDecodeError(
                    f"{name} is a {image.format or 'raster'} image; MedLens reads PNG, JPEG and DICOM: export it as "
                    "PNG or JPEG (or upload the DICOM) and upload that."
                )
            _check_size(image.width, image.height, name)
            if fmt == "jpeg":
                _jpeg_size(data, f"{name} (JPEG)")  # its scans and segments counted before the decoder runs
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            width, height = image.size
            if fmt == "jpeg":  # libjpeg decodes at 1/2, 1/4 or 1/8 scale, no smaller than what is kept
                image.draft(None, kept_shape(height, width)[::-1])
            image.load()
            mark = image.info.get(MARK_KEY) if fmt == "png" else None
            pixels, size = _raster_pixels(image, (height, width))
    except MedLensInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLargeError(
            f"{name}: the image has more than {MAX_PIXELS:,} pixels; downsample it before uploading."
        ) from exc
    except UnidentifiedImageError as exc:
        if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
            raise ImageDecodeError(
                f"{name} is a HEIC/HEIF image (as phones save photographs): export it as JPEG or PNG and upload that."
            ) from exc
        raise ImageDecodeError(
            f"{name} is not a PNG, JPEG or DICOM image (its contents could not be identified)."
        ) from exc
    except MemoryError as exc:
        raise PayloadTooLargeError(
            f"{name}: decoding the image needs more memory than one upload may use; downsample it before uploading."
        ) from exc
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, struct.error, zlib.error) as exc:
        raise ImageDecodeError(f"{name} could not be decoded ({exc}); the file may be truncated.") from exc
    if mark is None and burned_band(pixels):  # a marked image that lost its text chunk: re-saved, a screenshot
        mark = BAND_ONLY
    return XrayImage(
        pixels=pixels,
        source_format=fmt,
        synthetic_mark=None if mark is None else str(mark)[:200],
        full_size=size,
    )


#: A JPEG marker (Pillow's, libjpeg's reading): 0xFF, then a byte that is not 0x00 (a stuffed 0xFF in entropy-coded
#: data), not 0xFF (fill) and not RST0-7 (restart markers, inside entropy-coded data).
_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
#: Start-of-frame markers: SOF0-3, 5-7, 9-11, 13-15, and JPEG-LS's SOF55.
_JPEG_SOF = frozenset({*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC} | {0xF7})


def _jpeg_size(data: bytes, what: str, *, jpeg_ls: bool = False) -> tuple[int, int] | None:
    """(width, height) of a JPEG codestream's first frame header (SOF; JPEG-LS: SOF55), or None if it has none,
    walking its markers to its end (JPEG-LS: to its first scan, whose coded data does not stuff 0xFF as JPEG's does).
    Raises :class:`~models.errors.ImageDecodeError` for more than :data:`MAX_JPEG_SCANS` scans or
    :data:`MAX_JPEG_SEGMENTS` segments (``what``: the codestream, in its messages)."""
    if data[:2] != b"\xff\xd8":
        return None
    size, scans, segments, pos = None, 0, 0, 2
    while (found := _JPEG_MARKER.search(data, pos)) is not None:
        marker, pos = data[found.start() + 1], found.end()
        if marker == 0xD9:  # EOI: the image ends (an MPO's next picture is not decoded)
            break
        if marker in (0x01, 0xD8) or len(data) - pos < 2:  # TEM, SOI: no segment
            continue
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ImageDecodeError(
                f"{what}: the codestream holds more than {MAX_JPEG_SEGMENTS:,} marker segments (a JPEG holds a few "
                "dozen); the file is damaged or crafted. Export the image again."
            )
        if marker in _JPEG_SOF and size is None and len(data) - pos >= 7:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            size = (width, height)
        if marker == 0xDA:  # SOS: a scan, its entropy-coded data follows
            scans += 1
            if jpeg_ls:
                break
            if scans > MAX_JPEG_SCANS:
                raise ImageDecodeError(
                    f"{what}: the codestream holds more than {MAX_JPEG_SCANS} scans (a progressive JPEG holds about "
                    "10, and each costs a pass over the whole image); MedLens does not decode it. Export the image "
                    "again as a baseline JPEG or as PNG."
                )
        pos += int.from_bytes(data[pos : pos + 2], "big")
    return size


def _orientation(image: Image.Image) -> int:
    """``image``'s EXIF orientation, 1 to 8 (a phone's photograph of a film, say, is stored sideways and tagged:
    viewers show it turned, and so the model must read it); 1 (as stored) without the tag or with one that cannot be
    read."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, struct.error):
        return 1
    return orientation if orientation in range(2, 9) else 1


#: How each EXIF orientation is undone (as ``ImageOps.exif_transpose`` does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

#: Pillow modes whose values are wider than 8 bits: read by their own range (:func:`_raster_pixels`).
_WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I", "F"})


def _raster_pixels(image: Image.Image, full: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """A loaded PIL image (any mode; a JPEG may be decoded at a reduced scale) of the uploaded size ``full`` =
    (height, width) as (:attr:`XrayImage.pixels`, :attr:`XrayImage.size`): gray (RGB -> luminance), area-averaged to
    :func:`kept_shape` a tile at a time, turned upright by its EXIF orientation.

    A 16-bit or integer image is scaled by its own range, as a DICOM without a window is: PACS exports write 10-,
    12- or 14-bit films into a 16-bit PNG as they are (divided by 65,535, a 12-bit film read 1/16 as bright), others
    scale them to the full 16 bits, and the bit depth the values came from is not in the file (Pillow does not read
    ``sBIT``, and writers disagree on what it means)."""
    width, height = image.size
    wide = image.mode in _WIDE_MODES
    low, high = math.inf, -math.inf

    def tile(top: int, bottom: int, left: int, right: int) -> list[np.ndarray]:
        nonlocal low, high
        band = image.crop((left, top, right, bottom))
        if wide:
            values = np.asarray(band, dtype=np.float32)
            finite = values[np.isfinite(values)]
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
            return [values]
        if band.mode in {"RGBA", "LA", "P", "PA"}:
            band = band.convert("RGBA").convert("RGB")
        return [np.asarray(band.convert("L"), dtype=np.float32)]

    (pixels,) = _reduced((height, width), kept_shape(*full), tile)
    if not wide:
        pixels /= 255.0
    elif image.mode != "F" and high <= 255.0:  # 8-bit values in a wider container
        pixels = np.clip(pixels / 255.0, 0.0, 1.0)
    elif high > low:
        pixels = np.clip((pixels - low) / (high - low), 0.0, 1.0)
    else:
        pixels = np.zeros_like(pixels)
    orientation = _orientation(image)
    if orientation != 1:
        pixels = np.asarray(Image.fromarray(pixels).transpose(_UPRIGHT[orientation]), dtype=np.float32)
        full = full if orientation < 5 else (full[1], full[0])
    return pixels.astype(np.float32, copy=False), full


#: Pixels of the image one tile holds while it is reduced (4 MB in float32, 8 MB in float64; pydicom's window makes
#: a few float64 copies).
_TILE_PIXELS = 1 << 20


def _reduced(
    source: tuple[int, int], shape: tuple[int, int], tile: Callable[[int, int, int, int], list[np.ndarray]]
) -> list[np.ndarray]:
    """Images of ``source`` = (height, width) area-averaged to ``shape`` (Pillow's BOX filter, as serving's preview
    is made), from ``tile(top, bottom, left, right)``: each image's float values in those rows and columns. Asked for
    a tile of about :data:`_TILE_PIXELS` at a time (neighbouring tiles may share a row or a column), so that no
    full-size float copy is ever made; a ``shape`` equal to ``source`` is the images as they are."""
    height, width = source
    out_height, out_width = shape
    step_y, step_x = height / out_height, width / out_width
    cols = min(out_width, max(1, int(_TILE_PIXELS / ((step_y + 1) * step_x))))  # whole rows, unless one is too long
    rows = max(1, int(_TILE_PIXELS / ((cols * step_x + 1) * step_y)))
    outs: list[np.ndarray] = []
    for first in range(0, out_height, rows):
        last = min(first + rows, out_height)
        start_y, stop_y = first * step_y, last * step_y
        top, bottom = int(start_y), min(height, math.ceil(stop_y))
        for first_col in range(0, out_width, cols):
            last_col = min(first_col + cols, out_width)
            start_x, stop_x = first_col * step_x, last_col * step_x
            left, right = int(start_x), min(width, math.ceil(stop_x))
            values = tile(top, bottom, left, right)
            if not outs:
                outs = [np.empty(shape, dtype=np.float32) for _ in values]
            for out, value in zip(outs, values, strict=True):
                if shape == source:
                    out[first:last, first_col:last_col] = value
                    continue
                image = Image.fromarray(np.ascontiguousarray(value, dtype=np.float32))
                box = (start_x - left, start_y - top, stop_x - left, stop_y - top)
                size = (last_col - first_col, last - first)
                out[first:last, first_col:last_col] = np.asarray(image.resize(size, Image.Resampling.BOX, box=box))
    return outs


def _check_size(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise PayloadTooLargeError(
            f"{name}: {width}x{height} pixels exceeds the {MAX_PIXELS:,}-pixel limit; downsample it first."
        )
    if min(width, height) < MIN_SIDE:
        raise ImageDecodeError(
            f"{name}: {width}x{height} pixels is too small for a chest X-ray (at least {MIN_SIDE} per side)."
        )


#: Executable headers that turn a DICOM's free 128-byte preamble into a program (PE/ELF/script polyglots,
#: CVE-2019-11687). A radiograph has no reason to carry one; TIFF headers (dual-personality files) are fine.
_EXECUTABLE_PREAMBLES = (b"MZ", b"\x7fELF", b"#!", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe")


#: What pydicom raises for a malformed header: it reads most elements only when they are first used, so one can
#: surface anywhere in reading a DICOM, not only in ``dcmread``.
_MALFORMED_DICOM = (
    InvalidDicomError,
    BytesLengthException,
    EOFError,
    ValueError,
    OSError,
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    OverflowError,
    NotImplementedError,  # an unknown VR
    struct.error,
    RecursionError,  # sequences nested hundreds deep (pydicom reads them recursively)
    zlib.error,  # a deflated data set's stream
)


def _load_dicom(data: bytes, name: str, *, force: bool = False) -> XrayImage:
    if is_dicom_bytes(data) and data.startswith(_EXECUTABLE_PREAMBLES):
        raise UnsupportedDicomError(
            f"{name}: the DICOM's 128-byte preamble holds an executable header (a file that is also a program); "
            "MedLens refuses such files. Re-export the image from the PACS or modality."
        )
    try:
        return _read_dicom(data, name, force)
    except MedLensInputError:
        raise
    except MemoryError as exc:
        raise PayloadTooLargeError(
            f"{name}: reading the DICOM needs more memory than one upload may use; export the image alone, "
            "downsampled, from the PACS or modality."
        ) from exc
    except _MALFORMED_DICOM as exc:
        raise ImageDecodeError(
            f"{name} is not a readable DICOM file (pydicom: {exception_kind(exc)}); it may be truncated or "
            "damaged: export the image again from the PACS or modality."
        ) from exc


def _read_dicom(data: bytes, name: str, force: bool) -> XrayImage:
    readable = readable_dicom(data, force, name)  # its structure's cost bounded before pydicom builds it
    ds = pydicom.dcmread(io.BytesIO(readable.data), force=force)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UnsupportedDicomError(
            f"{name} is a DICOM without pixel data (modality {_modality_term(ds)}); upload an image DICOM "
            "such as a CR or DX chest radiograph."
        )
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:  # a malformed IS value, e.g. "1A"
        raise UnsupportedDicomError(
            f"{name}: the DICOM header's NumberOfFrames is not a number; upload a single chest radiograph."
        ) from exc
    if frames > 1:
        raise UnsupportedDicomError(
            f"{name} is a multi-frame DICOM ({frames} frames); upload a single chest radiograph."
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    _check_size(cols, rows, name)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" in ds and isinstance(syntax, uid.UID) and syntax.is_encapsulated:
        _check_codestream(ds.PixelData, syntax, rows, cols, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # GDCM's syntaxes in a worker process: GDCM can abort the process on a malformed stream
            raw = decode_isolated(readable.data, force) if syntax in GDCM_ONLY else ds.pixel_array
    except MedLensInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLargeError(
            f"{name}: the DICOM's pixel data decodes to more than {MAX_PIXELS:,} pixels; downsample it first."
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # pydicom raises many types for broken/unsupported pixel data
        raise ImageDecodeError(
            f"{name}: the DICOM pixel data could not be decoded (transfer syntax {_syntax_name(syntax) or 'unknown'}; "
            f"{exception_kind(exc)})."
        ) from exc
    if readable.deflated:  # read inflated; the summary names the file's own syntax
        ds.file_meta.TransferSyntaxUID = uid.DeflatedExplicitVRLittleEndian
    pixels = _dicom_pixels(raw, ds, name)
    return XrayImage(
        pixels=pixels,
        source_format="dicom",
        dicom_fields=dicom_summary(ds),
        full_size=(int(raw.shape[0]), int(raw.shape[1])),
    )


def _modality_term(ds: pydicom.Dataset) -> str:
    """The header's Modality for a message: a DICOM term, else :data:`NOT_A_TERM` (free text there, a name say, is
    never quoted), or "unknown"."""
    text = legible_value(ds, "Modality")
    if not text:
        return "unknown"
    return text if text.replace(" ", "").upper() in _MODALITIES else NOT_A_TERM


def _check_codestream(pixel_data: bytes, syntax: uid.UID, rows: int, cols: int, name: str) -> None:
    """Refuse compressed pixel data whose codestream is not the image the header describes, before it is decoded:
    decoders allocate what the codestream's own header says (a 2.2 KB file saying 256 x 256 held a 24,000 x 24,000
    JPEG 2000 codestream and took 2.8 GB), and GDCM returned the first Rows x Columns pixels of a larger JPEG-LS
    image as if they were the image. JPEG, JPEG-LS and JPEG 2000: the frame header's size must be Columns x Rows
    (and a JPEG's scans are counted, :func:`_jpeg_size`); RLE: no segment may decode to more than Rows x Columns."""
    known = (*uid.JPEGTransferSyntaxes, *uid.JPEGLSTransferSyntaxes, *uid.JPEG2000TransferSyntaxes, uid.RLELossless)
    if syntax not in known:
        return  # pydicom decodes none of the others
    frame = next(generate_frames(pixel_data, number_of_frames=1), b"")
    if syntax == uid.RLELossless:
        _check_rle(frame, rows, cols, name)
        return
    codec = _syntax_name(syntax) or "compressed"
    if syntax in uid.JPEG2000TransferSyntaxes:
        size = _j2k_size(frame)
    else:
        size = _jpeg_size(frame, f"{name} (pixel data)", jpeg_ls=syntax in uid.JPEGLSTransferSyntaxes)
    if size is None:
        raise ImageDecodeError(
            f"{name}: the DICOM's pixel data is not a {codec} codestream (its frame header is missing); the file "
            "cannot be read. Export it again from the PACS or modality."
        )
    if size != (cols, rows):
        raise ImageDecodeError(
            f"{name}: the DICOM's pixel data holds a {size[0]}x{size[1]} image but its header says {cols}x{rows} "
            "(Columns x Rows); the file is inconsistent and cannot be read. Export it again from the PACS or modality."
        )


def _j2k_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG 2000 codestream (its SIZ segment, after the SOC marker; in a JP2 file too), or
    None."""
    at = frame.find(b"\xff\x4f\xff\x51")
    if at < 0 or len(frame) < at + 24:
        return None
    width, height, left, top = struct.unpack_from(">IIII", frame, at + 8)
    return width - left, height - top


def _check_rle(frame: bytes, rows: int, cols: int, name: str) -> None:
    """Refuse an RLE frame with a segment that decodes to more than Rows x Columns bytes (and a byte of padding a
    row): pydicom decodes each segment whole before it checks its length, and a 2-byte run can repeat a byte 128
    times."""
    if len(frame) < 64:
        return  # pydicom refuses it
    count, *offsets = struct.unpack_from("<16L", frame)
    if not 0 < count <= 15:
        return  # pydicom refuses it
    bounds, limit = [*offsets[:count], len(frame)], rows * cols + rows
    for start, stop in itertools.pairwise(bounds):
        if _rle_length(frame, start, stop, limit) > limit:
            raise ImageDecodeError(
                f"{name}: an RLE segment of the DICOM's pixel data decodes to more than its header's {cols}x{rows} "
                "(Columns x Rows); the file is inconsistent and cannot be read. Export it again from the PACS or "
                "modality."
            )


def _rle_length(frame: bytes, start: int, stop: int, limit: int) -> int:
    """How many bytes the RLE segment ``frame[start:stop]`` decodes to (PackBits, as pydicom decodes it), counted to
    just past ``limit``."""
    out, pos, stop = 0, max(start, 0), min(stop, len(frame))
    while pos < stop and out <= limit:
        header = frame[pos]
        if header < 128:  # the next header + 1 bytes, literally
            out, pos = out + header + 1, pos + header + 2
        elif header > 128:  # the next byte, 257 - header times
            out, pos = out + 257 - header, pos + 2
        else:
            pos += 1
    return out


def _dicom_pixels(raw: np.ndarray, ds: pydicom.Dataset, name: str) -> np.ndarray:
    """Decoded pixel data as :attr:`XrayImage.pixels`: RGB (YBR as pydicom converts it) and PALETTE COLOR as
    luminance over the samples' own range (BitsStored; the palette's entries), MONOCHROME through
    :func:`_grey_pixels`; area-averaged to :func:`kept_shape` a tile at a time. An image of a single value
    is refused: there is nothing to read."""
    photometric = (legible_value(ds, "PhotometricInterpretation") or "MONOCHROME2").upper()
    if raw.ndim == 3 and raw.shape[-1] in (3, 4) and photometric in {"RGB", "YBR_FULL", "YBR_FULL_422"}:
        return _color_pixels(raw, name, lambda tile: tile[..., :3], _sample_white(ds, raw.dtype))
    if raw.ndim == 2 and photometric == "PALETTE COLOR":
        try:
            probe = apply_color_lut(raw[:1, :1], ds)
        except Exception as exc:  # pydicom raises ValueError, KeyError... for a missing or malformed palette
            raise UnsupportedDicomError(
                f"{name}: the PALETTE COLOR image's palette cannot be applied ({exception_kind(exc)}); export the "
                "image as MONOCHROME2 (grayscale) or RGB."
            ) from exc
        white = float(np.iinfo(probe.dtype).max) if np.issubdtype(probe.dtype, np.integer) else 1.0
        return _color_pixels(raw, name, lambda tile: apply_color_lut(tile, ds), white)
    if raw.ndim == 2:
        return _grey_pixels(raw, ds, name, photometric)
    raise UnsupportedDicomError(
        f"{name}: pixel data of shape {raw.shape} ({photometric}) is not a single 2-D radiograph."
    )


def _sample_white(ds: pydicom.Dataset, dtype: np.dtype) -> float:
    """The largest value a colour sample may hold: 2 ** BitsStored - 1 (a 16-bit RGB image was read modulo 256)."""
    if not np.issubdtype(dtype, np.integer):
        return 1.0
    bits, size = ds.get("BitsStored"), np.dtype(dtype).itemsize * 8
    return float(2**bits - 1) if isinstance(bits, int) and 0 < bits <= size else float(np.iinfo(dtype).max)


def _color_pixels(raw: np.ndarray, name: str, rgb_of: Callable[[np.ndarray], np.ndarray], white: float) -> np.ndarray:
    """Luminance (ITU-R 601, as Pillow's) of ``rgb_of`` each tile of ``raw``, over ``white`` (a sample's largest
    value)."""
    seen = [math.inf, -math.inf]

    def tile(top: int, bottom: int, left: int, right: int) -> list[np.ndarray]:
        rgb = np.asarray(rgb_of(raw[top:bottom, left:right]), dtype=np.float32)
        gray = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114) / white
        _extend(seen, gray)
        return [gray]

    (pixels,) = _reduced(raw.shape[:2], kept_shape(*raw.shape[:2]), tile)
    if not seen[1] > seen[0]:
        raise _no_contrast(name, "every pixel holds the same colour")
    return np.clip(pixels, 0.0, 1.0)


def _extend(seen: list[float], values: np.ndarray, inside: np.ndarray | None = None) -> None:
    """Widen ``seen`` = [low, high] to the range of ``values`` (those ``inside``, a bool mask, where given)."""
    counted = values if inside is None else values[inside]
    if counted.size:
        seen[0], seen[1] = min(seen[0], float(counted.min())), max(seen[1], float(counted.max()))


def _no_contrast(name: str, why: str) -> UnsupportedDicomError:
    return UnsupportedDicomError(
        f"{name}: the DICOM image has no contrast ({why}): there is no picture to read. Export the image again from "
        "the PACS or modality."
    )


class _WindowNotANumber(Exception):
    """The header's window (VOI LUT) turned pixel values into NaN or infinity."""


def _grey_pixels(raw: np.ndarray, ds: pydicom.Dataset, name: str, photometric: str) -> np.ndarray:
    """(H, W) stored values through the header's modality LUT (rescale) and VOI LUT (window), each where the
    header holds one pydicom can apply, then scaled to [0, 1] by the range of the values inside the image area
    (:func:`_padding_range`: padding is drawn black), MONOCHROME1 inverted.

    A LUT pydicom cannot apply (a window of width 0, a value that is not a number), or a window that gives values
    that are not numbers, is skipped: both only choose how the values map to grey levels, the pixels are the
    radiograph, and the min-max scaling spans whatever range they give. A rescale that blanks the image (a slope of
    0, NaN or infinity, values beyond floating point range) is refused, and so is pixel data holding NaN or
    infinity, or an image of one grey level: scored, a blank image read PNEUMONIA."""
    _check_rescale(ds, name)
    probe = raw[:1, :1]
    modality = _applies(
        lambda: apply_modality_lut(probe, ds),
        "a DICOM's modality LUT could not be applied; its stored values are read as they are",
    )
    windowed = ("VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)) and _applies(
        lambda: apply_voi_lut(apply_modality_lut(probe, ds) if modality else probe, ds, prefer_lut=True),
        "a DICOM's VOI LUT (window) could not be applied; the full range of its values is shown",
    )
    padding = _padding_range(raw, ds)
    try:
        return _grey_pass(raw, ds, name, photometric, modality, windowed, padding)
    except _WindowNotANumber:
        logger.info(
            "a DICOM's VOI LUT (window) gives values that are not numbers; the full range of its values is shown"
        )
        return _grey_pass(raw, ds, name, photometric, modality, False, padding)


def _applies(apply: Callable[[], object], skipped: str) -> bool:
    """Whether a LUT applies (tried on one pixel: it depends on the header alone); logs ``skipped`` if not."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # values beyond float64's range: refused later
            apply()
    except Exception:  # pydicom raises TypeError, ValueError, KeyError... for a malformed LUT or rescale
        logger.info(skipped)
        return False
    return True


def _check_rescale(ds: pydicom.Dataset, name: str) -> None:
    """Refuse a rescale (the modality LUT pydicom applies without a Modality LUT Sequence) whose slope is 0, NaN or
    infinite, or whose intercept is not finite: every pixel would read the same. One whose values are not numbers is
    left to :func:`_grey_pixels`, which skips it."""
    if ds.get("ModalityLUTSequence") or "RescaleSlope" not in ds or "RescaleIntercept" not in ds:
        return
    try:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    except Exception:  # not a number (pydicom's DS raises several types): skipped
        return
    if math.isfinite(slope) and slope != 0 and math.isfinite(intercept):
        return
    raise UnsupportedDicomError(
        f"{name}: the DICOM header's rescale (RescaleSlope {slope:g}, RescaleIntercept {intercept:g}) would blank the "
        "image: the slope must be a finite number other than 0 and the intercept a finite number. Correct the "
        "modality's export settings or export the image again."
    )


def _grey_pass(
    raw: np.ndarray,
    ds: pydicom.Dataset,
    name: str,
    photometric: str,
    modality: bool,
    windowed: bool,
    padding: tuple[int, int] | None,
) -> np.ndarray:
    """:func:`_grey_pixels`' one pass over ``raw``, a tile at a time. The area average of the image inside
    its area is made of values relative to the first pixel's (float32 keeps their precision), and of the area's
    share of each kept pixel: scaled to [0, 1] by the range of the values inside, padding counts as black."""
    stored, shown = [math.inf, -math.inf], [math.inf, -math.inf]
    origin: list[float] = []

    def tile(top: int, bottom: int, left: int, right: int) -> list[np.ndarray]:
        band = raw[top:bottom, left:right]
        if band.dtype.kind == "f" and not np.isfinite(band).all():
            raise UnsupportedDicomError(
                f"{name}: the DICOM's pixel values include NaN or infinity; export the image again from the PACS "
                "or modality."
            )
        with np.errstate(over="ignore", invalid="ignore"):  # a rescale beyond float64's range: refused below
            values = np.asarray(apply_modality_lut(band, ds) if modality else band, dtype=np.float64)
        if not np.isfinite(values).all():
            raise UnsupportedDicomError(
                f"{name}: the DICOM header's rescale (RescaleSlope, RescaleIntercept) turns pixel values into numbers "
                "beyond floating point range; correct the modality's export settings or export the image again."
            )
        inside = None if padding is None else ~((band >= padding[0]) & (band <= padding[1]))
        _extend(stored, values, inside)
        if windowed:
            with np.errstate(over="ignore", invalid="ignore"):
                values = np.asarray(apply_voi_lut(values, ds, prefer_lut=True), dtype=np.float64)
            if not np.isfinite(values).all():
                raise _WindowNotANumber
        _extend(shown, values, inside)
        if not origin:
            origin.append(float(values.flat[0]))
        values = values - origin[0]  # a new array: ``values`` may be a view of ``raw`` (float64 pixel data)
        if inside is None:
            return [values.astype(np.float32)]
        return [np.where(inside, values, 0.0).astype(np.float32), inside.astype(np.float32)]

    reduced = _reduced(raw.shape, kept_shape(*raw.shape), tile)
    low, high = shown
    if not high > low:
        window = windowed and stored[1] > stored[0]
        raise _no_contrast(
            name,
            "its window (WindowCenter and WindowWidth, or VOI LUT) maps every pixel to one grey level"
            if window
            else "every pixel holds the same value",
        )
    share = reduced[1] if padding is not None else np.float32(1.0)
    pixels = (reduced[0] - np.float32(low - origin[0]) * share) / np.float32(high - low)
    if photometric == "MONOCHROME1":
        pixels = share - pixels
    return np.clip(pixels, 0.0, 1.0).astype(np.float32, copy=False)


def _padding_range(raw: np.ndarray, ds: pydicom.Dataset) -> tuple[int, int] | None:
    """(low, high): the stored values the header marks as padding, outside the image area (``PixelPaddingValue``, up
    to ``PixelPaddingRangeLimit`` where given; DICOM PS3.3 C.7.5.1.1.2), or None when they mark no pixel or every
    one. Collimated CR and DX often carry it: counted in the grey range, a padding value far from the image's own
    values left the radiograph a washed-out band of that range."""
    value, limit = ds.get("PixelPaddingValue"), ds.get("PixelPaddingRangeLimit", None)
    if not isinstance(value, int):
        return None
    low, high = (value, value) if not isinstance(limit, int) else (min(value, limit), max(value, limit))
    step = max(1, _TILE_PIXELS // max(1, raw.shape[1]))
    marked = sum(
        int(np.count_nonzero((raw[at : at + step] >= low) & (raw[at : at + step] <= high)))
        for at in range(0, raw.shape[0], step)
    )
    return (low, high) if 0 < marked < raw.size else None


_SPACINGS = ("PixelSpacing", "ImagerPixelSpacing")


def _positive(value: object) -> bool:
    """A pixel spacing that means something: every value a number above 0 (mm)."""
    values = list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]
    try:
        return bool(values) and all(float(v) > 0 for v in values)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def dicom_summary(ds: pydicom.Dataset) -> dict[str, str]:
    """De-identified header fields (an allow-list: nothing else is ever copied out)."""
    out: dict[str, str] = {}
    for keyword in DICOM_SAFE_FIELDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        text = legible_value(ds, keyword)
        if text is None:
            out[keyword] = UNREADABLE
            continue
        if keyword in _SPACINGS and not _positive(value):
            text = f"not recorded (the header holds {text})"  # 0 x 0 would read as a size; it is none
        if keyword in _TERMS and text.replace(" ", "").upper() not in _TERMS[keyword]:
            text = NOT_A_TERM
        if keyword == "Manufacturer":
            text = _vendor(text)
        if text:
            out[keyword] = text
    year = study_year(ds.get("StudyDate"))
    if year is not None:
        out["StudyYear"] = year
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None:
        out["TransferSyntax"] = _syntax_name(syntax) or UNREADABLE
    return out


def _syntax_name(syntax: object) -> str | None:
    """A transfer syntax UID's name, or None for one pydicom does not know (it names such a UID by itself, whatever
    the header holds there)."""
    return str(getattr(syntax, "name", "")) if getattr(syntax, "is_transfer_syntax", False) else None


#: DICOM header fields that say whose image it is: what PS3.15's basic de-identification profile removes, and what a
#: reader checks against the request before reporting. Read only by :func:`dicom_identity`, when a reader asks.
DICOM_IDENTITY_FIELDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyDate",
    "StudyDescription",
    "InstitutionName",
)


def dicom_identity(data: bytes, *, refusals: bool = False) -> dict[str, str] | None:
    """The :data:`DICOM_IDENTITY_FIELDS` of a DICOM file that hold a value, from its header alone (the pixels are
    never read): a person's name with its components spaced, a date as YYYY-MM-DD. ``{}``: the header holds none of
    them. None: ``data`` is not a DICOM whose header can be read. The file's structure is bounded before pydicom
    reads it, as the loader's is (:func:`~models.dicom_isolation.readable_dicom`): with ``refusals``, a file past
    those bounds raises its typed :class:`~models.errors.MedLensInputError` (413: too many elements, a deflated
    header too long; 415: sequences nested too deep, a corrupt deflate stream) rather than giving None.

    These are patient identifiers: for the reader who asked, never for a log, a database, an export or serving."""
    marked = is_dicom_bytes(data)
    try:
        readable = readable_dicom(data, not marked, "upload", header_only=True)
    except MedLensInputError:
        if refusals:
            raise
        return None
    try:
        ds = pydicom.dcmread(
            io.BytesIO(readable.data),
            force=not marked,
            stop_before_pixels=True,
            specific_tags=[*DICOM_IDENTITY_FIELDS, "Modality", "SOPClassUID"],
        )
        if not marked and "Modality" not in ds and "SOPClassUID" not in ds:
            return None  # read without the "DICM" marker, and nothing an image's header has: not a DICOM
        out: dict[str, str] = {}
        for keyword in DICOM_IDENTITY_FIELDS:
            value = ds.get(keyword)
            text = " ".join(str(value or "").replace("^", " ").split())
            if keyword in ("PatientBirthDate", "StudyDate") and re.fullmatch(r"\d{8}", text):
                text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
            if text:
                out[keyword] = text[:64]
        return out
    except (*_MALFORMED_DICOM, UnicodeError, LookupError, MemoryError):
        return None


#: What :func:`dicom_summary` shows for a field whose value is not one its value representation allows.
UNREADABLE = "unreadable (malformed in the header)"
#: What it shows for a coded field whose value is none of DICOM's terms for it: a coded field holds a code, and
#: free text there (a name, a record number) is never copied out.
NOT_A_TERM = "not a DICOM term"
#: DICOM's defined terms of the coded fields of :data:`DICOM_SAFE_FIELDS` (ViewPosition: PS3.3 C.8.11.5.1.1, with
#: the lateral codes DX files use; BodyPartExamined: PS3.16 Annex L), compared without spaces and case.
_BODY_PARTS = frozenset((
    "ABDOMEN", "ABDOMENPELVIS", "ACJOINT", "ADRENAL", "ANKLE", "AORTA", "ARM", "AXILLA", "BACK", "BILEDUCT",
    "BLADDER", "BRAIN", "BREAST", "BRONCHUS", "BUTTOCK", "CALCANEUS", "CALF", "CAROTID", "CEREBELLUM", "CERVIX",
    "CHEEK", "CHEST", "CHESTABDOMEN", "CHESTABDPELVIS", "CIRCLEOFWILLIS", "CLAVICLE", "COCCYX", "COLON",
    "CORONARYARTERY", "CSPINE", "CTSPINE", "DUODENUM", "EAR", "ELBOW", "ESOPHAGUS", "EXTREMITY", "EYE", "FACE",
    "FEMUR", "FINGER", "FOOT", "FOREARM", "GALLBLADDER", "HAND", "HEAD", "HEADNECK", "HEART", "HIP", "HUMERUS",
    "IAC", "ILEUM", "ILIUM", "JAW", "JEJUNUM", "KIDNEY", "KNEE", "LARYNX", "LEG", "LIVER", "LSPINE", "LSSPINE",
    "LUNG", "MAXILLA", "MEDIASTINUM", "MOUTH", "NECK", "NECKCHEST", "NECKCHESTABDOMEN", "NECKCHESTABDPELV", "NOSE",
    "ORBIT", "OVARY", "PANCREAS", "PAROTID", "PATELLA", "PELVIS", "PENIS", "PHARYNX", "PROSTATE", "RADIUS", "RECTUM",
    "RIB", "SCALP", "SCAPULA", "SCROTUM", "SHOULDER", "SKULL", "SPINE", "SPLEEN", "SSPINE", "STERNUM", "STOMACH",
    "SUBMANDIBULAR", "TESTIS", "THIGH", "THORAX", "THUMB", "THYMUS", "THYROID", "TIBIA", "TLSPINE", "TOE", "TONGUE",
    "TRACHEA", "TSPINE", "ULNA", "URETER", "URETHRA", "UTERUS", "VAGINA", "WHOLEBODY", "WRIST", "ZYGOMA",
))  # fmt: skip
#: Modality: PS3.3 C.7.3.1.1.1's defined terms, the retired ones included (old CR files still carry them).
_MODALITIES = frozenset((
    "ANN", "AR", "ASMT", "AU", "BDUS", "BI", "BMD", "CFM", "CT", "CTPROTOCOL", "CD", "CP", "CR", "CS", "DD", "DF",
    "DG", "DM", "DMS", "DOC", "DS", "DX", "EC", "ECG", "EEG", "EMG", "EOG", "EPS", "ES", "FA", "FID", "FS", "GM",
    "HC", "HD", "IO", "IOL", "IVOCT", "IVUS", "KER", "KO", "LEN", "LP", "LS", "M3D", "MA", "MG", "MPR", "MR", "MS",
    "NM", "OAM", "OCT", "OP", "OPM", "OPR", "OPT", "OPTBSV", "OPTENF", "OPV", "OSS", "OT", "PA", "PLAN", "POS",
    "PR", "PT", "PX", "REG", "RESP", "RF", "RG", "RTDOSE", "RTIMAGE", "RTINTENT", "RTPLAN", "RTRAD", "RTRECORD",
    "RTSEGANN", "RTSTRUCT", "RWV", "SEG", "SM", "SMR", "SR", "SRF", "ST", "STAIN", "TEXTUREMAP", "TG", "US", "VA",
    "VF", "XA", "XAPROTOCOL", "XC",
))  # fmt: skip
_TERMS = {
    "Modality": _MODALITIES,
    "ViewPosition": frozenset({"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO", "LAT", "LATERAL", "LLAT", "RLAT"}),
    "BodyPartExamined": _BODY_PARTS,
    "BurnedInAnnotation": frozenset({"YES", "NO"}),  # anything else keeps no image (``burned_in`` fails closed)
}
#: Manufacturer is free text (LO): only a radiography vendor's name is shown, as the vendor's usual name; any
#: other text (a site's or a person's name typed there) is not.
_VENDORS = {
    "AGFA": "Agfa", "CANON": "Canon", "CARESTREAM": "Carestream", "DRGEM": "DRGEM", "FUJI": "Fujifilm",
    "FUJIFILM": "Fujifilm", "GE": "GE HealthCare", "GEHEALTHCARE": "GE HealthCare", "GEMEDICAL": "GE HealthCare",
    "HITACHI": "Hitachi", "HOLOGIC": "Hologic", "KODAK": "Kodak", "EASTMANKODAK": "Kodak", "KONICA": "Konica Minolta",
    "PHILIPS": "Philips", "RAYENCE": "Rayence", "SAMSUNG": "Samsung", "SHIMADZU": "Shimadzu",
    "SIEMENS": "Siemens Healthineers", "SWISSRAY": "Swissray", "TOSHIBA": "Toshiba", "VIEWORKS": "Vieworks",
    "VARIAN": "Varian", "ICRCO": "iCRco",
}  # fmt: skip
#: What :func:`dicom_summary` shows for a Manufacturer that is not a vendor's name it knows.
NOT_A_VENDOR = "not a known radiography vendor"


def _vendor(text: str) -> str:
    """A Manufacturer's vendor by its first word(s), letters only: "GE MEDICAL SYSTEMS" and "Philips Medical
    Systems" are GE HealthCare and Philips; anything else is :data:`NOT_A_VENDOR`."""
    words = ["".join(c for c in w if c.isalpha()).upper() for w in text.split()]
    for n in (2, 1):
        if len(words) >= n and "".join(words[:n]) in _VENDORS:
            return _VENDORS["".join(words[:n])]
    return NOT_A_VENDOR


#: Each text value representation of :data:`DICOM_SAFE_FIELDS` (DICOM PS3.5 6.2): the one value it allows.
_LEGIBLE = {
    "CS": re.compile(r"[A-Z0-9_ ]{0,16}"),
    "DS": re.compile(r" *[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)? *"),
    "IS": re.compile(r" *[+-]?\d{1,11} *"),
    "LO": re.compile(r"[^\\\x00-\x1f\x7f]{0,64}"),
}


def legible_value(ds: pydicom.Dataset, keyword: str) -> str | None:
    """A header field as text (values of a multi-valued one joined by " x "), or None when it is absent or one of
    its values is not what its value representation allows. A value whose length field is wrong runs on over the
    elements after it (a Modality of "CR", then InstitutionName's tag, VR and value, found by mutating a file):
    such a value is never copied out, whatever it holds."""
    value = ds.get(keyword)
    if value is None:
        return None
    values = list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]
    pattern = _LEGIBLE.get(ds[keyword].VR)
    texts = [str(v) for v in values]
    if pattern is None:  # binary (US, UL, ...): numbers pydicom unpacked
        if not all(isinstance(v, int | float) for v in values):
            return None
    elif not all(pattern.fullmatch(t) for t in texts):
        return None
    return " x ".join(t.strip() for t in texts)


def study_year(value: object) -> str | None:
    """The year of a DICOM date (DA, ``YYYYMMDD``; older files write ``YYYY.MM.DD``), or None when it holds
    none. Never the month or the day."""
    text = str(value or "").strip()
    year = text[:4]
    return year if len(year) == 4 and year.isascii() and year.isdigit() and 1800 <= int(year) <= 2200 else None


def iter_image_files(root: str | Path) -> Iterator[Path]:
    """Every image file under ``root`` (recursively, sorted); a single file is yielded as is."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist: pass an image file or a folder of images.")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix.lower() in IMAGE_SUFFIXES or (not path.suffix and _sniff_dicom(path)):
            yield path


def _sniff_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return is_dicom_bytes(fh.read(132))
    except OSError:
        return False


def labelled_images(root: str | Path, *, refuse_synthetic: bool = False) -> list[tuple[Path, int]]:
    """Images in the ``<root>/<CLASS>/*`` layout with label 1 for PNEUMONIA, 0 for NORMAL. Images that carry the
    synthetic mark (:func:`marked_synthetic`) are no real data: they are left out and counted on stderr (training
    and calibration read what the folder without them would give), or, with ``refuse_synthetic`` (an evaluation,
    whose figures are those of the whole folder), a :class:`~models.errors.MedLensInputError` names them."""
    root = Path(root)
    items: list[tuple[Path, int]] = []
    for label, cls in enumerate(CLASS_NAMES):
        folder = root / cls
        if folder.is_dir():
            items.extend((path, label) for path in iter_image_files(folder))
    marked = [path for path, _ in items if marked_synthetic(path)]
    if marked:
        named = ", ".join(str(p) for p in marked[:10]) + (f" and {len(marked) - 10} more" if len(marked) > 10 else "")
        if refuse_synthetic:
            raise MedLensInputError(
                f"{root} holds {len(marked)} synthetic image(s), marked {MARK_KEY}: {named}. Synthetic images never "
                f"count in a metric of real data: move them out of {root}."
            )
        print(f"left out {len(marked)} synthetic image(s) under {root} (marked {MARK_KEY}): {named}", file=sys.stderr)
        left_out = set(marked)
        items = [item for item in items if item[0] not in left_out]
    if not items:
        raise FileNotFoundError(
            f"No images found under {root}/NORMAL or {root}/PNEUMONIA: pass a folder in that layout."
        )
    return items


def patient_id(path: Path) -> str:
    """Patient key for the Kermany layout: ``personNNN_...`` files share a patient; ``IM-NNNN-...``
    and ``NORMAL2-IM-NNNN-...`` files are one patient per study number."""
    stem = path.stem
    if stem.startswith("person"):
        return stem.split("_")[0]
    match = re.match(r"(NORMAL2-)?IM-\d+", stem)
    return match.group(0) if match else stem


#: :attr:`XrayImage.synthetic_mark` of an image whose pixels carry the SYNTHETIC band but that has no text chunk.
BAND_ONLY = "the SYNTHETIC band in the pixels (no MedLens-Synthetic text chunk)"

#: The first bytes of every PNG file: the only format whose images carry the synthetic text chunk.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def marked_synthetic(path: Path) -> bool:
    """Whether the image file at ``path`` carries a synthetic mark, read as serving reads an upload's: its
    :attr:`XrayImage.synthetic_mark` is set, in MedLens's form or not, or its pixels carry the band. A JPEG is
    decoded at a reduced scale (at least 256 px a side, enough for the band), so that a folder of full-size
    films costs little; a DICOM is not read. A file that cannot be read carries none (its reader says why when
    it loads it)."""
    try:
        with path.open("rb") as fh:
            png = fh.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE
        if png:
            return load_xray_file(path).synthetic_mark is not None
        with Image.open(path) as image:
            if image.format != "JPEG":
                return False
            image.draft("L", (256, 256))
            image.load()
            return burned_band(_raster_pixels(image, image.size[::-1])[0])
    except (MedLensInputError, OSError, SyntaxError, ValueError, struct.error, zlib.error):
        return False
