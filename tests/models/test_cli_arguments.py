"""Arguments that cannot work are usage errors when they are parsed (status 2), before any data is read or any
model trained or loaded: ``python -m models.train``, ``models.generate``, ``models.predict``, ``models.evaluate``
and ``models.calibrate``. Every run here points at data or weights that do not exist (or an empty folder), so an
argument let through ends in a different error, at once, never in training."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from models.calibrate import main as calibrate_main
from models.cnn import CnnConfig
from models.evaluate import main as evaluate_main
from models.generate import main as generate_main
from models.inference import add_predictor_arguments
from models.predict import main as predict_main
from models.protocol import is_reserved
from models.train import main as train_main
from models.train_cnn import train_cnn
from tests.models.conftest import committed_weights, synthetic_stay

#: a folder no file can be made in, whoever runs the tests (root included)
UNWRITABLE = Path("/proc/medlens-no-such-folder")


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


def test_train_takes_the_edges_of_the_ranges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sensitivity of 1 and the smallest counts pass parsing: the run goes on to look for the data (none here),
    which is a usage error too, before anything is trained or written."""
    argv = ["cnn", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "out"), "--target-sensitivity", "1"]
    argv += ["--epochs", "1", "--batch-size", "1", "--lr", "1e-6", "--seed", "0", "--val-fraction", "0.99"]
    err = _usage_error(train_main, argv, capsys)
    assert f"--data {tmp_path / 'no-data'} is not a folder" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("model", "option", "value", "said"),
    [
        ("lstm", "--seed", "-1", "must be 0 or more"),  # numpy's generators refuse it after the data are read
        ("cnn", "--split-seed", "-1", "must be 0 or more"),
        ("cnn", "--val-fraction", "1.5", "must lie in (0, 1), not 1.5"),  # no training patient left
        ("cnn", "--val-fraction", "0", "must lie in (0, 1), not 0"),
        ("lstm", "--teacher-weight", "5", "must lie in [0, 1], not 5"),
        ("lstm", "--folds", "1", "must be 2 or more, not 1"),
        ("lstm", "--threads", "-1", "must be 1 or more"),
    ],
)
def test_train_refuses_seeds_shares_and_folds_out_of_range(
    model: str, option: str, value: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [model, "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "out"), option, value]
    err = _usage_error(train_main, argv, capsys)
    assert f"argument {option}: {said}" in err, err


def test_train_folds_help_says_what_it_takes(capsys: pytest.CaptureFixture[str]) -> None:
    """``--folds`` said "(1 = single)" while 1 was refused."""
    with pytest.raises(SystemExit):
        train_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "1 = single" not in out and "the k-fold ensemble, 2 or more" in out


@pytest.mark.parametrize("where", ["unwritable", "a file"])
def test_train_refuses_an_output_it_cannot_write_before_training(
    where: str, tmp_path: Path, xray_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out /proc/x`` trained and then failed to save; an existing file as --out likewise."""
    (tmp_path / "file").write_text("x")
    out = UNWRITABLE / "cnn" if where == "unwritable" else tmp_path / "file"
    argv = ["cnn", "--data", str(xray_folder), "--out", str(out), "--limit", "20", "--epochs", "1"]
    err = _usage_error(train_main, argv, capsys)
    assert "argument --out: " in err and ("cannot write in" in err or "is a file" in err), err


def test_train_refuses_a_limit_whose_stays_cannot_fill_every_fold(
    psv_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--limit 3`` trained every fold, then had no septic stay to choose a threshold on (a traceback); a limit
    with fewer stays of an outcome than folds silently made fewer folds. Both are said before any training."""
    from tests.models.conftest import write_psv

    data = tmp_path / "stays"
    data.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):  # four stays, none septic
        write_psv(data / f"s{i}.psv", *synthetic_stay(rng, 20, septic=False))
    argv = ["lstm", "--data", str(data), "--out", str(tmp_path / "out"), "--epochs", "1", "--threads", "1"]

    def refused(extra: list[str]) -> str:  # the limited stays are read first (a progress bar on stderr)
        with pytest.raises(SystemExit) as info:
            train_main([*argv, *extra])
        err = capsys.readouterr().err
        assert info.value.code == 2 and "usage:" in err, err
        return err

    err = refused(["--limit", "3", "--folds", "2"])
    kept = [f"s{i}" for i in range(3) if not is_reserved(f"s{i}")]
    said = f"--limit 3 leaves {len(kept)} stay(s) outside the protocol's reserve (0 septic, {len(kept)} the others)"
    assert said in err, err
    for i in range(4, 7):
        write_psv(data / f"s{i}.psv", *synthetic_stay(rng, 20, septic=True))
    err = refused(["--limit", "7", "--folds", "5"])
    septic = sum(not is_reserved(f"s{i}") for i in range(4, 7))
    others = sum(not is_reserved(f"s{i}") for i in range(4))
    assert f"({septic} septic, {others} the others): each of the 5 folds needs one of each outcome" in err, err
    assert not (tmp_path / "out").exists()


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


def test_generate_refuses_an_output_folder_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--out /proc/x`` (or a file) ended in a traceback from mkdir, after the generator was loaded."""
    (tmp_path / "a-file").write_text("")
    no_weights = ["--weights", str(tmp_path / "no-weights")]
    for out, said in (
        (UNWRITABLE / "out", "argument --out: cannot write in"),
        (tmp_path / "a-file", f"argument --out: {tmp_path / 'a-file'} is a file; this writes a folder of files"),
    ):
        err = _usage_error(generate_main, ["--label", "NORMAL", "--out", str(out), *no_weights], capsys)
        assert said in err, err
        assert err.strip().splitlines()[-1].startswith("python -m models.generate: error: argument --out"), err


def test_evaluate_asks_which_mortality_sets_to_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --sets a mortality evaluation scored sets a and b: the training stays and the reserve, in-sample.
    It now asks, before any record or model is read."""
    from models.evaluate import main

    with pytest.raises(SystemExit) as exit_info:
        main(["mortality-lstm", "--data", str(tmp_path)])
    assert exit_info.value.code == 2 and "--sets is required" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# models.predict and models.evaluate: the options of models.inference.add_predictor_arguments, --alpha, --output
# ----------------------------------------------------------------------------------------------------------
def _predict_argv(tmp_path: Path) -> list[str]:
    (tmp_path / "in").mkdir(exist_ok=True)
    return ["lstm", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]


def _evaluate_argv(tmp_path: Path) -> list[str]:
    (tmp_path / "in").mkdir(exist_ok=True)
    return ["lstm", "--data", str(tmp_path / "in")]


CLIS = {"predict": (predict_main, _predict_argv), "evaluate": (evaluate_main, _evaluate_argv)}


@pytest.mark.parametrize("cli", sorted(CLIS))
@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--threads", "0", "must be 1 or more, not 0"),  # a traceback from torch.set_num_threads
        ("--threads", "-1", "must be 1 or more, not -1"),
        ("--device", "foo", "must be auto, cpu, cuda or cuda:N, not 'foo'"),  # a traceback from torch.device
        ("--alpha", "1.5", "must lie in (0, 1), not 1.5"),
    ],
)
def test_predict_and_evaluate_refuse_threads_devices_and_alphas_out_of_range(
    cli: str, option: str, value: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main, argv = CLIS[cli]
    err = _usage_error(main, [*argv(tmp_path), "--weights", str(tmp_path / "no-weights"), option, value], capsys)
    assert f"argument {option}: {said}" in err, err


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--threads", "0", "argument --threads: must be 1 or more, not 0"),
        ("--device", "gpu", "argument --device: must be auto, cpu, cuda or cuda:N, not 'gpu'"),
    ],
)
def test_predictor_arguments_are_checked_when_they_are_read(
    option: str, value: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``add_predictor_arguments`` took any whole number of threads and any device name: each CLI using it had to
    check them after parsing, or torch ended in a traceback. Its own parser now refuses them."""
    parser = argparse.ArgumentParser(prog="cli")
    add_predictor_arguments(parser)
    args = parser.parse_args(["lstm"])
    assert args.threads >= 1 and args.device == "auto"
    assert parser.parse_args(["lstm", "--threads", "2", "--device", "cpu"]).device == "cpu"
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["lstm", option, value])
    assert info.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize("cli", sorted(CLIS))
def test_predict_and_evaluate_refuse_cuda_without_a_gpu(
    cli: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--device cuda`` on a machine without one ran on the CPU without a word."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    weights = committed_weights("lstm")
    if weights is None:
        pytest.skip("no committed lstm checkpoint")
    main, argv = CLIS[cli]
    err = _usage_error(main, [*argv(tmp_path), "--weights", str(weights), "--device", "cuda"], capsys)
    assert "argument --device: cuda: no CUDA GPU is visible to this process" in err, err


@pytest.mark.parametrize("cli", sorted(CLIS))
def test_alpha_is_refused_for_a_model_without_conformal_sets(
    cli: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--alpha`` was silently ignored for every model but the CNN."""
    main, argv = CLIS[cli]
    err = _usage_error(main, [*argv(tmp_path), "--weights", str(tmp_path / "no-weights"), "--alpha", "0.2"], capsys)
    assert "--alpha applies to the cnn's conformal sets; lstm has none" in err, err


def test_predict_and_evaluate_refuse_an_output_they_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found after all the work before: now before the model is loaded."""
    no_weights = ["--weights", str(tmp_path / "no-weights")]
    argv = [*_predict_argv(tmp_path)[:3], "--output", str(UNWRITABLE / "out"), *no_weights]
    assert "--output: cannot write in" in _usage_error(predict_main, argv, capsys)
    argv = ["mortality-lstm", "--input", str(tmp_path / "in"), "--output", str(UNWRITABLE / "p.csv"), *no_weights]
    assert "--output: cannot write in" in _usage_error(predict_main, argv, capsys)
    argv = [*_evaluate_argv(tmp_path), "--output", str(UNWRITABLE / "e.json"), *no_weights]
    assert "argument --output: cannot write in" in _usage_error(evaluate_main, argv, capsys)
    argv = [*_evaluate_argv(tmp_path), "--output", str(tmp_path), *no_weights]
    assert "argument --output: " + f"{tmp_path} is a folder, not a file" in _usage_error(evaluate_main, argv, capsys)


# ----------------------------------------------------------------------------------------------------------
# models.calibrate
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["lstm", "--threads", "0"], "argument --threads: must be 1 or more, not 0"),
        (["cnn", "--alpha", "1"], "argument --alpha: must lie in (0, 1), not 1"),
        (["cnn", "--folds", "1"], "argument --folds: must be 2 or more, not 1"),
        (["cnn", "--seed", "-2"], "argument --seed: must be 0 or more, not -2"),
        (["lstm", "--alpha", "0.2", "--folds", "3"], "--alpha --folds: cnn options; lstm is calibrated on its"),
    ],
)
def test_calibrate_refuses_arguments_that_cannot_work(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(calibrate_main, [*argv, "--weights", str(tmp_path / "no-weights")], capsys)
    assert said in err, err


def test_calibrate_refuses_weights_and_data_that_are_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong --weights or a missing --data ended in a traceback."""
    err = _usage_error(calibrate_main, ["lstm", "--weights", str(tmp_path / "no-weights")], capsys)
    assert f"No checkpoint at {tmp_path / 'no-weights'}" in err
    cnn = committed_weights("cnn")
    if cnn is None:
        pytest.skip("no committed cnn checkpoint")
    err = _usage_error(calibrate_main, ["lstm", "--weights", str(cnn)], capsys)
    assert "holds a cnn model, not a lstm model" in err
    err = _usage_error(calibrate_main, ["cnn", "--weights", str(cnn), "--data", str(tmp_path / "no-data")], capsys)
    assert f"--data {tmp_path / 'no-data'} does not exist" in err
