"""What the model CLIs share (models/cli_args.py): argparse types that refuse a value when arguments are read, the
test of an output location that leaves nothing behind, and writes that never leave half a file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

from models.cli_args import device, open_fraction, output_problem, positive_fraction, unit_fraction, write_atomically

#: a folder no file can be made in, whoever runs the tests (root included)
UNWRITABLE = Path("/proc/medlens-no-such-folder")


def test_write_atomically_keeps_the_previous_file_when_the_write_fails(tmp_path: Path) -> None:
    """A write that fails half-way (a crash, a full disk) leaves the previous file whole and no temporary file."""
    path = tmp_path / "preds.csv"
    path.write_text("previous answers\n")
    path.chmod(0o640)

    def half_then_fail(temporary: Path) -> None:
        temporary.write_text("half of the new ans")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_then_fail)
    assert path.read_text() == "previous answers\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv"]
    write_atomically(path, lambda temporary: temporary.write_text("new answers\n"))
    assert path.read_text() == "new answers\n"
    assert path.stat().st_mode & 0o777 == 0o640  # the file it replaced kept its permissions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv"]
    fresh = tmp_path / "made" / "here.json"  # a missing folder is made
    write_atomically(fresh, lambda temporary: temporary.write_text("{}"))
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.read_text() == "{}" and fresh.stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_output_location_is_tested_without_leaving_anything(tmp_path: Path) -> None:
    """Missing folders are made for the test and removed again; a file where a folder belongs, a folder where a
    file belongs and a place nothing can be written are each said."""
    deep = tmp_path / "a" / "b" / "c"
    assert output_problem(deep, folder=True) is None and output_problem(deep / "out.csv", folder=False) is None
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    said = output_problem(tmp_path / "file", folder=True)
    assert said == f"{tmp_path / 'file'} is a file; this writes a folder of files"
    assert "is a file, not a folder" in str(output_problem(tmp_path / "file" / "out.csv", folder=False))
    assert output_problem(tmp_path, folder=False) == f"{tmp_path} is a folder, not a file"
    problem = output_problem(UNWRITABLE / "out", folder=True)
    assert problem is not None and problem.startswith(f"cannot write in {UNWRITABLE / 'out'}")
    assert "cannot write in" in str(output_problem(UNWRITABLE / "out.json", folder=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (open_fraction, ["0.5", "1e-9"], ["0", "1", "-0.1", "nan", "10"]),
        (positive_fraction, ["1", "0.25"], ["0", "1.5", "nan"]),
        (unit_fraction, ["0", "1", "0.3"], ["-0.1", "5", "nan", "inf"]),
    ],
)
def test_fractions_refuse_what_lies_outside_their_interval(check: object, good: list[str], bad: list[str]) -> None:
    assert callable(check)
    for text in good:
        assert check(text) == float(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=f"must lie in .*, not {text}"):
            check(text)


def test_a_device_is_one_this_machine_has() -> None:
    assert device("auto") == "auto" and device("cpu") == "cpu"
    for text in ("foo", "gpu", "cuda:x", "CPU"):
        with pytest.raises(argparse.ArgumentTypeError, match="must be auto, cpu, cuda or cuda:N"):
            device(text)
    if torch.cuda.is_available():
        assert device("cuda") == "cuda"
        with pytest.raises(argparse.ArgumentTypeError, match="CUDA device"):
            device(f"cuda:{torch.cuda.device_count()}")
    else:  # a request for a GPU never runs on the CPU unannounced
        with pytest.raises(argparse.ArgumentTypeError, match="no CUDA GPU is visible"):
            device("cuda")
