"""Chest X-ray loaders (models/xray_io.py) on real DICOM radiographs, real JPEGs and generated files."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import ExifTags, Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from models.config import DataPaths
from models.dicom_isolation import MAX_ELEMENTS
from models.errors import ImageDecodeError, MedLensInputError, PayloadTooLargeError, UnsupportedDicomError
from models.ood import header_reason
from models.xray_io import (
    KEPT_SIDE,
    MAX_JPEG_SCANS,
    MAX_PIXELS,
    MIN_SIDE,
    NOT_A_TERM,
    NOT_A_VENDOR,
    XrayImage,
    dicom_identity,
    iter_image_files,
    kept_shape,
    labelled_images,
    load_xray_bytes,
    load_xray_file,
    patient_id,
    study_year,
)
from tests.hostile import (
    deep_dicom,
    deflated_dicom,
    dicom_file,
    item_bomb,
    lying_codestream_dicom,
    png_claiming,
    rle_bomb,
    scan_bomb,
    small_dataset,
    tiff_tile_bomb,
)
from tests.models.conftest import synthetic_xray


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


IDENTIFIERS = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "MRN-4815162342",
    "PatientBirthDate": "19700101",
    "PatientAddress": "12 Elm Street, Springfield",
    "OtherPatientIDs": "ALT-99887766",
    "InstitutionName": "Saint Example Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "OperatorsName": "Tech^Tina",
    "AccessionNumber": "ACC-2718281828",
    "StudyID": "STUDY-31415",
}


def make_dicom(
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    frames: int | None = None,
    rows: int | None = None,
    columns: int | None = None,
    identifiers: bool = False,
    modality: str = "CR",
) -> bytes:
    """A DICOM Part 10 file written by pydicom. ``pixels``: (H, W) or (frames, H, W) uint16, or None."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.StudyDate = "20240102"
    if identifiers:
        for keyword, value in IDENTIFIERS.items():
            setattr(ds, keyword, value)
    if pixels is not None:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.Rows = rows or pixels.shape[-2]
        ds.Columns = columns or pixels.shape[-1]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        if frames is not None:
            ds.NumberOfFrames = frames
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def half_ramp(height: int = 64, width: int = 64) -> np.ndarray:
    """uint16: left half raw 500, right half raw 3500 (12-bit)."""
    arr = np.full((height, width), 500, dtype=np.uint16)
    arr[:, width // 2 :] = 3500
    return arr


# ----------------------------------------------------------------------------------------------------------
# real DICOM radiographs (pydicom-data): MONOCHROME1, uncompressed and JPEG 2000
# ----------------------------------------------------------------------------------------------------------
RG1_UNCR = Path(str(get_testdata_file("RG1_UNCR.dcm")))
RG1_J2KI = Path(str(get_testdata_file("RG1_J2KI.dcm")))


@pytest.fixture(scope="module")
def rg1_uncompressed() -> XrayImage:
    return load_xray_file(RG1_UNCR)


@pytest.fixture(scope="module")
def rg1_jpeg2000() -> XrayImage:
    return load_xray_file(RG1_J2KI)


def _strip_means(pixels: np.ndarray) -> tuple[float, float, float]:
    """Mean of the central (mediastinum/spine) strip and of the right and left lung fields,
    over the rows from 25 % to 60 % of the height."""
    h, w = pixels.shape
    band = pixels[int(0.25 * h) : int(0.60 * h)]
    centre = float(band[:, int(0.46 * w) : int(0.54 * w)].mean())
    lung_a = float(band[:, int(0.18 * w) : int(0.34 * w)].mean())
    lung_b = float(band[:, int(0.66 * w) : int(0.82 * w)].mean())
    return centre, lung_a, lung_b


@pytest.mark.parametrize("fixture", ["rg1_uncompressed", "rg1_jpeg2000"])
def test_real_monochrome1_dicom_is_display_ready(fixture: str, request: pytest.FixtureRequest) -> None:
    image: XrayImage = request.getfixturevalue(fixture)
    ds = pydicom.dcmread(RG1_UNCR, stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "MONOCHROME1"  # the premise: stored inverted
    assert image.source_format == "dicom"
    assert image.size == (int(ds.Rows), int(ds.Columns))
    assert image.pixels.dtype == np.float32
    assert float(image.pixels.min()) >= 0.0 and float(image.pixels.max()) <= 1.0
    centre, lung_a, lung_b = _strip_means(image.pixels)
    # Correctly displayed: air-filled lungs dark, mediastinum and spine bright.
    assert centre > lung_a + 0.1, (centre, lung_a)
    assert centre > lung_b + 0.1, (centre, lung_b)


def test_jpeg2000_decodes_to_the_same_picture(rg1_uncompressed: XrayImage, rg1_jpeg2000: XrayImage) -> None:
    assert rg1_jpeg2000.dicom_fields["TransferSyntax"].startswith("JPEG 2000")
    assert rg1_uncompressed.size == rg1_jpeg2000.size
    diff = np.abs(rg1_uncompressed.pixels - rg1_jpeg2000.pixels)
    assert float(diff.mean()) < 0.01
    assert float(np.quantile(diff, 0.99)) < 0.05
    assert np.corrcoef(rg1_uncompressed.pixels.ravel(), rg1_jpeg2000.pixels.ravel())[0, 1] > 0.99


def _gdcm_encoded(path: Path, syntax: str, tmp_path: Path) -> bytes:
    """``path`` re-encoded by GDCM into transfer syntax ``syntax`` (a ``gdcm.TransferSyntax`` name)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    out = tmp_path / f"{syntax}.dcm"
    writer.SetFileName(str(out))
    assert writer.Write()
    return out.read_bytes()


@pytest.mark.parametrize(
    ("syntax", "named"),
    [("JPEGLosslessProcess14_1", "JPEG Lossless"), ("JPEGLSLossless", "JPEG-LS Lossless")],
    ids=["jpeg lossless sv1", "jpeg-ls lossless"],
)
def test_lossless_jpeg_radiographs_decode_to_the_same_pixels(
    rg1_uncompressed: XrayImage, syntax: str, named: str, tmp_path: Path
) -> None:
    """A PACS often stores CR and DX as JPEG Lossless (Process 14): they were refused ("could not be decoded")
    until GDCM was pydicom's decoder for them."""
    data = _gdcm_encoded(RG1_UNCR, syntax, tmp_path)
    assert pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID.name.startswith(named)
    image = load_xray_bytes(data, "lossless.dcm")
    assert image.dicom_fields["TransferSyntax"].startswith(named)
    np.testing.assert_array_equal(image.pixels, rg1_uncompressed.pixels)


def test_real_dicom_fields_are_acquisition_facts_only(rg1_uncompressed: XrayImage) -> None:
    ds = pydicom.dcmread(RG1_UNCR, stop_before_pixels=True)
    assert str(ds.PatientName) and str(ds.PatientID)  # the file does carry identifiers
    fields = rg1_uncompressed.dicom_fields
    assert fields["Modality"] == "CR"
    assert fields["PhotometricInterpretation"] == "MONOCHROME1"
    text = " ".join([*fields.keys(), *fields.values()])
    for secret in (str(ds.PatientName), str(ds.PatientID), "Patient"):
        assert secret not in text


def test_a_zero_pixel_spacing_reads_as_not_recorded(rg1_uncompressed: XrayImage) -> None:
    """pydicom-data's RG1 holds PixelSpacing 0 x 0: shown as a size it would read as one; it is none."""
    assert rg1_uncompressed.dicom_fields["PixelSpacing"] == "not recorded (the header holds 0.000 x 0.000)"
    ds = pydicom.dcmread(io.BytesIO(make_dicom(half_ramp())))
    ds.PixelSpacing = [0.139, 0.14]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert load_xray_bytes(buf.getvalue(), "spaced.dcm").dicom_fields["PixelSpacing"] == "0.139 x 0.14"


def test_identifiers_never_reach_dicom_fields() -> None:
    data = make_dicom(half_ramp(), identifiers=True)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert str(ds.PatientName) == IDENTIFIERS["PatientName"]  # written as intended
    image = load_xray_bytes(data, "identified.dcm")
    assert image.dicom_fields["Modality"] == "CR"
    assert image.dicom_fields["BodyPartExamined"] == "CHEST"
    text = " ".join([*image.dicom_fields.keys(), *image.dicom_fields.values()])
    for keyword, value in IDENTIFIERS.items():
        assert keyword not in image.dicom_fields
        for part in str(value).replace("^", " ").split():
            if len(part) > 3:
                assert part not in text, f"{keyword} leaked: {part!r} in {image.dicom_fields}"
    # the study's date (20240102, a date of service) only as its year
    assert "StudyDate" not in image.dicom_fields and image.dicom_fields["StudyYear"] == "2024"
    assert "0102" not in text and "01/02" not in text


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("ViewPosition", "PA", "PA"),
        ("ViewPosition", "MRN123456", NOT_A_TERM),  # a record number in a coded field
        ("BodyPartExamined", "WHOLE BODY", "WHOLE BODY"),  # pydicom-data writes it with a space
        ("BodyPartExamined", "DOE JANE", NOT_A_TERM),
        ("Modality", "CR", "CR"),
        ("Modality", "DOE JANE", NOT_A_TERM),  # a legible CS value, but no modality
        ("BurnedInAnnotation", "NO", "NO"),
        ("BurnedInAnnotation", "DOE JANE", NOT_A_TERM),  # no image is kept for it: anything but NO
        ("Manufacturer", "GE MEDICAL SYSTEMS", "GE HealthCare"),
        ("Manufacturer", "Philips Medical Systems", "Philips"),
        ("Manufacturer", "FUJIFILM Corporation", "Fujifilm"),
        ("Manufacturer", "Jane Doe MRN 1234567", NOT_A_VENDOR),  # free text (LO): a name typed there
    ],
)
def test_a_coded_field_shows_a_dicom_term_or_nothing_of_its_text(field: str, value: str, shown: str) -> None:
    """Modality, ViewPosition, BodyPartExamined and BurnedInAnnotation hold codes, and Manufacturer a vendor's
    name: other text there (a site's misuse) is not copied out, and an out-of-distribution reason does not quote
    it either."""
    ds = pydicom.dcmread(io.BytesIO(make_dicom(half_ramp())))
    setattr(ds, field, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    image = load_xray_bytes(buffer.getvalue(), "coded.dcm")
    assert image.dicom_fields[field] == shown
    assert "JANE" not in str(image.dicom_fields) and "MRN" not in str(image.dicom_fields)
    reason = header_reason(image.dicom_fields) or ""
    assert "JANE" not in reason and "MRN" not in reason
    if field == "Modality" and shown == NOT_A_TERM:
        assert reason == "DICOM Modality is not a DICOM term, not a projection radiograph (CR or DX)"


def test_dicom_identity_reads_whom_the_image_belongs_to() -> None:
    """Only when a reader asks (the X-ray page): the identifying fields, from the header, legibly written."""
    data = make_dicom(half_ramp(), identifiers=True)
    identity = dicom_identity(data)
    assert identity == {
        "PatientName": "Doe Jane Q",
        "PatientID": "MRN-4815162342",
        "PatientBirthDate": "1970-01-01",
        "AccessionNumber": "ACC-2718281828",
        "StudyDate": "2024-01-02",
        "InstitutionName": "Saint Example Hospital",
    }
    assert dicom_identity(data[132:]) == identity  # written without the preamble, as the loader reads it too
    # a real radiograph's header (pydicom-data's RG1)
    real = dicom_identity(Path(RG1_UNCR).read_bytes())
    assert real is not None and real["PatientID"] == "9RG1" and real["PatientSex"] == "F"
    assert real["PatientBirthDate"] == "1940-03-05"


def test_dicom_identity_of_what_holds_none_or_is_no_dicom() -> None:
    assert dicom_identity(make_dicom(half_ramp())) == {"StudyDate": "2024-01-02"}
    for not_dicom in (b"", b"not a dicom at all " * 20, png_bytes(half_ramp().astype(np.uint8)), b"DICM" + b"\0" * 64):
        assert dicom_identity(not_dicom) is None
    data = make_dicom(half_ramp(), identifiers=True)
    cut = dicom_identity(data[:400])  # cut inside the header: what was read, never an exception
    assert cut is None or set(cut) <= set(dicom_identity(data) or {})


@pytest.mark.parametrize(
    ("value", "year"),
    [
        ("20240102", "2024"),
        ("2024.01.02", "2024"),
        ("", None),
        ("abcd0102", None),
        ("0000", None),
        (None, None),
        ("\u00b2\u2070\u00b2\u20740102", None),  # superscript digits: digits to str.isdigit, not to int()
    ],
)
def test_study_year(value: str | None, year: str | None) -> None:
    assert study_year(value) == year


@pytest.mark.parametrize(
    ("photometric", "left_brighter"), [("MONOCHROME2", False), ("MONOCHROME1", True)], ids=["mono2", "mono1"]
)
def test_monochrome1_is_inverted(photometric: str, left_brighter: bool) -> None:
    image = load_xray_bytes(make_dicom(half_ramp(), photometric=photometric), "ramp.dcm")
    left, right = float(image.pixels[:, :32].mean()), float(image.pixels[:, 32:].mean())
    assert (left > right) is left_brighter
    assert {round(left, 3), round(right, 3)} == {0.0, 1.0}  # full display range


def test_dicom_without_preamble_or_suffix_is_sniffed() -> None:
    data = make_dicom(half_ramp())
    assert load_xray_bytes(data, "no_suffix").source_format == "dicom"
    # Written without the 128-byte preamble and "DICM" marker (the file meta group comes first).
    raw = data[132:]
    assert raw[:2] == b"\x02\x00" and raw[128:132] != b"DICM"
    image = load_xray_bytes(raw, "legacy.bin")
    assert image.source_format == "dicom" and image.size == (64, 64)
    assert float(image.pixels[:, :32].mean()) < float(image.pixels[:, 32:].mean())


def test_multiframe_dicom_is_refused() -> None:
    frames = np.stack([half_ramp(), half_ramp(), half_ramp()])
    data = make_dicom(frames, frames=3)
    with pytest.raises(UnsupportedDicomError, match="multi-frame"):
        load_xray_bytes(data, "cine.dcm")


def test_dicom_without_pixel_data_is_refused() -> None:
    data = make_dicom(None, modality="SR")
    with pytest.raises(UnsupportedDicomError, match="without pixel data") as info:
        load_xray_bytes(data, "report.dcm")
    assert "SR" in info.value.message and info.value.status_code == 422


def test_dicom_claiming_huge_dimensions_is_refused_before_decoding() -> None:
    data = make_dicom(half_ramp(), rows=10_000, columns=10_000)
    with pytest.raises(PayloadTooLargeError):
        load_xray_bytes(data, "huge.dcm")


def _with_header(data: bytes, **fields: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
        if ds[keyword].VR == "US or SS":  # the pixel padding tags: unsigned, as PixelRepresentation 0 says
            ds[keyword].VR = "US"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def three_levels() -> np.ndarray:
    """uint16 (64, 64): columns of raw 500, 2000 and 3500 (12-bit)."""
    arr = np.full((64, 64), 500, dtype=np.uint16)
    arr[:, 21:42], arr[:, 42:] = 2000, 3500
    return arr


def test_a_window_narrows_what_is_shown() -> None:
    plain = load_xray_bytes(make_dicom(three_levels()), "levels.dcm").pixels
    assert plain[0, 30] == pytest.approx(0.5)
    windowed = load_xray_bytes(_with_header(make_dicom(three_levels()), WindowCenter=1000, WindowWidth=1000), "w.dcm")
    assert (windowed.pixels[0, 0], windowed.pixels[0, 30], windowed.pixels[0, 63]) == (0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "fields",
    [
        {"WindowCenter": 100, "WindowWidth": 0},  # a width below 1: pydicom raises ValueError
        {"WindowCenter": 12345, "WindowWidth": 1000, "_raw": (b"12345", b"abc12")},  # not a number: TypeError
        {"RescaleSlope": 12345, "RescaleIntercept": 0, "_raw": (b"12345", b"x1.5e")},
    ],
    ids=["window width 0", "window centre not a number", "rescale slope not a number"],
)
def test_a_broken_window_or_rescale_is_skipped_not_refused(fields: dict[str, object]) -> None:
    """Both only map stored values to grey levels: the radiograph is read over its full range (it was a 422,
    "could not be read (TypeError)")."""
    raw = fields.pop("_raw", None)
    data = _with_header(make_dicom(half_ramp()), **fields)
    if isinstance(raw, tuple):
        assert data.count(raw[0]) == 1
        data = data.replace(raw[0], raw[1])
    plain = load_xray_bytes(make_dicom(half_ramp()), "ramp.dcm").pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom warns of the invalid DS value it reads
        image = load_xray_bytes(data, "broken-window.dcm")
    np.testing.assert_allclose(image.pixels, plain, atol=1e-6)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize(
    ("padding", "fields"),
    [(0, {"PixelPaddingValue": 0}), (4000, {"PixelPaddingValue": 3990, "PixelPaddingRangeLimit": 4095})],
    ids=["value", "range"],
)
def test_padding_outside_the_image_area_is_black_and_out_of_the_grey_range(
    photometric: str, padding: int, fields: dict[str, int]
) -> None:
    """A collimated CR: a border of padding around the image's own values (1000-2000). Counted in the range, it
    left the radiograph a band of it; it is drawn black and the image spans the whole grey range."""
    stored = np.tile(np.linspace(1000, 2000, 64), (64, 1)).astype(np.uint16)  # (64, 64)
    stored[:8], stored[-8:], stored[:, :8], stored[:, -8:] = padding, padding, padding, padding
    plain = make_dicom(stored, photometric=photometric)
    image = load_xray_bytes(_with_header(plain, **fields), "collimated.dcm")
    inside, border = image.pixels[8:-8, 8:-8], image.pixels[:8]
    assert float(inside.min()) == 0.0 and float(inside.max()) == 1.0
    assert float(np.abs(border).max()) == 0.0
    ignored = load_xray_bytes(plain, "no-padding-declared.dcm").pixels[8:-8, 8:-8]
    assert float(ignored.max() - ignored.min()) < 0.8  # what the border did to the range before


@pytest.mark.parametrize(
    ("element", "where"),
    [(b"\x28\x00\x10\x00US", "Rows"), (b"\x02\x00\x00\x00UL", "the file meta group's length")],
    ids=["rows", "meta group length"],
)
def test_a_header_element_of_the_wrong_length_is_an_input_error(element: bytes, where: str) -> None:
    """pydicom reads most elements when first used, and raises BytesLengthException (a RuntimeError) for one whose
    length does not fit its VR: it escaped the loader as an unexpected error (found by mutating DICOM files)."""
    data = make_dicom(half_ramp())
    at = data.index(element) + 6  # the 2-byte length after tag and VR
    size = int.from_bytes(data[at : at + 2], "little")
    value = data[at + 2 : at + 2 + size]
    broken = data[:at] + (size + 1).to_bytes(2, "little") + value + b"\x00" + data[at + 2 + size :]
    with pytest.raises(ImageDecodeError, match="not a readable DICOM file") as info:
        load_xray_bytes(broken, f"{where}.dcm")
    assert info.value.status_code == 415


def test_an_unknown_value_representation_is_an_input_error() -> None:
    """pydicom raises NotImplementedError for a VR it does not know (found by mutating DICOM files)."""
    data = make_dicom(half_ramp())
    syntax = b"\x02\x00\x10\x00UI"  # the transfer syntax element, VR UI
    broken = data.replace(syntax, b"\x02\x00\x10\x00U3", 1)
    with pytest.raises(ImageDecodeError, match="not a readable DICOM file"):
        load_xray_bytes(broken, "unknown-vr.dcm")


def test_broken_dicom_pixel_data_is_an_input_error() -> None:
    data = make_dicom(half_ramp(), rows=128, columns=128)  # header says 128x128, data holds 64x64
    with pytest.raises(MedLensInputError):
        load_xray_bytes(data, "short.dcm")


def test_sequences_nested_hundreds_deep_are_a_malformed_dicom() -> None:
    """pydicom reads sequences recursively: 300 levels (a 10 KB file) exhaust Python's stack. Both readers say the
    file is not a readable DICOM (serving answers 415), as for any other malformed header."""
    data = make_dicom(half_ramp(), identifiers=True)
    deep = deep_dicom(data)  # the nesting stands before the identifiers
    with pytest.raises(ImageDecodeError, match="not a readable DICOM file"):
        load_xray_bytes(deep, "deep.dcm")
    assert dicom_identity(deep) is None
    assert dicom_identity(deep_dicom(data, depth=3)) == dicom_identity(data)  # a few levels: read


# ----------------------------------------------------------------------------------------------------------
# real JPEGs from the data directory
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.data
def test_real_training_jpegs(real_data: DataPaths) -> None:
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((real_data.xray_train / cls).glob("*.jpeg"))[:3]
        if not files:
            pytest.skip(f"no JPEGs under {real_data.xray_train / cls}")
        for path in files:
            image = load_xray_file(path)
            assert image.source_format == "jpeg"
            assert image.size == Image.open(path).size[::-1]
            assert image.pixels.dtype == np.float32 and image.pixels.ndim == 2
            assert 0.0 <= image.pixels.min() < image.pixels.max() <= 1.0
            assert float(image.pixels.std()) > 0.05


@pytest.mark.data
def test_real_full_resolution_radiographs(real_data: DataPaths) -> None:
    files = sorted(p for p in iter_image_files(real_data.xray_fullres))[:2] if real_data.xray_fullres.is_dir() else []
    if not files:
        pytest.skip(f"no images under {real_data.xray_fullres}")
    for path in files:
        image = load_xray_file(path)
        with Image.open(path) as reference:
            width, height = reference.size
            gray = Image.fromarray(np.asarray(reference.convert("L"), dtype=np.float32) / 255.0)
        assert image.size == (height, width)
        assert max(height, width) > 500
        kept = kept_shape(height, width)
        assert image.pixels.shape == kept and max(kept) == min(KEPT_SIDE, max(height, width))
        # the full-size image area-averaged, as serving's preview is made (a JPEG is decoded at 1/2, 1/4 or 1/8 of
        # its size first where that is still larger than what is kept)
        expected = np.asarray(gray.resize(kept[::-1], Image.Resampling.BOX), dtype=np.float32)
        assert float(np.abs(image.pixels - expected).mean()) < 0.01


@pytest.mark.data
def test_real_patient_ids_group_files_of_one_patient(real_data: DataPaths) -> None:
    from models.train_cnn import patient_split

    if not real_data.xray_train.is_dir():
        pytest.skip(f"{real_data.xray_train} not found")
    items = labelled_images(real_data.xray_train)
    paths = [p for p, _ in items]
    labels = np.array([label for _, label in items])
    ids = [patient_id(p) for p in paths]
    assert all(i.startswith("person") for i, y in zip(ids, labels, strict=True) if y == 1)
    assert len(set(ids)) < len(ids)  # several files per patient exist
    val = patient_split(paths, labels, 0.15, seed=0)
    train_ids = {i for i, v in zip(ids, val, strict=True) if not v}
    val_ids = {i for i, v in zip(ids, val, strict=True) if v}
    assert train_ids and val_ids and not train_ids & val_ids


# ----------------------------------------------------------------------------------------------------------
# generated rasters
# ----------------------------------------------------------------------------------------------------------
def test_png_8bit_gray() -> None:
    arr = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))  # 48 x 64
    image = load_xray_bytes(png_bytes(arr), "gray.png")
    assert image.source_format == "png" and image.size == (48, 64)
    np.testing.assert_allclose(image.pixels, arr / 255.0, atol=1e-6)


