"""Hostile DICOM files kept from harming the process that reads them.

GDCM, pydicom's decoder of JPEG Lossless and JPEG-LS, in a worker process of its own. GDCM is C++: on some
malformed streams it throws an exception nothing catches and the whole process aborts (``std::terminate``; seen on
a mutated JPEG baseline DICOM). In a model replica that would take every other request in flight down with it. So:

* GDCM decodes only the transfer syntaxes nothing else here decodes (:data:`GDCM_ONLY`); for the others pydicom
  never falls back to it (:func:`keep_gdcm_to_its_own_syntaxes`, called when models.xray_io is imported).
* Those files are decoded in one worker process (:func:`run_isolated`), one at a time: a worker that aborts or
  hangs costs that one file a typed refusal, and the next file gets a new worker.

pydicom's own reading has no bound either: it builds a Python object for every data element and sequence item (a
25 MB file of empty sequence items took 49 s and 2.2 GB), and it inflates a Deflated Explicit VR Little Endian data
set in one ``zlib.decompress`` (1 MB became 2 GB). :func:`readable_dicom` walks a file's structure as pydicom
will read it, without building anything, and refuses one that holds more than :data:`MAX_ELEMENTS` elements or
nests sequences deeper than :data:`MAX_DEPTH`; it inflates a deflated data set itself, to at most
:data:`MAX_INFLATED` bytes.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import struct
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pydicom
from pydicom import config, uid
from pydicom.datadict import dictionary_VR
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import ENCODED_VR
from pydicom.filewriter import write_file_meta_info
from pydicom.pixels import get_decoder
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pydicom.values import converters

from models.dicom_privacy import exception_kind, keep_header_text_out_of_logs
from models.errors import ImageDecodeError, PayloadTooLargeError

#: the transfer syntaxes GDCM alone decodes here (Pillow and pylibjpeg-openjpeg take JPEG baseline, extended and
#: JPEG 2000; pydicom itself RLE)
GDCM_ONLY = frozenset({uid.JPEGLossless, uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.JPEGLSNearLossless})
#: seconds one file may take in the worker before it is killed (a 60-megapixel JPEG Lossless takes about 1 s)
DECODE_TIMEOUT_S = 30.0

T = TypeVar("T")


def keep_gdcm_to_its_own_syntaxes() -> None:
    """Remove GDCM from pydicom's decoders of every transfer syntax but :data:`GDCM_ONLY` (pydicom tries each
    available plugin in turn, so a stream Pillow refuses would otherwise reach GDCM, in this process)."""
    for syntax in uid.AllTransferSyntaxes:
        if syntax in GDCM_ONLY:
            continue
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:  # a syntax pydicom has no decoder for
            continue
        if "gdcm" in decoder.available_plugins:
            decoder.remove_plugin("gdcm")


class _Worker:
    """One worker process, started on first use and replaced after it dies or hangs; one job at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._pid: int | None = None

    def run(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        with self._lock:
            try:
                return self._start().submit(fn, *args).result(timeout=timeout)
            except BrokenProcessPool as exc:  # it died on this job (one that cannot start: _start's RuntimeError)
                self._discard()
                raise ImageDecodeError(
                    "the decoder stopped on this file's pixel data (a malformed compressed stream); the file "
                    "cannot be read. Re-export it from the PACS or modality."
                ) from exc
            except FutureTimeout as exc:
                self._discard(kill=True)
                raise ImageDecodeError(
                    f"decoding this file's pixel data took longer than {timeout:g} s and was stopped; the file "
                    "cannot be read. Re-export it from the PACS or modality."
                ) from exc

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fresh interpreter, never a fork of a replica's threads. Like any spawned process it imports
            # the parent's main module first (a script run as a file, without running its `__main__` block).
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(os.getpid(),),
            )
            try:
                self._pid = self._pool.submit(os.getpid).result(timeout=120)
            except (BrokenProcessPool, FutureTimeout) as exc:
                self._discard(kill=True)
                raise RuntimeError(
                    "the worker process that decodes JPEG Lossless and JPEG-LS could not start (a spawned process "
                    "imports the parent's main module: is it a file, and importable?)"
                ) from exc
        return self._pool

    def _discard(self, kill: bool = False) -> None:
        if kill and self._pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it died on its own meanwhile
                os.kill(self._pid, signal.SIGKILL)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool, self._pid = None, None


