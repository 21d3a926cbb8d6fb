"""GDCM, pydicom's decoder of JPEG Lossless and JPEG-LS, in a worker process of its own.

GDCM is C++: on some malformed streams it throws an exception nothing catches and the whole process aborts
(``std::terminate``; seen on a mutated JPEG baseline DICOM). In a model replica that would take every other
request in flight down with it. So:

* GDCM decodes only the transfer syntaxes nothing else here decodes (:data:`GDCM_ONLY`); for the others pydicom
  never falls back to it (:func:`keep_gdcm_to_its_own_syntaxes`, called when models.xray_io is imported).
* Those files are decoded in one worker process (:func:`run_isolated`), one at a time: a worker that aborts or
  hangs costs that one file a typed refusal, and the next file gets a new worker.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import numpy as np
import pydicom
from pydicom import uid
from pydicom.pixels import get_decoder

from models.dicom_privacy import keep_header_text_out_of_logs
from models.errors import ImageDecodeError

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


__all__ = ["DECODE_TIMEOUT_S", "GDCM_ONLY", "decode_isolated", "keep_gdcm_to_its_own_syntaxes", "run_isolated"]