def test_png_16bit_uses_the_full_range() -> None:
    arr = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (40, 1))
    data = png_bytes(arr)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image = load_xray_bytes(data, "deep.png")
    np.testing.assert_allclose(image.pixels, arr / 65535.0, atol=1e-4)
    assert image.pixels.max() == pytest.approx(1.0) and image.pixels.min() == 0.0


@pytest.mark.parametrize(("low", "high"), [(40, 921), (200, 3685), (3000, 14000), (1000, 30000)])
def test_a_16_bit_png_is_read_by_its_own_range(low: int, high: int) -> None:
    """However many of its 16 bits a PNG's values use (a PACS writes a 12-bit film as it is, another scales it to
    the full range), it reads from black to white, as a DICOM without a window does: divided by 65,535 a 12-bit
    film read 1/16 as bright (and every such film scored PNEUMONIA)."""
    arr = np.tile(np.linspace(low, high, 64).astype(np.uint16), (40, 1))
    image = load_xray_bytes(png_bytes(arr), "pacs.png")
    np.testing.assert_allclose(image.pixels, (arr - low) / (high - low), atol=1e-4)
    eight_bit = np.tile(np.linspace(0, 200, 64).astype(np.uint16), (40, 1))  # 8-bit values in a 16-bit PNG
    np.testing.assert_allclose(load_xray_bytes(png_bytes(eight_bit), "wide.png").pixels, eight_bit / 255.0, atol=1e-6)


