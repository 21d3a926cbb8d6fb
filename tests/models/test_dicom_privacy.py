"""A malformed DICOM's patient identifiers reach no log, warning, error message or header field
(models/dicom_privacy.py and the loader's checks in models/xray_io.py).

The files are read in a fresh Python process set up as a model replica is (models.xray_io imported, every log
record at DEBUG and every warning written to stderr), so what this finds is what a replica's log would hold."""

from __future__ import annotations

import io
import random
import re
import struct
import subprocess
import sys
from pathlib import Path

import pydicom
import pydicom.config
import pytest

from models.dicom_isolation import MAX_ELEMENTS, run_isolated
from models.errors import MedLensInputError
from models.xray_io import NOT_A_TERM, UNREADABLE, load_xray_bytes
from tests.hostile import nested_sequence
from tests.models.test_xray_io import IDENTIFIERS, half_ramp, make_dicom

#: Every identifier of the test files, in the words a leak would show (a name's components, a date, a number).
SECRETS = sorted(
    {part for value in IDENTIFIERS.values() for part in str(value).replace("^", " ").split() if len(part) > 3}
)

READER = r"""
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
from models.errors import MedLensInputError
from models.xray_io import load_xray_bytes
for path in sorted(Path(sys.argv[1]).iterdir()):
    try:
        image = load_xray_bytes(path.read_bytes(), "upload.dcm")
        print(path.name, "FIELDS", repr(image.dicom_fields))
    except MedLensInputError as exc:
        print(path.name, "REFUSED", exc.status_code, repr(exc.message))
"""


def swallowing(data: bytes, tag: bytes, until: bytes, past: int = 0) -> bytes:
    """``data`` with the explicit-VR element ``tag`` (4 bytes, little endian; a 2-byte length) lengthened to run
    on over every element up to ``until``: its value now holds them, and the file reads on in step after it.
    ``past``: that many bytes further, so that the file reads on out of step (and never finds its pixels)."""
    at = data.index(tag) + 6  # the length, after the tag and the VR
    end = data.index(until, at)
    return data[:at] + (end - at - 2 + past).to_bytes(2, "little") + data[at + 2 :]


MODALITY, BODY_PART = b"\x08\x00\x60\x00CS", b"\x18\x00\x15\x00CS"


def test_a_value_that_runs_on_over_the_identifiers_is_never_shown() -> None:
    """Modality runs on over the institution, the physicians and the patient: the image still reads, and its
    Modality is "unreadable" (it was "CR" with the hospital's name after it, in the answer and the database)."""
    data = swallowing(make_dicom(half_ramp(), identifiers=True), MODALITY, BODY_PART)
    assert "Doe^Jane^Q" in str(pydicom.dcmread(io.BytesIO(data)).Modality)  # the value holds them, as intended
    image = load_xray_bytes(data, "upload.dcm")
    assert image.dicom_fields["Modality"] == UNREADABLE
    assert image.dicom_fields["BodyPartExamined"] == "CHEST"  # read in step after it
    text = repr(image.dicom_fields)
    assert not [s for s in SECRETS if s in text]


def _inputs(folder: Path) -> int:
    """Write the files to read: mutated copies of a DICOM that carries every identifier, and one whose Modality runs
    on over them; return how many."""
    identified = make_dicom(half_ramp(), identifiers=True)
    files = {
        "modality-runs-on.dcm": swallowing(identified, MODALITY, BODY_PART),
    }
    rng = random.Random(0)
    for i in range(300):  # 1-4 bytes changed in the header, where the identifiers and their neighbours lie
        mutated = bytearray(identified)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(132, 900)] = rng.randrange(256)
        files[f"mutated-{i:03d}.dcm"] = bytes(mutated)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return len(files)


