"""What the model CLIs share about their arguments and outputs.

argparse types: a value out of range, a device this machine does not have or an output that cannot be written is
a usage error when arguments are read (status 2), before any data or model is loaded. :func:`write_atomically`
writes an output so that a crash mid-write leaves the previous file whole.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path


def int_at_least(minimum: int, name: str) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``; ``name`` is what argparse calls it when the text
    is no number at all."""

    def check(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
        return value

    check.__name__ = name
    return check


#: a count of at least 1 (epochs, a batch size, threads, a --limit)
positive_int = int_at_least(1, "positive_int")
#: 0 or more (a seed: numpy refuses a negative one; pretraining epochs)
non_negative_int = int_at_least(0, "non_negative_int")
#: 2 or more (folds whose out-of-fold predictions choose a threshold, protocol repeats)
at_least_two = int_at_least(2, "at_least_two")


def positive_float(text: str) -> float:
    """A finite number above 0 (a learning rate)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


def _fraction(low_open: bool, high_open: bool, name: str) -> Callable[[str], float]:
    interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"

    def check(text: str) -> float:
        value = float(text)
        above = value > 0 if low_open else value >= 0
        below = value < 1 if high_open else value <= 1
        if not (above and below):  # NaN fails both
            raise argparse.ArgumentTypeError(f"must lie in {interval}, not {text}")
        return value

    check.__name__ = name
    return check


#: in (0, 1): a conformal miscoverage, a validation share
open_fraction = _fraction(True, True, "open_fraction")
#: in (0, 1]: a pass rate, a training share
positive_fraction = _fraction(True, False, "positive_fraction")
#: in [0, 1]: a mixing weight (the teacher's share of the training targets)
unit_fraction = _fraction(False, False, "unit_fraction")


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; a CUDA device this process cannot see is refused (a request for a
    GPU never runs on the CPU unannounced)."""
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if text in ("auto", "cpu"):
        return text
    if match is None:
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, not {text!r}")
    import torch

    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"{text}: no CUDA GPU is visible to this process (torch.cuda.is_available() is false, or torch is a CPU "
            "build); pass --device cpu, or auto to use a GPU where there is one"
        )
    index, count = int(match.group(1) or 0), torch.cuda.device_count()
    if index >= count:
        raise argparse.ArgumentTypeError(f"{text}: this process sees {count} CUDA device(s), cuda:0 to {count - 1}")
    return text


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (created for the test if missing, then removed again), or None."""
    missing: list[Path] = []
    existing = folder
    while not existing.exists():
        if existing.is_symlink():  # a link to nowhere
            return f"{existing} is a broken link"
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    created: list[Path] = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"cannot write in {folder} ({exc.strerror or type(exc).__name__})"
    finally:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()
    return None


def output_problem(path: Path, *, folder: bool) -> str | None:
    """Why ``path`` cannot take an output (a file, or with ``folder`` a folder of files), or None. Nothing is left
    behind by the test."""
    absolute = Path(os.path.abspath(path))  # "a/../b" is b
    if folder:
        if absolute.exists() and not absolute.is_dir():
            return f"{path} is a file; this writes a folder of files"
        return _unwritable(absolute)
    if absolute.is_dir():
        return f"{path} is a folder, not a file"
    return _unwritable(absolute.parent)


def _output_type(folder: bool, name: str) -> Callable[[str], Path]:
    def check(text: str) -> Path:
        path = Path(text)
        problem = output_problem(path, folder=folder)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return path

    check.__name__ = name
    return check


#: an output file whose folder exists or can be made, and can be written
output_file = _output_type(False, "output_file")
#: an output folder that exists or can be made, and can be written
output_folder = _output_type(True, "output_folder")


def data_folder(parser: argparse.ArgumentParser, given: Path | None, default: Path) -> Path:
    """``--data`` (``given``), or ``default`` without it: a folder, else a usage error (status 2) that says which."""
    data = given or default
    if not data.is_dir():
        said = "" if given else " (the default under MEDLENS_DATA_DIR: set it, or pass --data)"
        parser.error(f"--data {data} is not a folder{said}")
    return data


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temporary)`` writes the whole output to a temporary file beside ``path``, which then replaces
    ``path`` in one step: a crash mid-write leaves the previous ``path`` (or none) intact. The new file keeps the
    previous one's permissions (else the umask's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        if path.exists():
            mode = path.stat().st_mode & 0o7777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


__all__ = [
    "at_least_two",
    "data_folder",
    "device",
    "int_at_least",
    "non_negative_int",
    "open_fraction",
    "output_file",
    "output_folder",
    "output_problem",
    "positive_float",
    "positive_fraction",
    "positive_int",
    "unit_fraction",
    "write_atomically",
]