def test_png_rgb_is_luminance() -> None:
    gray = synthetic_xray(np.random.default_rng(0), pneumonia=True)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    from_rgb = load_xray_bytes(png_bytes(rgb), "rgb.png").pixels
    from_gray = load_xray_bytes(png_bytes(gray), "gray.png").pixels
    np.testing.assert_allclose(from_rgb, from_gray, atol=1.5 / 255)
    red = np.zeros((40, 40, 3), dtype=np.uint8)
    red[..., 0] = 255
    assert load_xray_bytes(png_bytes(red), "red.png").pixels.mean() == pytest.approx(0.299, abs=0.01)


def test_png_rgba_ignores_alpha() -> None:
    gray = synthetic_xray(np.random.default_rng(1), pneumonia=False)
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 40)])
    image = load_xray_bytes(png_bytes(rgba), "alpha.png")
    assert image.pixels.ndim == 2 and image.size == gray.shape
    np.testing.assert_allclose(image.pixels, gray / 255.0, atol=1.5 / 255)


def test_jpeg_and_wrong_suffix() -> None:
    gray = synthetic_xray(np.random.default_rng(2), pneumonia=True)
    image = load_xray_bytes(jpeg_bytes(gray), "actually_a_jpeg.png")
    assert image.source_format == "jpeg"
    assert float(np.abs(image.pixels - gray / 255.0).mean()) < 0.03


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_an_exif_orientation_is_applied(fmt: str) -> None:
    """A photograph of a film stored sideways and tagged Orientation 6 ("turn 90 degrees clockwise to view"), as
    phones store them: read upright, as every viewer shows it."""
    film = synthetic_xray(np.random.default_rng(3), pneumonia=True)  # (64, 64)
    upright = np.concatenate([film, film[:32]])  # (96, 64): taller than wide
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # turned anticlockwise
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    image = load_xray_bytes(buffer.getvalue(), f"phone.{fmt.lower()}")
    assert image.size == upright.shape
    assert float(np.abs(image.pixels - upright / 255.0).mean()) < 0.02
    exif[ExifTags.Base.Orientation] = 1  # upright as stored: left as it is
    buffer = io.BytesIO()
    stored.save(buffer, format=fmt, exif=exif)
    assert load_xray_bytes(buffer.getvalue(), f"scan.{fmt.lower()}").size == stored.size[::-1]


