"""GDCM in a worker process of its own: a worker that aborts or hangs costs one file a typed refusal and the next
file gets a new worker; GDCM is never pydicom's fallback for the syntaxes other decoders take. And the walk over a
DICOM's structure before pydicom reads it (``readable_dicom``): every real file passes it and counts at least what
pydicom builds; a file past its bounds is refused before pydicom builds anything; a deflated one is inflated to a
stated size."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder

import models.xray_io  # noqa: F401  (importing the loader keeps GDCM to its own syntaxes)
from models.dicom_isolation import (
    GDCM_ONLY,
    MAX_DEPTH,
    MAX_ELEMENTS,
    MAX_INFLATED,
    MAX_INFLATED_HEADER,
    readable_dicom,
    run_isolated,
)
from models.errors import ImageDecodeError, PayloadTooLargeError
from tests.hostile import deep_dicom, deflated_dicom, dicom_file, item_bomb, small_dataset

REPO = Path(__file__).resolve().parents[2]


def test_a_worker_that_aborts_is_a_typed_refusal_and_the_next_call_gets_a_new_one() -> None:
    first = run_isolated(os.getpid)
    assert first != os.getpid()
    with pytest.raises(ImageDecodeError, match="decoder stopped"):
        run_isolated(os.abort)  # what GDCM's uncaught C++ exception does to a process: SIGABRT
    second = run_isolated(os.getpid)
    assert second not in (first, os.getpid())


def test_a_worker_that_hangs_is_killed_at_the_timeout() -> None:
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="longer than 1 s"):
        run_isolated(time.sleep, 60, timeout=1.0)
    assert time.perf_counter() - start < 30
    assert run_isolated(sum, [1, 2, 3]) == 6


def test_the_worker_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    """Ray kills a replica with SIGKILL (scale-down, a crash): nothing shuts its worker down, which stayed, orphaned,
    for good."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from models.dicom_isolation import run_isolated\n"
        "if __name__ == '__main__':\n"
        "    print(run_isolated(os.getpid), flush=True)\n"
        "    time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert _alive(worker)
    finally:
        parent.kill()
        parent.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphaned = _alive(worker)
    if orphaned:  # leave no process behind, even when the test fails
        os.kill(worker, signal.SIGKILL)
    assert not orphaned, f"worker {worker} outlived its parent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) has gone too
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] != "Z"


def test_the_worker_s_own_exceptions_come_back_as_raised() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        run_isolated(int, "not a number")


def test_gdcm_decodes_only_what_nothing_else_here_does() -> None:
    """pydicom tries a syntax's plugins in turn, GDCM first: with GDCM installed, every JPEG baseline DICOM went to
    GDCM, in the replica's own process, and a mutated one aborted it (found by mutating DICOM files)."""
    for syntax in (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEG2000, uid.JPEG2000Lossless):
        plugins = get_decoder(syntax).available_plugins
        assert plugins and "gdcm" not in plugins, (syntax.name, plugins)
    for syntax in GDCM_ONLY:
        assert get_decoder(syntax).available_plugins == ("gdcm",), syntax.name


# ----------------------------------------------------------------------------------------------------------
# readable_dicom: a DICOM's structure walked before pydicom reads it
# ----------------------------------------------------------------------------------------------------------
def _built(ds: Dataset) -> int:
    """Data elements and sequence items pydicom builds for ``ds``, its sequences of defined length read too."""
    count = 0
    for element in ds:
        count += 1
        if element.VR == "SQ":
            count += sum(1 + _built(item) for item in element.value)
    return count


def _pydicom_data_files() -> list[Path]:
    """pydicom-data's files installed with pydicom (``get_testdata_files`` tries to download the others first)."""
    return sorted(p for p in (Path(pydicom.data.__file__).parent / "test_files").rglob("*") if p.is_file())


def test_every_real_file_passes_the_walk_which_counts_what_pydicom_builds() -> None:
    """pydicom-data's files (CT, MR, SR, waveforms, RT, encapsulated, deflated, big endian, without preamble...):
    none is refused, and the walk counts at least the elements and items pydicom makes of each (the count is what
    bounds pydicom's work)."""
    files = _pydicom_data_files()
    assert len(files) > 100
    compared = 0
    for path in files:
        data = path.read_bytes()
        marked = data[128:132] == b"DICM"
        readable = readable_dicom(data, not marked, path.name)
        assert readable.elements <= MAX_ELEMENTS // 4, path.name  # real headers are far below the bound
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(io.BytesIO(readable.data), force=not marked)
                built = _built(ds) + len(ds.file_meta)
        except Exception:  # a file pydicom cannot read whole (a truncated one, a broken sequence): nothing to compare
            continue
        assert readable.elements >= built, (path.name, readable.elements, built)
        compared += 1
    assert compared > 100