def test_no_identifier_reaches_the_log_the_warnings_or_the_answers(tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    count = _inputs(folder)
    run = subprocess.run(
        [sys.executable, "-c", READER, str(folder)],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode == 0, run.stderr[-3000:]
    answers = run.stdout.splitlines()
    assert len(answers) == count
    refused = [a for a in answers if " REFUSED " in a]
    read = [a for a in answers if " FIELDS " in a]
    assert len(refused) > 50 and len(read) > 50  # both paths ran
    leaks = [(where, s) for where, text in (("answers", run.stdout), ("log", run.stderr)) for s in SECRETS if s in text]
    assert not leaks, f"identifiers in the {leaks}: " + next(
        line[:400] for line in (run.stdout + run.stderr).splitlines() if any(s in line for _, s in leaks)
    )
    assert "pydicom reported a problem" in run.stderr  # pydicom did complain: its records arrive, without words


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("PixelSpacing", "0.14\\0.14", "0.14 x 0.14"),  # a multi-valued field: its values joined
        ("Modality", "CR", "CR"),
        ("Modality", "", ""),
        ("Modality", "CR\\DX", NOT_A_TERM),  # Modality holds one value (VM 1): two are no DICOM term
    ],
)
def test_a_legible_value_is_shown_as_it_is(field: str, value: str, shown: str) -> None:
    ds = pydicom.dcmread(io.BytesIO(make_dicom(half_ramp())))
    setattr(ds, field, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert load_xray_bytes(buf.getvalue(), "upload.dcm").dicom_fields.get(field, "") == shown


def test_the_gdcm_worker_process_is_set_up_the_same_way() -> None:
    """The worker that decodes JPEG Lossless and JPEG-LS (models/dicom_isolation.py) is a fresh interpreter that
    never imports models.xray_io: its pydicom is set up as it starts. Asked there (``eval`` is the one callable at
    hand that imports nothing of ours into it)."""
    setting = "__import__('pydicom.config').config.settings.reading_validation_mode"
    assert run_isolated(eval, setting) == pydicom.config.IGNORE
    assert run_isolated(eval, "__import__('logging').getLogger('pydicom').propagate") is False
    modules = "[getattr(f[3], 'pattern', f[3]) for f in __import__('warnings').filters if f[0] == 'ignore']"
    assert r"pydicom(\.|$)" in run_isolated(eval, modules)


def _refusals() -> dict[str, bytes]:
    """Identified files that the loader refuses for what their header or structure says."""
    identified = make_dicom(half_ramp(), identifiers=True)
    ds = pydicom.dcmread(io.BytesIO(identified))
    ds.RescaleSlope, ds.RescaleIntercept = 0, 5
    rescaled = io.BytesIO()
    ds.save_as(rescaled, enforce_file_format=True)
    at = identified.index(b"\x10\x00\x10\x00PN")  # before PatientName
    items = struct.pack("<HH2sHI", 0x0009, 0x1010, b"SQ", 0, 0xFFFFFFFF)
    items += struct.pack("<HHI", 0xFFFE, 0xE000, 0) * (MAX_ELEMENTS + 1) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return {
        "modality holds a name": make_dicom(None, identifiers=True, modality="DOE JANE"),
        "rescale slope 0": rescaled.getvalue(),
        "too many items": identified[:at] + items + identified[at:],
        "nested too deep": identified[:at] + nested_sequence(40) + identified[at:],
    }


@pytest.mark.parametrize("case", sorted(_refusals()))
def test_a_refusal_quotes_nothing_of_the_header(case: str) -> None:
    """A refusal's words go back to the uploader and into a case upload's ``rejected`` list: a Modality that holds
    a name was quoted ("(modality DOE JANE)"), in any case of letters."""
    with pytest.raises(MedLensInputError) as info:
        load_xray_bytes(_refusals()[case], "upload.dcm")
    words = set(re.findall(r"[a-z0-9-]+", info.value.message.lower()))
    assert not [s for s in [*SECRETS, "Doe"] if s.lower() in words], info.value.message