def test_a_heic_photograph_is_named_and_the_way_out_given() -> None:
    """iPhones save photographs as HEIC, which MedLens does not read: the answer says so, not 'unidentified'."""
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64  # the box an iPhone's HEIC opens with
    with pytest.raises(ImageDecodeError, match=r"HEIC/HEIF image .* export it as JPEG or PNG"):
        load_xray_bytes(heic, "IMG_0001.jpeg")
    mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64
    with pytest.raises(ImageDecodeError, match="could not be identified"):
        load_xray_bytes(mp4, "clip.png")


def test_png_named_dcm_decodes_as_png() -> None:
    """The loader's contract: decode an upload 'whatever its file name says'."""
    gray = synthetic_xray(np.random.default_rng(3), pneumonia=False)
    image = load_xray_bytes(png_bytes(gray), "scan.dcm")
    assert image.source_format == "png"


def test_truncated_jpeg_is_refused() -> None:
    data = jpeg_bytes(synthetic_xray(np.random.default_rng(4), pneumonia=True))
    for cut in (len(data) // 2, 200):
        with pytest.raises(ImageDecodeError) as info:
            load_xray_bytes(data[:cut], "cut.jpg")
        assert info.value.status_code == 415


def test_text_file_is_refused() -> None:
    with pytest.raises(ImageDecodeError, match=r"notes\.txt"):
        load_xray_bytes(b"Patient doing well, no infiltrates.\n" * 20, "notes.txt")


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        load_xray_bytes(b"", "empty.png")


def test_unsupported_raster_format_is_named() -> None:
    buf = io.BytesIO()
    Image.fromarray(synthetic_xray(np.random.default_rng(5), pneumonia=False)).save(buf, format="GIF")
    with pytest.raises(ImageDecodeError, match="GIF"):
        load_xray_bytes(buf.getvalue(), "x.gif")


@pytest.mark.parametrize("side", [10_000, 8_000])
def test_huge_dimensions_are_refused_from_the_header(side: int) -> None:
    assert side * side > MAX_PIXELS
    data = png_claiming(side, side)
    assert len(data) < 200  # cheap: nothing is ever allocated for the claimed size
    with pytest.raises(PayloadTooLargeError) as info:
        load_xray_bytes(data, "huge.png")
    assert info.value.status_code == 413


def test_size_limit_holds_without_pillows_own_bomb_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Image.MAX_IMAGE_PIXELS`` is process-global (any library may lift it): the loader's own
    limit must still answer 413, not 'could not be decoded'."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(PayloadTooLargeError):
        load_xray_bytes(png_claiming(10_000, 10_000), "huge.png")


def test_too_small_image_is_refused() -> None:
    with pytest.raises(ImageDecodeError, match="too small"):
        load_xray_bytes(png_bytes(np.zeros((MIN_SIDE - 1, 200), dtype=np.uint8)), "thumb.png")
    assert load_xray_bytes(png_bytes(np.zeros((MIN_SIDE, MIN_SIDE), dtype=np.uint8)), "ok.png").size == (32, 32)


def test_too_small_message_does_not_blame_truncation() -> None:
    with pytest.raises(ImageDecodeError) as info:
        load_xray_bytes(png_bytes(np.zeros((16, 16), dtype=np.uint8)), "thumb.png")
    assert "truncated" not in info.value.message, info.value.message


def test_unreadable_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="Cannot read"):
        load_xray_file(tmp_path / "missing.png")


