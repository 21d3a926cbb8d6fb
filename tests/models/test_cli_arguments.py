"""Arguments that cannot work are usage errors when they are parsed (status 2), before any data is read or any
model trained: ``python -m models.train`` and ``python -m models.generate``. Every run here points at data or
weights that do not exist, so an argument let through ends in a different error, at once, never in training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from models.cnn import CnnConfig
from models.generate import main as generate_main
from models.train import main as train_main
from models.train_cnn import train_cnn


def _usage_error(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """stderr of ``main(argv)``, which must stop at argument parsing with status 2."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("usage:"), err
    return err


@pytest.mark.parametrize("value", ["1.5", "95", "0", "-0.1", "nan"])
def test_train_refuses_a_target_sensitivity_outside_0_1(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["cnn", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "out")]
    err = _usage_error(train_main, [*argv, "--target-sensitivity", value], capsys)
    assert "argument --target-sensitivity" in err and "(0, 1]" in err and "0.95, not 95" in err


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--epochs", "0"),
        ("--epochs", "-3"),
        ("--batch-size", "0"),
        ("--batch-size", "-1"),
        ("--lr", "0"),
        ("--lr", "-0.001"),
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--threads", "0"),  # a traceback from torch.set_num_threads
        ("--limit", "0"),  # read as "no limit": every image
        ("--limit", "-5"),
        ("--steps", "0"),
        ("--standing-batches", "-1"),
        ("--budget-min", "0"),  # read as "no budget"
    ],
)
def test_train_refuses_counts_and_rates_that_are_not_positive(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0 used to become the default (``or``): ``--epochs 0`` trained 30 epochs."""
    argv = ["cnn", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "out"), option, value]
    err = _usage_error(train_main, argv, capsys)
    assert f"argument {option}" in err and value in err, err


def test_train_takes_the_edges_of_the_ranges(tmp_path: Path) -> None:
    """A sensitivity of 1 and the smallest counts pass parsing: the run goes on to read the data (none here)."""
    argv = ["cnn", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "out"), "--target-sensitivity", "1"]
    with pytest.raises(FileNotFoundError, match="no-data"):
        train_main([*argv, "--epochs", "1", "--batch-size", "1", "--lr", "1e-6"])


def test_train_cnn_refuses_a_target_sensitivity_before_training(tmp_path: Path) -> None:
    """Called as a function, too: the threshold is chosen after the last epoch, where 95 was an IndexError."""
    with pytest.raises(ValueError, match=r"\(0, 1\].*0\.95, not 95"):
        train_cnn(
            tmp_path / "no-data",
            tmp_path / "out",
            epochs=1,
            batch_size=2,
            seed=0,
            lr=1e-3,
            val_fraction=0.5,
            target_sensitivity=95,
            config=CnnConfig(),
        )


@pytest.mark.parametrize("value", ["0", "-1"])
def test_generate_refuses_a_batch_size_below_1(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-1 used to write nothing and exit 0 ("wrote 0"), 0 to end in a traceback."""
    argv = ["--label", "NORMAL", "--out", str(tmp_path / "out"), "--weights", str(tmp_path / "no-weights")]
    err = _usage_error(generate_main, [*argv, "--batch-size", value], capsys)
    assert "argument --batch-size: must be 1 or more" in err
    assert not (tmp_path / "out").exists()


def test_evaluate_asks_which_mortality_sets_to_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --sets a mortality evaluation scored sets a and b: the training stays and the reserve, in-sample.
    It now asks, before any record or model is read."""
    from models.evaluate import main

    with pytest.raises(SystemExit) as exit_info:
        main(["mortality-lstm", "--data", str(tmp_path)])
    assert exit_info.value.code == 2 and "--sets is required" in capsys.readouterr().err