def _start_worker(parent: int) -> None:
    """In the worker, before its first job: pydicom quotes no header there either (it reads the pixel module's
    elements only, but a lying file can put anything anywhere), and it exits with ``parent``."""
    keep_header_text_out_of_logs()
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """In the worker: exit as soon as ``parent`` is gone. A replica that Ray kills (SIGKILL, on scale-down or a
    crash) cannot shut its worker down, which would otherwise live on, orphaned, for good."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


_WORKER = _Worker()


def run_isolated(fn: Callable[..., T], *args: Any, timeout: float = DECODE_TIMEOUT_S) -> T:
    """``fn(*args)`` in the worker process (``fn`` and its arguments picklable); its exceptions come back as
    raised. A worker that dies or runs past ``timeout`` is an :class:`~models.errors.ImageDecodeError`."""
    return _WORKER.run(fn, *args, timeout=timeout)


def _decode(data: bytes, force: bool) -> np.ndarray:
    return np.asarray(pydicom.dcmread(io.BytesIO(data), force=force).pixel_array)


def decode_isolated(data: bytes, force: bool) -> np.ndarray:
    """The pixel array of the DICOM file ``data``, decoded in the worker process."""
    return run_isolated(_decode, data, force)


#: Data elements a DICOM file may hold, sequence items and pixel data fragments counted: a radiograph's header holds
#: a few hundred; pydicom spends about 15 us and 0.7 kB on each (a file of 3.3 M empty items took 49 s and 2.2 GB).
MAX_ELEMENTS = 20_000
#: How deep sequences may nest (pydicom reads them recursively: 300 levels exhaust Python's stack).
MAX_DEPTH = 32
#: The most bytes a deflated data set may inflate to: a 60-megapixel 16-bit image and 8 MiB of header.
MAX_INFLATED = 2 * 60_000_000 + (8 << 20)
#: ... when only the header is read (:func:`readable_dicom` with ``header_only``): the inflated data set is cut there.
MAX_INFLATED_HEADER = 8 << 20

_ITEM_END, _SEQUENCE_END = 0xFFFEE00D, 0xFFFEE0DD
#: (7FE0,0010) Pixel Data, (7FE0,0009) Double Float and (7FE0,0008) Float Pixel Data
_PIXEL_DATA = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})


@dataclass(frozen=True)
class Readable:
    """What :func:`readable_dicom` found: ``data``, the bytes pydicom is to read (the file itself, or a deflated
    file's data set inflated, under a file meta group that says Explicit VR Little Endian); ``elements``, how many
    data elements, sequence items and pixel data fragments the walk counted; ``deflated``: the file was Deflated
    Explicit VR Little Endian."""

    data: bytes
    elements: int
    deflated: bool = False


def readable_dicom(data: bytes, force: bool, name: str, *, header_only: bool = False) -> Readable:
    """``data`` (a DICOM file, read with the preamble or, with ``force``, without) checked before pydicom reads it:
    its structure walked as pydicom will read it (pydicom's ``read_partial``, ``read_dataset`` and
    ``read_sequence``), counting every element, sequence item and pixel data fragment, without building anything.
    Zero bytes after the data set's last element (padding) are left out of ``data``. Raises
    :class:`~models.errors.PayloadTooLargeError` for more than :data:`MAX_ELEMENTS` of them or a deflated data
    set beyond :data:`MAX_INFLATED` bytes, :class:`~models.errors.ImageDecodeError` for sequences nested deeper
    than :data:`MAX_DEPTH` or a deflate stream that is corrupt or cut short. ``header_only``: the pixel data will
    not be read, and a deflated data set is inflated to :data:`MAX_INFLATED_HEADER` bytes only.

    pydicom reads a sequence of defined length only when it is first used: the walk counts those whose elements
    the loader can use (a sequence by its value representation, or by the DICOM dictionary), not a private one
    written in implicit VR (never read here)."""
    walk = _Walk(data, name)
    at = walk.dataset_start(force)
    if at is None:
        return Readable(data, walk.count)
    start, implicit, little = at
    if walk.syntax != uid.DeflatedExplicitVRLittleEndian:
        walk.dataset(start, len(data), implicit, little, top=True, depth=0)
        return Readable(data if walk.padding_at is None else data[: walk.padding_at], walk.count)
    inflated, cut = _inflated(data[start:], name, MAX_INFLATED_HEADER if header_only else MAX_INFLATED, header_only)
    meta = pydicom.dcmread(io.BytesIO(data[: walk.meta_end]), force=True).file_meta
    meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    buffer = DicomBytesIO()
    buffer.write(data[: walk.meta_start])  # the preamble and "DICM", if the file has them
    write_file_meta_info(buffer, meta, enforce_standard=False)
    rebuilt = buffer.getvalue() + data[walk.meta_end : start] + inflated  # the command set group, if any, as it was
    inflated_walk = _Walk(rebuilt, name, walk.count)
    inflated_walk.dataset(len(rebuilt) - len(inflated), len(rebuilt), False, True, top=True, depth=0)
    if cut and not inflated_walk.pixel_data:  # the header itself is longer than what was inflated
        raise PayloadTooLargeError(
            f"{name}: the DICOM's deflated header inflates to more than {MAX_INFLATED_HEADER:,} bytes (a radiograph's "
            "holds a few kB); MedLens does not read it. Export the image alone from the PACS or modality."
        )
    if inflated_walk.padding_at is not None:
        rebuilt = rebuilt[: inflated_walk.padding_at]
    return Readable(rebuilt, inflated_walk.count, deflated=True)


def _zero_tail(buf: bytes) -> int:
    """Where the zero bytes that end ``buf`` begin (``len(buf)``: it does not end with one)."""
    end, step = len(buf), 1 << 16
    while end > 0:
        start = max(0, end - step)
        kept = buf[start:end].rstrip(b"\0")
        if kept:
            return start + len(kept)
        end = start
    return 0


def _inflated(deflated: bytes, name: str, limit: int, cut: bool) -> tuple[bytes, bool]:
    """A deflated data set inflated to at most ``limit`` bytes, a MiB at a time (one ``decompress`` to the limit held
    it twice over while joining its blocks); and whether it was cut there (``cut``: the first ``limit`` bytes of a
    longer one are returned, else it is refused)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pending = deflated
    try:
        while len(out) <= limit and not inflater.eof:
            piece = inflater.decompress(pending, min(1 << 20, limit + 1 - len(out)))
            pending = inflater.unconsumed_tail
            if not piece:
                break  # the stream is used up without its end
            out += piece
    except zlib.error as exc:
        raise ImageDecodeError(
            f"{name}: the DICOM's deflated data set is corrupt (zlib: {exception_kind(exc)}); the file cannot be read. "
            "Export it again from the PACS or modality."
        ) from exc
    if len(out) > limit:
        if cut:
            return bytes(out[:limit]), True
        raise PayloadTooLargeError(
            f"{name}: the DICOM's deflated data set inflates to more than {limit:,} bytes (a 60-megapixel 16-bit "
            "gray image and its header need less); export it uncompressed or with image compression (JPEG, JPEG 2000)."
        )
    if not inflater.eof and not cut:
        raise ImageDecodeError(
            f"{name}: the DICOM's deflated data set is cut short; the file may be truncated. Export it again from the "
            "PACS or modality."
        )
    return bytes(out), False


class _Walk:
    """One walk over a DICOM file's bytes, element by element, as pydicom reads them (the same value representation
    and implicit/explicit choices, the same ends of items and sequences), counting as it goes."""

    def __init__(self, buf: bytes, name: str, count: int = 0) -> None:
        self.buf, self.name, self.count = buf, name, count
        self.syntax: str | None = None  # the file meta group's TransferSyntaxUID
        self.meta_start = self.meta_end = 0
        self.pixel_data = False  # the walk reached the data set's pixel data
        self.zero_tail = _zero_tail(buf)  # from here to the end every byte is 0
        self.padding_at: int | None = None  # where a data set's trailing zero bytes begin, at an element's start

    def dataset_start(self, force: bool) -> tuple[int, bool, bool] | None:
        """Walk the preamble, the file meta group and a command set group; then where the data set starts and how
        pydicom reads it (implicit VR, little endian). None: pydicom will refuse the file or read no data set."""
        buf = self.buf
        if buf[128:132] == b"DICM":
            pos = 132
        elif not force:
            return None  # pydicom raises InvalidDicomError
        else:
            pos = 0
        self.meta_start = pos
        pos = self.dataset(pos, len(buf), False, True, top=True, depth=0, group=0x0002)
        self.meta_end = pos
        pos = self.dataset(pos, len(buf), True, True, top=True, depth=0, group=0x0000)
        if pos >= len(buf):
            return None
        syntax = self.syntax
        if syntax is None:  # pydicom guesses from the first element's VR
            if len(buf) - pos < 6:
                return None
            group, _, vr = struct.unpack_from("<HH2s", buf, pos)
            explicit = vr.decode("latin-1") in converters
            return pos, not explicit, not (explicit and group >= 1024)
        if syntax == uid.ImplicitVRLittleEndian:
            return pos, True, True
        if syntax == uid.ExplicitVRBigEndian:
            return pos, False, False
        return pos, False, True  # Explicit VR Little Endian, the encapsulated syntaxes, and any other

    def counted(self) -> None:
        self.count += 1
        if self.count > MAX_ELEMENTS:
            raise PayloadTooLargeError(
                f"{self.name}: the DICOM file holds more than {MAX_ELEMENTS:,} data elements and sequence items (a "
                "radiograph's header holds a few hundred); MedLens does not read it. Export the image alone from the "
                "PACS or modality."
            )

    def dataset(
        self,
        pos: int,
        end: int,
        implicit: bool,
        little: bool,
        *,
        top: bool,
        depth: int,
        length: int | None = None,
        group: int | None = None,
    ) -> int:
        """pydicom's ``read_dataset`` from ``pos`` in a stream that ends at ``end``: until ``length`` bytes are read
        (None: until an item delimiter or the end), or, with ``group``, until an element of another group. Returns
        where pydicom's file position ends."""
        buf, start = self.buf, pos
        if (top or not implicit) and end - pos >= 6:  # pydicom's _is_implicit_vr: the first VR's bytes decide
            implicit = not (0x40 < buf[pos + 4] < 0x5B and 0x40 < buf[pos + 5] < 0x5B)
        order = "<" if little else ">"
        while length is None or pos - start < length:
            if end - pos < 8:
                return end
            if top and depth == 0 and group is None and pos >= self.zero_tail:
                # zero bytes after the last element (some exporters pad files so): pydicom would read each 8 of
                # them as an empty element; the file is read without them
                self.padding_at = pos
                return end
            self.counted()
            head = pos
            vr: str | None = None
            if implicit:
                tag_group, element, size = struct.unpack_from(order + "HHL", buf, pos)
                pos += 8
            else:
                tag_group, element, raw_vr, size = struct.unpack_from(order + "HH2sH", buf, pos)
                pos += 8
                if raw_vr in ENCODED_VR:
                    vr = raw_vr.decode("ascii")
                    if vr in EXPLICIT_VR_LENGTH_32:
                        if end - pos < 4:
                            return end  # pydicom fails on the short length
                        (size,) = struct.unpack_from(order + "L", buf, pos)
                        pos += 4
                elif not b"AA" <= raw_vr <= b"ZZ" and config.assume_implicit_vr_switch:
                    tag_group, element, size = struct.unpack_from(order + "HHL", buf, head)
                else:
                    vr = raw_vr.decode("latin-1")  # a VR pydicom does not know: a 2-byte length
            tag = tag_group << 16 | element
            if tag == _ITEM_END:
                return pos
            if group is not None and tag_group != group:
                return head
            if top and depth == 0 and tag in _PIXEL_DATA:
                self.pixel_data = True
            if size != 0xFFFFFFFF:
                value_end = min(pos + size, end)
                if tag == 0x00020010:
                    self.syntax = buf[pos:value_end].decode("latin-1").rstrip("\0 ")
                if self._sequence_when_read(tag, vr, size):
                    self.sequence(pos, value_end, implicit, little, value_end - pos, depth + 1)
                pos += size
                continue
            if vr == "UN" and config.settings.infer_sq_for_un_vr:
                vr = "SQ"
            if vr is None:
                try:
                    vr = dictionary_VR(tag)
                except KeyError:  # pydicom looks ahead for an item
                    if end - pos >= 4 and struct.unpack_from(order + "HH", buf, pos) == (0xFFFE, 0xE000):
                        vr = "SQ"
            if vr == "SQ":
                pos = self.sequence(pos, end, implicit, little, None, depth + 1)
            else:
                pos = self._undefined_length_value(pos, end, little)
        return pos

    @staticmethod
    def _sequence_when_read(tag: int, vr: str | None, size: int) -> bool:
        """Whether pydicom reads a value of defined length as a sequence when it is used."""
        if vr == "SQ":
            return True
        private = (tag >> 16) % 2 == 1
        if private or not (vr is None or (vr == "UN" and config.replace_un_with_known_vr and size < 0xFFFF)):
            return False
        try:
            return bool(dictionary_VR(tag) == "SQ")
        except KeyError:
            return False

    def sequence(self, pos: int, end: int, implicit: bool, little: bool, length: int | None, depth: int) -> int:
        """pydicom's ``read_sequence``: items until ``length`` bytes are read (None: until the sequence delimiter)."""
        if length == 0:
            return pos
        if depth > MAX_DEPTH:
            raise ImageDecodeError(
                f"{self.name} is not a readable DICOM file: its sequences nest more than {MAX_DEPTH} deep (a "
                "radiograph's nest a few levels); export the image again from the PACS or modality."
            )
        start, order = pos, "<" if little else ">"
        while length is None or pos - start < length:
            if end - pos < 8:
                return end  # pydicom fails: no item tag to read
            self.counted()
            tag_group, element, size = struct.unpack_from(order + "HHL", self.buf, pos)
            pos += 8
            if tag_group << 16 | element == _SEQUENCE_END:
                return pos
            item = None if size == 0xFFFFFFFF else size
            pos = self.dataset(pos, end, implicit, little, top=False, depth=depth, length=item)
        return pos

    def _undefined_length_value(self, pos: int, end: int, little: bool) -> int:
        """pydicom's ``read_undefined_length_value``: encapsulated pixel data, fragment by fragment, else a scan for
        the sequence delimiter."""
        buf = self.buf
        item, delimiter = (
            (b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0") if little else (b"\xff\xfe\xe0\x00", b"\xff\xfe\xe0\xdd")
        )
        at = pos
        while end - at >= 4:
            tag = buf[at : at + 4]
            if tag == delimiter:
                return min(at + 8, end)
            if tag != item or end - at < 8:
                break
            self.counted()
            at += 8 + struct.unpack_from("<L" if little else ">L", buf, at + 4)[0]
        found = buf.find(delimiter, pos, end)
        return end if found < 0 else found + 8


__all__ = [
    "DECODE_TIMEOUT_S",
    "GDCM_ONLY",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_INFLATED",
    "MAX_INFLATED_HEADER",
    "Readable",
    "decode_isolated",
    "keep_gdcm_to_its_own_syntaxes",
    "readable_dicom",
    "run_isolated",
]