# ----------------------------------------------------------------------------------------------------------
# folders and patients
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1000_virus_1681.jpeg", "person1000"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0629-0001-0002.jpeg", "IM-0629"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("upload.png", "upload"),
    ],
)
def test_patient_id(name: str, patient: str) -> None:
    assert patient_id(Path("/x/PNEUMONIA") / name) == patient


def test_labelled_images_on_a_generated_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    (tmp_path / "NORMAL" / "nested").mkdir(parents=True)
    (tmp_path / "PNEUMONIA").mkdir()
    (tmp_path / "OTHER").mkdir()
    Image.fromarray(synthetic_xray(rng, False)).save(tmp_path / "NORMAL" / "IM-0001-0001.png")
    Image.fromarray(synthetic_xray(rng, False)).save(tmp_path / "NORMAL" / "nested" / "IM-0002-0001.JPG", "JPEG")
    Image.fromarray(synthetic_xray(rng, True)).save(tmp_path / "PNEUMONIA" / "person1_bacteria_1.png")
    (tmp_path / "PNEUMONIA" / "scan").write_bytes(make_dicom(half_ramp()))  # DICOM without a suffix
    (tmp_path / "PNEUMONIA" / "notes.txt").write_text("not an image")
    Image.fromarray(synthetic_xray(rng, True)).save(tmp_path / "OTHER" / "person2_virus_2.png")

    items = labelled_images(tmp_path)
    got = {p.relative_to(tmp_path).as_posix(): label for p, label in items}
    assert got == {
        "NORMAL/IM-0001-0001.png": 0,
        "NORMAL/nested/IM-0002-0001.JPG": 0,
        "PNEUMONIA/person1_bacteria_1.png": 1,
        "PNEUMONIA/scan": 1,
    }
    for path, _ in items:
        assert load_xray_file(path).pixels.ndim == 2


