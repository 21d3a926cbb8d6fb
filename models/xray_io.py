"""Chest X-ray input: PNG / JPEG of any size and mode, and single-frame image DICOM.

Every loader returns an :class:`XrayImage` whose ``pixels`` are display-ready grayscale in
[0, 1] (DICOM: modality LUT, then VOI LUT / window, then MONOCHROME1 inverted; PNG / JPEG: turned upright
by their EXIF orientation), so the model,
the heatmap overlay and the dashboard all see the same picture. Bad input raises a typed
:class:`~models.errors.MedLensInputError` that names the problem.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from models.dicom_isolation import GDCM_ONLY, decode_isolated, keep_gdcm_to_its_own_syntaxes
from models.dicom_privacy import exception_kind, keep_header_text_out_of_logs
from models.errors import ImageDecodeError, MedLensInputError, PayloadTooLargeError, UnsupportedDicomError
from models.synthetic_mark import MARK_KEY, burned_band

logger = logging.getLogger(__name__)

#: Images above this many pixels are refused (a 2,500 x 2,500 radiograph has 6.3 MP).
MAX_PIXELS = 60_000_000
MIN_SIDE = 32
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
    """A decoded radiograph. ``pixels``: (height, width) float32 in [0, 1], display orientation."""

    pixels: np.ndarray
    source_format: str  # "png" | "jpeg" | "dicom" | PIL format name in lower case
    dicom_fields: dict[str, str] = field(default_factory=dict)
    #: a PNG's ``MedLens-Synthetic`` text chunk (models/synthetic_mark.py), at most 200 characters: a generated image
    synthetic_mark: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.pixels.shape
        return int(height), int(width)


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


def _load_raster(data: bytes, name: str) -> XrayImage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = (image.format or "image").lower()
            _check_size(image.width, image.height, name)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
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
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{name} could not be decoded ({exc}); the file may be truncated.") from exc
    if fmt not in {"png", "jpeg", "mpo", "bmp", "tiff", "webp"}:
        raise ImageDecodeError(f"{name} is a {fmt.upper()} image; upload a PNG, JPEG or DICOM chest X-ray.")
    mark = image.info.get(MARK_KEY) if fmt == "png" else None
    pixels = _to_unit_gray(_upright(image))
    if mark is None and burned_band(pixels):  # a marked image that lost its text chunk: re-saved, a screenshot
        mark = BAND_ONLY
    return XrayImage(
        pixels=pixels,
        source_format="jpeg" if fmt == "mpo" else fmt,
        synthetic_mark=None if mark is None else str(mark)[:200],
    )


def _upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (a phone's photograph of a film, say, is stored sideways and
    tagged): viewers show it so, and so the model must read it. Without the tag, or with one that cannot be read,
    the image as stored."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, struct.error):
        return image
    if orientation not in range(2, 9):
        return image
    upright = ImageOps.exif_transpose(image)
    return image if upright is None else upright


def _to_unit_gray(image: Image.Image) -> np.ndarray:
    """Any PIL mode to (H, W) float32 in [0, 1] (RGB -> luminance). A 16-bit or integer image is scaled by its own
    range, as a DICOM without a window is: PACS exports write 10-, 12- or 14-bit films into a 16-bit PNG as they
    are (divided by 65,535, a 12-bit film read 1/16 as bright), others scale them to the full 16 bits, and the
    bit depth the values came from is not in the file (Pillow does not read ``sBIT``, and writers disagree on
    what it means)."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
        arr = np.asarray(image, dtype=np.float32)
        if float(arr.max()) <= 255.0:  # 8-bit values in a wider container
            return np.clip(arr / 255.0, 0.0, 1.0).astype(np.float32)
        return _min_max(arr)
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        return _min_max(arr)
    if image.mode in {"RGBA", "LA", "P", "PA"}:
        image = image.convert("RGBA").convert("RGB")
    gray = image.convert("L")
    return np.asarray(gray, dtype=np.float32) / 255.0


def _min_max(arr: np.ndarray, outside: np.ndarray | None = None) -> np.ndarray:
    """``arr`` scaled to [0, 1] by its range; ``outside`` (a bool mask of ``arr``'s shape): values that do not
    count towards the range (they are clipped into it)."""
    counted = arr if outside is None else arr[~outside]
    lo, hi = float(np.nanmin(counted)), float(np.nanmax(counted))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros_like(arr, dtype=np.float32)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


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
    except _MALFORMED_DICOM as exc:
        raise ImageDecodeError(
            f"{name} is not a readable DICOM file (pydicom: {exception_kind(exc)}); it may be truncated or "
            "damaged: export the image again from the PACS or modality."
        ) from exc


