"""Model cards (models/cards.py): ``write_card`` writes card.json and card.md whole or not at all."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.cards import ModelCard, read_card, render_markdown, write_card
from models.checkpoint import CARD_JSON, CARD_MD
from models.metrics import binary_evaluation


def _card() -> ModelCard:
    y = np.array([0, 0, 0, 1, 1, 1])
    prob = np.array([0.1, 0.4, 0.6, 0.35, 0.8, 0.9])
    return ModelCard(
        name="cnn",
        version="cnn-test",
        task="test",
        created="2025-01-01 00:00 UTC",
        data="generated",
        data_path="/nowhere",
        split="none",
        command="python -m models.train cnn",
        seed=0,
        training_seconds=1.0,
        hyperparameters={"epochs": 1},
        threshold=0.5,
        threshold_rule="fixed",
        evaluation_dataset="generated",
        evaluation=binary_evaluation(y, prob, 0.5),
        intended_use="tests",
        limitations=["none"],
    )


def test_write_card_writes_both_files(tmp_path: Path) -> None:
    card = _card()
    write_card(tmp_path / "new", card)
    assert read_card(tmp_path / "new") == card
    assert (tmp_path / "new" / CARD_MD).read_text() == render_markdown(card)
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [CARD_JSON, CARD_MD]  # no temporary left


def test_a_card_write_that_fails_midway_leaves_the_previous_card_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """card.json and card.md were written in place: a write that stopped midway (a full disk, a crash) left half a
    card.json, which read_card cannot read, where a whole card had been."""
    card = _card()
    write_card(tmp_path, card)
    before = {name: (tmp_path / name).read_bytes() for name in (CARD_JSON, CARD_MD)}
    real_write_text = Path.write_text

    def half_then_a_full_disk(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", half_then_a_full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_card(tmp_path, card.model_copy(update={"threshold": 0.25}))
    monkeypatch.undo()
    assert {name: (tmp_path / name).read_bytes() for name in (CARD_JSON, CARD_MD)} == before
    assert read_card(tmp_path) == card
    assert sorted(p.name for p in tmp_path.iterdir()) == [CARD_JSON, CARD_MD]  # the temporary removed