def test_labelled_images_needs_the_class_layout(tmp_path: Path) -> None:
    Image.fromarray(synthetic_xray(np.random.default_rng(8), True)).save(tmp_path / "loose.png")
    with pytest.raises(FileNotFoundError, match="NORMAL"):
        labelled_images(tmp_path)
    with pytest.raises(FileNotFoundError):
        list(iter_image_files(tmp_path / "nope"))
    assert list(iter_image_files(tmp_path / "loose.png")) == [tmp_path / "loose.png"]


def test_a_malformed_number_of_frames_is_a_typed_error() -> None:
    """pydicom-data's badVR.dcm says NumberOfFrames '1A': a typed refusal, not a bare ValueError; and pydicom's
    warning, which quotes the value, is not shown (models/dicom_privacy.py)."""
    path = get_testdata_file("badVR.dcm")
    assert path is not None
    with warnings.catch_warnings(record=True) as shown, pytest.raises(UnsupportedDicomError, match="NumberOfFrames"):
        load_xray_file(Path(str(path)))
    assert not [w for w in shown if "1A" in str(w.message)]


# ----------------------------------------------------------------------------------------------------------
# hostile files: each refused before the costly step, with a typed error that names the problem
# ----------------------------------------------------------------------------------------------------------
def test_a_jpeg_of_too_many_scans_is_refused_before_it_is_decoded() -> None:
    """Each scan of a progressive JPEG costs libjpeg a pass over the whole image, and Pillow sets no limit: 10,000
    repeats of one scan of a legal 7745 x 7745 JPEG (1.2 MB) took 66 s, in the replica's predict lock."""
    bomb = scan_bomb(MAX_JPEG_SCANS + 50, side=512)
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match=f"more than {MAX_JPEG_SCANS} scans") as info:
        load_xray_bytes(bomb, "film.jpg")
    assert info.value.status_code == 415 and time.perf_counter() - start < 2.0
    progressive = io.BytesIO()  # an ordinary progressive JPEG (6 scans) reads
    Image.fromarray(synthetic_xray(np.random.default_rng(9), pneumonia=True)).save(
        progressive, "JPEG", progressive=True
    )
    assert load_xray_bytes(progressive.getvalue(), "film.jpg").source_format == "jpeg"


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (tiff_tile_bomb(4096), "TIFF"),  # 64 x 64, one 4096 x 4096 tile: decoded whole, then read as 64 x 64
        (None, "BMP"),
        (None, "WEBP"),
    ],
    ids=["tiff tile bomb", "bmp", "webp"],
)
def test_only_png_and_jpeg_rasters_are_read(data: bytes | None, named: str) -> None:
    """What the API says it reads (PNG, JPEG, DICOM), checked before anything is decoded: a TIFF's tile may be of
    any size whatever the image's (one of 46,336 a side, 2.1 MB, took 2 GB and was answered 200)."""
    if data is None:
        buffer = io.BytesIO()
        Image.fromarray(synthetic_xray(np.random.default_rng(10), pneumonia=False)).save(buffer, format=named)
        data = buffer.getvalue()
    with pytest.raises(ImageDecodeError, match=f"is a {named} image; MedLens reads PNG, JPEG and DICOM") as info:
        load_xray_bytes(data, "film.png")
    assert info.value.status_code == 415


def test_a_deflated_dicom_reads_as_its_uncompressed_twin() -> None:
    image = load_xray_bytes(deflated_dicom(), "deflated.dcm")
    twin = load_xray_bytes(dicom_file(small_dataset()), "plain.dcm")
    np.testing.assert_array_equal(image.pixels, twin.pixels)
    assert image.dicom_fields["TransferSyntax"] == "Deflated Explicit VR Little Endian"