def _read_dicom(data: bytes, name: str, force: bool) -> XrayImage:
    ds = pydicom.dcmread(io.BytesIO(data), force=force)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        modality = legible_value(ds, "Modality") or "unknown"
        raise UnsupportedDicomError(
            f"{name} is a DICOM without pixel data (modality {modality}); upload an image DICOM "
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
    try:
        # GDCM's syntaxes in a worker process: GDCM can abort the process on a malformed stream
        raw = decode_isolated(data, force) if syntax in GDCM_ONLY else ds.pixel_array
    except MedLensInputError:
        raise
    except Exception as exc:  # pydicom raises many types for broken/unsupported pixel data
        raise ImageDecodeError(
            f"{name}: the DICOM pixel data could not be decoded (transfer syntax {_syntax_name(syntax) or 'unknown'}; "
            f"{exception_kind(exc)})."
        ) from exc
    photometric = (legible_value(ds, "PhotometricInterpretation") or "MONOCHROME2").upper()
    if raw.ndim == 3 and raw.shape[-1] in (3, 4) and photometric in {"RGB", "YBR_FULL", "YBR_FULL_422"}:
        pixels = _to_unit_gray(Image.fromarray(np.ascontiguousarray(raw[..., :3]).astype(np.uint8)))
    elif raw.ndim == 2:
        padding = _padding(raw, ds)  # (H, W) bool: outside the image area, or None
        pixels = _min_max(np.asarray(_grey_values(raw, ds), dtype=np.float32), outside=padding)
        if photometric == "MONOCHROME1":
            pixels = 1.0 - pixels
        if padding is not None:
            pixels[padding] = 0.0  # drawn black, whatever the photometric interpretation
    else:
        raise UnsupportedDicomError(
            f"{name}: pixel data of shape {raw.shape} ({photometric}) is not a single 2-D radiograph."
        )
    return XrayImage(pixels=pixels.astype(np.float32), source_format="dicom", dicom_fields=dicom_summary(ds))


def _padding(raw: np.ndarray, ds: pydicom.Dataset) -> np.ndarray | None:
    """(H, W) bool: the pixels the header marks as padding, outside the image area (``PixelPaddingValue``, up to
    ``PixelPaddingRangeLimit`` where given; stored values, DICOM PS3.3 C.7.5.1.1.2), or None when it marks none
    or every one. Collimated CR and DX often carry it: counted in the grey range, a padding value far from the
    image's own values left the radiograph a washed-out band of that range."""
    value, limit = ds.get("PixelPaddingValue"), ds.get("PixelPaddingRangeLimit", None)
    if not isinstance(value, int):
        return None
    low, high = (value, value) if not isinstance(limit, int) else (min(value, limit), max(value, limit))
    mask = (raw >= low) & (raw <= high)
    return mask if 0 < int(mask.sum()) < mask.size else None


def _grey_values(raw: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """(H, W) stored values through the header's modality LUT (rescale) and VOI LUT (window), each where the
    header holds one pydicom can apply. A broken one (a window of width 0, a value that is not a number) is
    skipped: both only choose how the values map to grey levels, the pixels are the radiograph, and the min-max
    scaling that follows spans whatever range they give."""
    values = raw
    try:
        values = apply_modality_lut(raw, ds)
    except Exception:  # pydicom raises TypeError, ValueError, KeyError... for a malformed LUT or rescale
        logger.info("a DICOM's modality LUT could not be applied; its stored values are read as they are")
    if "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds):
        try:
            values = apply_voi_lut(values, ds, prefer_lut=True)
        except Exception:  # as above, for a malformed window or VOI LUT
            logger.info("a DICOM's VOI LUT (window) could not be applied; the full range of its values is shown")
    return np.asarray(values)


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


def dicom_identity(data: bytes) -> dict[str, str] | None:
    """The :data:`DICOM_IDENTITY_FIELDS` of a DICOM file that hold a value, from its header alone (the pixels are
    never read): a person's name with its components spaced, a date as YYYY-MM-DD. ``{}``: the header holds none of
    them. None: ``data`` is not a DICOM whose header can be read.

    These are patient identifiers: for the reader who asked, never for a log, a database, an export or serving."""
    marked = is_dicom_bytes(data)
    try:
        ds = pydicom.dcmread(
            io.BytesIO(data),
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
    except (*_MALFORMED_DICOM, UnicodeError, LookupError):
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
            return burned_band(_to_unit_gray(_upright(image)))
    except (MedLensInputError, OSError, SyntaxError, ValueError):
        return False
