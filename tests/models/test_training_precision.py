"""Training precision: bfloat16 autocast or float32, measured where training runs (never assumed: bf16 is 2-3x
faster with AMX or AVX512-BF16 and several times slower on AVX2 alone)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from models.backends import training_precision
from models.cards import read_card
from tests.models.conftest import TORCH_THREADS


@pytest.mark.parametrize("slow", ["bf16", "fp32"])
def test_the_faster_step_is_chosen_and_both_are_timed(slow: str) -> None:
    """A step made 50 ms slower in one precision: the other is chosen; each precision ran twice (one warm-up)."""
    calls: list[bool] = []
    weight = torch.ones(3, requires_grad=True)

    def step(bf16: bool) -> torch.Tensor:
        calls.append(bf16)
        if bf16 == (slow == "bf16"):
            time.sleep(0.05)
        return (weight * 2).sum()

    bf16, seconds = training_precision(step)
    assert bf16 == (slow == "fp32") and calls == [False, True, False, True]
    assert set(seconds) == {"fp32", "bf16"} and seconds[slow] >= 0.05 > seconds["bf16" if slow == "fp32" else "fp32"]


def test_the_cnn_card_says_which_precision_trained_it_and_why(
    tiny_cnn: Path, xray_folder: Path, tmp_path: Path
) -> None:
    """The session's tiny CNN was trained with the default, measured here: its card names the choice and both
    timings. Asked for float32, training says it was chosen, not measured."""
    from models.train import main

    measured = read_card(tiny_cnn).hyperparameters["precision"]
    assert isinstance(measured, str) and measured.startswith(("bfloat16 autocast (measured", "float32 (measured"))
    assert "'fp32'" in measured and "'bf16'" in measured
    out = tmp_path / "cnn-fp32"
    argv = ["cnn", "--data", str(xray_folder), "--out", str(out), "--epochs", "1", "--limit", "24"]
    assert main([*argv, "--batch-size", "12", "--threads", str(TORCH_THREADS), "--precision", "fp32"]) == 0
    assert read_card(out).hyperparameters["precision"].startswith("float32 (chosen)")