def test_a_deflate_bomb_is_refused_at_a_stated_size() -> None:
    """pydicom inflates a deflated data set in one zlib.decompress: 1 MB became 2.0 GB (accepted), 24.5 MB a
    MemoryError. It is inflated here a MiB at a time, to at most a 60-megapixel image's size."""
    bomb = deflated_dicom(256 << 20)  # 256 MiB of zeros in a private element: 260 kB
    assert len(bomb) < 300_000
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLargeError, match="deflated data set inflates to more than") as info:
            load_xray_bytes(bomb, "bomb.dcm")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.status_code == 413 and peak < 200 * 2**20, peak
    assert dicom_identity(bomb) is None  # its header does not end within the 8 MiB the identity route inflates


def test_a_corrupt_deflate_stream_is_a_typed_refusal() -> None:
    """zlib.error escaped both readers: the identity route answered 500, the X-ray route a vague 422."""
    corrupt = deflated_dicom(corrupt=True)
    with pytest.raises(ImageDecodeError, match="deflated data set is corrupt") as info:
        load_xray_bytes(corrupt, "corrupt.dcm")
    assert info.value.status_code == 415
    assert dicom_identity(corrupt) is None


@pytest.mark.parametrize("codec", ["jpeg", "j2k"])
def test_a_codestream_larger_than_the_header_says_is_refused_before_it_is_decoded(codec: str) -> None:
    """Decoders allocate what the codestream says, not Rows x Columns: a 2.2 KB file saying 256 x 256 with a
    24,000 x 24,000 JPEG 2000 codestream took 2.8 GB before its refusal (here: 4,000 a side, that the old path
    survives)."""
    with pytest.raises(ImageDecodeError, match="holds a 4000x4000 image but its header says 64x64") as info:
        load_xray_bytes(lying_codestream_dicom(codec, 4000), "lying.dcm")
    assert info.value.status_code == 415


def test_a_jpeg_ls_frame_larger_than_the_header_says_is_refused(tmp_path: Path) -> None:
    """GDCM decoded a 12,000 x 12,000 JPEG-LS frame (360 MB in its worker) under a header saying 256 x 256, and the
    image was read as its first 256 x 256 pixels."""
    source = tmp_path / "wide.dcm"
    source.write_bytes(make_dicom(np.tile(np.arange(96, dtype=np.uint16) * 40, (96, 1))))
    ds = pydicom.dcmread(io.BytesIO(_gdcm_encoded(source, "JPEGLSLossless", tmp_path)))
    ds.Rows = ds.Columns = 64
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(ImageDecodeError, match="holds a 96x96 image but its header says 64x64"):
        load_xray_bytes(buffer.getvalue(), "lying.dcm")


def test_an_rle_segment_that_decodes_past_the_image_is_refused() -> None:
    """pydicom decodes an RLE segment whole before it checks its length, and a 2-byte run repeats a byte up to 128
    times: 24 MB of runs under a 64 x 64 header decode to 1.5 GB (here 200,000 runs: 25 MB, read as 64 x 64)."""
    with pytest.raises(ImageDecodeError, match=r"RLE segment .* decodes to more than") as info:
        load_xray_bytes(rle_bomb(200_000), "rle.dcm")
    assert info.value.status_code == 415


@pytest.mark.parametrize(
    "bomb",
    [item_bomb(MAX_ELEMENTS + 10_000), item_bomb(MAX_ELEMENTS + 10_000, defined_length=True, tag=0x00283000)],
    ids=["undefined length, read with the file", "defined length, read when used (Modality LUT Sequence)"],
)
def test_a_dicom_of_too_many_elements_is_refused_before_pydicom_builds_them(bomb: bytes) -> None:
    """pydicom builds an object for every sequence item: 3.3 M empty ones (25 MB) took 49 s and 2.2 GB in the
    replica, and as long in the ingress (the identity route)."""
    start = time.perf_counter()
    with pytest.raises(PayloadTooLargeError, match=f"more than {MAX_ELEMENTS:,} data elements") as info:
        load_xray_bytes(bomb, "items.dcm")
    assert info.value.status_code == 413
    assert dicom_identity(bomb) is None
    with pytest.raises(PayloadTooLargeError, match=f"upload: the DICOM file holds more than {MAX_ELEMENTS:,}"):
        dicom_identity(bomb, refusals=True)  # for a route that names the problem
    assert time.perf_counter() - start < 2.0  # pydicom took ~0.5 s on these 30,000 items alone


def test_zeros_named_dcm_are_refused_at_once() -> None:
    """25 MB of zeros read as a DICOM without preamble (the fallback after the raster decoders) are 3.3 M empty
    elements to pydicom: 6.5 to 9 s."""
    start = time.perf_counter()
    with pytest.raises(PayloadTooLargeError, match="data elements"):
        load_xray_bytes(b"\0" * (25 << 20), "scan.dcm")
    assert time.perf_counter() - start < 2.0