def test_a_deflated_file_is_inflated_for_pydicom() -> None:
    path = Path(str(get_testdata_file("image_dfl.dcm")))
    data = path.read_bytes()
    readable = readable_dicom(data, False, path.name)
    assert readable.deflated and readable.data != data
    inflated, original = pydicom.dcmread(io.BytesIO(readable.data)), pydicom.dcmread(io.BytesIO(data))
    assert inflated.file_meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian
    np.testing.assert_array_equal(inflated.pixel_array, original.pixel_array)
    assert inflated.PatientName == original.PatientName


def test_a_deflate_bomb_stops_at_the_stated_size() -> None:
    bomb = deflated_dicom(MAX_INFLATED + (1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLargeError, match=f"inflates to more than {MAX_INFLATED:,} bytes"):
            readable_dicom(bomb, False, "bomb.dcm")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_INFLATED + (32 << 20), peak  # what the cap holds, not the 2 GB pydicom inflated 1 MB to
    with pytest.raises(PayloadTooLargeError, match="deflated header inflates to more than"):
        readable_dicom(bomb, False, "bomb.dcm", header_only=True)


def test_a_deflated_header_is_read_without_its_pixels() -> None:
    """For the identity route (``header_only``): the first 8 MiB inflated are enough when the header ends in them,
    here before 18 MB of pixels."""
    big = deflated_dicom(pixels=np.tile(np.arange(3000, dtype=np.uint16), (3000, 1)))
    readable = readable_dicom(big, False, "big.dcm", header_only=True)
    assert readable.deflated and len(readable.data) < MAX_INFLATED_HEADER + 4096
    ds = pydicom.dcmread(io.BytesIO(readable.data), stop_before_pixels=True)
    assert ds.Rows == 3000 and ds.Modality == "CR"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (deflated_dicom(corrupt=True), "deflated data set is corrupt"),
        (deflated_dicom()[:-200], "deflated data set is cut short"),
    ],
    ids=["corrupt", "cut short"],
)
def test_a_broken_deflate_stream_is_a_typed_refusal(data: bytes, problem: str) -> None:
    with pytest.raises(ImageDecodeError, match=problem):
        readable_dicom(data, False, "deflated.dcm")


def test_the_element_bound_holds_where_it_is_stated() -> None:
    items = MAX_ELEMENTS - readable_dicom(item_bomb(0), False, "none.dcm").elements  # the file, an empty sequence
    assert readable_dicom(item_bomb(items), False, "many.dcm").elements == MAX_ELEMENTS
    start = time.perf_counter()
    with pytest.raises(PayloadTooLargeError, match=f"more than {MAX_ELEMENTS:,} data elements"):
        readable_dicom(item_bomb(items + 1), False, "too-many.dcm")
    with pytest.raises(PayloadTooLargeError):
        readable_dicom(item_bomb(3_000_000), False, "25-mb.dcm")  # 49 s and 2.2 GB in pydicom
    assert time.perf_counter() - start < 2.0


def test_sequences_nest_to_the_stated_depth() -> None:
    plain = dicom_file(small_dataset(PatientName="Doe^Jane"))
    assert readable_dicom(deep_dicom(plain, depth=MAX_DEPTH), False, "deep.dcm").elements > 2 * MAX_DEPTH
    with pytest.raises(
        ImageDecodeError, match=f"is not a readable DICOM file: its sequences nest more than {MAX_DEPTH}"
    ):
        readable_dicom(deep_dicom(plain, depth=MAX_DEPTH + 1), False, "deeper.dcm")


@pytest.mark.parametrize("padding", [1 << 10, 1 << 20])
def test_zero_bytes_after_the_last_element_are_padding_not_elements(padding: int) -> None:
    """Some exporters pad a file with zero bytes; pydicom would read every 8 of them as an empty element, and a MiB
    of them counted past the element bound (a real radiograph padded so was refused, 413). The file is read
    without them, as it reads unpadded."""
    from models.xray_io import dicom_identity, load_xray_bytes

    data = dicom_file(small_dataset())
    padded = data + b"\0" * padding
    readable = readable_dicom(padded, False, "padded.dcm")
    assert readable.data == data and readable.elements == readable_dicom(data, False, "plain.dcm").elements
    np.testing.assert_array_equal(load_xray_bytes(padded, "x.dcm").pixels, load_xray_bytes(data, "x.dcm").pixels)
    assert dicom_identity(padded, refusals=True) == dicom_identity(data, refusals=True)
    # bytes after the padding are not padding: the walk reads them as pydicom will
    with pytest.raises(PayloadTooLargeError):
        readable_dicom(data + b"\0" * (8 * MAX_ELEMENTS + 8) + b"\1", False, "not padded.dcm")
