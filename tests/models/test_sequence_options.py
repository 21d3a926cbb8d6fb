"""The sequence task's command-line options (models/sequence_options.py), as both CLIs read them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from models.sequence_options import add_task_options, task_from_options
from models.sequence_tasks import SEPSIS_TASK


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_task_options(parser)
    return parser.parse_args(list(argv))


def test_no_option_gives_the_shipped_task() -> None:
    assert task_from_options("sepsis", _parse()) is SEPSIS_TASK


def test_options_change_the_task() -> None:
    task = task_from_options(
        "sepsis",
        _parse(
            *("--schema", "sepsis-v2", "--weighting", "uniform", "--target", "window", "--teacher-hours", "task"),
            *("--teacher-groups", "8", "--auxiliary", "horizons"),
        ),
    )
    assert task.auxiliary == "horizons"
    assert _parse("--d-model", "128").d_model == 128 and _parse().d_model is None
    assert task_from_options("mortality", _parse("--thinned-copies", "2")).thinned_copies == 2
    assert task_from_options("mortality", _parse("--weight-average", "ema")).weight_average == "ema"
    assert task_from_options("sepsis", _parse("--teacher-temperature", "4")).teacher_temperature == 4.0
    assert task_from_options("mortality", _parse("--batching", "shuffled")).batching == "shuffled"
    assert task_from_options("sepsis", _parse("--head", "mlp")).head == "mlp"
    assert (task.schema.name, task.weighting, task.target, task.teacher_hours, task.teacher_groups) == (
        "sepsis-v2",
        "uniform",
        "window",
        "task",
        8,
    )


def test_unknown_choices_are_refused_by_the_parser() -> None:
    for option, value in (
        ("--target", "ahead"),
        ("--teacher-hours", "last"),
        ("--weighting", "none"),
        ("--teacher-groups", "1"),
        ("--teacher-groups", "two"),
        ("--schema", "sepsis-v9"),
        ("--d-model", "30"),  # not a multiple of the Transformer's 4 heads
        ("--d-model", "4"),
        ("--auxiliary", "tasks"),
        ("--thinned-copies", "-1"),
        ("--weight-average", "swa"),
        ("--teacher-temperature", "0.5"),
        ("--teacher-temperature", "inf"),
        ("--teacher-temperature", "nan"),
        ("--teacher-temperature", "hot"),
        ("--batching", "random"),
        ("--head", "deep"),
    ):
        with pytest.raises(SystemExit):
            _parse(option, value)


def test_a_sepsis_only_option_is_refused_for_mortality() -> None:
    with pytest.raises(ValueError, match="not defined for mortality"):
        task_from_options("mortality", _parse("--target", "window"))
    with pytest.raises(ValueError, match="'sepsis-v2' is not one of mortality's: choose one of mortality-v1"):
        task_from_options("mortality", _parse("--schema", "sepsis-v2"))
    with pytest.raises(ValueError, match="'mortality-v2' is not one of sepsis's"):
        task_from_options("sepsis", _parse("--schema", "mortality-v2"))


def test_every_registered_schema_is_offered() -> None:
    from models.sequence import known_schemas

    parser = argparse.ArgumentParser()
    add_task_options(parser)
    (schema,) = [a for a in parser._actions if a.dest == "schema"]
    assert set(schema.choices or ()) == set(known_schemas()) >= {"sepsis-v1", "sepsis-v3", "mortality-v2"}


@pytest.mark.parametrize("cli", ["models.train", "models.protocol"])
def test_both_clis_answer_a_sepsis_only_option_for_mortality_with_a_usage_error(
    cli: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Exit status 2 and the reason on stderr, before any data is read, not a ValueError traceback."""
    from models.protocol import main as protocol_main
    from models.train import main as train_main

    argv = ["mortality-lstm", "--target", "window", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "none")]
    with pytest.raises(SystemExit) as exit_:
        train_main(argv) if cli == "models.train" else protocol_main(["run", *argv])
    assert exit_.value.code == 2
    assert "training target 'window' is not defined for mortality" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