def test_a_large_image_is_kept_at_the_preview_s_size() -> None:
    """The decoded image is area-averaged to 1024 px on its longer side as it is decoded (a JPEG at a reduced
    scale first): a batch of 16 uploads at the 60-megapixel limit held 16 x 240 MB of float32 until answered."""
    upright = np.add.outer(np.arange(3000) // 12, np.arange(2000) // 12).astype(np.uint8)  # 3000 x 2000
    image = load_xray_bytes(png_bytes(upright), "tall.png")
    assert image.size == (3000, 2000) and image.pixels.shape == kept_shape(3000, 2000) == (1024, 683)
    assert image.pixels.dtype == np.float32 and image.pixels.nbytes <= 4 * 2**20
    expected = np.asarray(Image.fromarray(upright / 255.0).resize((683, 1024), Image.Resampling.BOX))
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)  # what serving's preview of the whole was


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_large_sideways_photograph_is_kept_upright(fmt: str) -> None:
    upright = np.add.outer(np.arange(2400) // 10, np.zeros(1600, dtype=int)).astype(np.uint8)  # dark top, light foot
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 1600 high, 2400 wide
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    image = load_xray_bytes(buffer.getvalue(), f"phone.{fmt.lower()}")
    assert image.size == (2400, 1600) and image.pixels.shape == (1024, 683)
    expected = np.asarray(Image.fromarray(upright / 255.0).resize((683, 1024), Image.Resampling.BOX))
    assert float(np.abs(image.pixels - expected).mean()) < 0.01


def _peak_while_loading(data: bytes, name: str) -> int:
    tracemalloc.start()
    try:
        load_xray_bytes(data, name)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_decoding_a_large_image_makes_no_full_size_float_copy() -> None:
    """Python-side allocations while a 7.5-megapixel image is decoded (tracemalloc: numpy's and pydicom's, not
    Pillow's): its float copies were 86 MiB for a 16-bit PNG, 192 MiB for a windowed DICOM."""
    ramp = (np.add.outer(np.arange(3000), np.arange(2500)) * 5).astype(np.uint16)
    png = png_bytes(ramp)
    dicom = dicom_file(small_dataset(ramp, WindowCenter=10000, WindowWidth=20000, RescaleSlope=1.5, RescaleIntercept=0))
    assert _peak_while_loading(png, "deep.png") < 40 * 2**20
    assert _peak_while_loading(dicom, "deep.dcm") < 100 * 2**20  # of which 30 MB are its pixel data and array


def test_running_out_of_memory_is_a_typed_refusal() -> None:
    """A MemoryError escaped the loader (a 500 in serving, a traceback in models.predict): here a 6000 x 6000
    RGBA PNG under an address-space limit that leaves it no room to decode."""
    program = (
        "import io, resource\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "from models.errors import PayloadTooLargeError\n"
        "from models.xray_io import load_xray_bytes\n"
        "buffer = io.BytesIO()\n"
        "Image.new('RGBA', (6000, 6000), (9, 9, 9, 255)).save(buffer, 'PNG')\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + (96 << 20), resource.RLIM_INFINITY))\n"
        "try:\n"
        "    load_xray_bytes(buffer.getvalue(), 'big.png')\n"
        "except PayloadTooLargeError as exc:\n"
        "    print('REFUSED', exc.status_code, exc.message)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2]
    )
    assert run.stdout.startswith("REFUSED 413 big.png: decoding the image needs more memory"), run.stderr[-2000:]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"RescaleSlope": 0, "RescaleIntercept": 5}, "RescaleSlope 0,"),
        ({"RescaleSlope": "NaN", "RescaleIntercept": 0}, "RescaleSlope nan,"),
        ({"RescaleSlope": 1, "RescaleIntercept": "-inf"}, "RescaleIntercept -inf"),
        ({"RescaleSlope": "1e308", "RescaleIntercept": 0}, "beyond floating point range"),
    ],
    ids=["slope 0", "slope NaN", "intercept infinite", "slope 1e308"],
)
def test_a_rescale_that_blanks_the_image_is_refused(fields: dict[str, object], problem: str) -> None:
    """Each of these read as an all-black image, and it was scored (PNEUMONIA, p = 0.91)."""
    data = _with_header(make_dicom(half_ramp()), **fields)
    with pytest.raises(UnsupportedDicomError, match="rescale") as info:
        load_xray_bytes(data, "rescaled.dcm")
    assert problem in info.value.message and info.value.status_code == 422


def test_pixel_values_that_are_not_numbers_are_refused() -> None:
    values = np.full((64, 64), np.nan, dtype=np.float32)
    ds = small_dataset(None, FloatPixelData=values.tobytes(), Rows=64, Columns=64)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    with pytest.raises(UnsupportedDicomError, match="NaN or infinity"):
        load_xray_bytes(dicom_file(ds), "float.dcm")


def test_an_image_without_contrast_is_refused_naming_why() -> None:
    with pytest.raises(UnsupportedDicomError, match=r"no contrast \(every pixel holds the same value\)"):
        load_xray_bytes(make_dicom(np.full((64, 64), 700, dtype=np.uint16)), "flat.dcm")
    windowed = _with_header(make_dicom(half_ramp()), WindowCenter=100, WindowWidth=50)  # every value above it
    with pytest.raises(UnsupportedDicomError, match=r"its window .* maps every pixel to one grey level"):
        load_xray_bytes(windowed, "windowed.dcm")


def _color_dicom(samples: np.ndarray, photometric: str, bits: int, **fields: object) -> bytes:
    ds = small_dataset(None, **fields)
    ds.Rows, ds.Columns = samples.shape[:2]
    ds.SamplesPerPixel = 3 if samples.ndim == 3 else 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if samples.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PixelData = samples.tobytes()
    return dicom_file(ds)


def test_a_16_bit_rgb_dicom_is_read_over_its_16_bits() -> None:
    """``astype(np.uint8)`` read a stored 384 as 128: darker than a stored 255."""
    samples = np.full((64, 64, 3), 384, dtype=np.uint16)
    samples[:32] = 255
    image = load_xray_bytes(_color_dicom(samples, "RGB", 16), "rgb16.dcm")
    assert image.pixels[0, 0] == pytest.approx(255 / 65535, rel=1e-3)
    assert image.pixels[-1, 0] == pytest.approx(384 / 65535, rel=1e-3)


def test_a_palette_color_dicom_is_read_through_its_palette() -> None:
    """The indices were read as grey levels: with a palette from white (index 0) to black, inverted."""
    indices = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    white_to_black = (np.arange(256)[::-1].astype("<u2") * 257).tobytes()
    palette = {}
    for colour in ("Red", "Green", "Blue"):
        palette[f"{colour}PaletteColorLookupTableDescriptor"] = [256, 0, 16]
        palette[f"{colour}PaletteColorLookupTableData"] = white_to_black
    image = load_xray_bytes(_color_dicom(indices, "PALETTE COLOR", 8, **palette), "palette.dcm")
    assert image.pixels[0, 0] == pytest.approx(1.0) and image.pixels[0, -1] == pytest.approx(3 / 255, abs=1e-3)


def test_a_dicom_without_pixel_data_quotes_only_a_dicom_term_as_its_modality() -> None:
    """The message quoted any Modality that fits the CS pattern: "(modality DOE JANE)"."""
    with pytest.raises(UnsupportedDicomError, match=r"\(modality not a DICOM term\)") as info:
        load_xray_bytes(make_dicom(None, modality="DOE JANE"), "report.dcm")
    assert "JANE" not in info.value.message
