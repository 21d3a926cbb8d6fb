"""Tiny training runs through the real CLI (``models.train.main``) on generated data: the checkpoint,
the model card (JSON and Markdown) and that the predictors load what was written.

The runs themselves happen once per session in the ``tiny_*`` fixtures of conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.cards import ModelCard, read_card
from models.checkpoint import CARD_JSON, CARD_MD, CHECKPOINT_FILE, load_checkpoint
from models.cnn import CnnConfig
from models.inference import SepsisPredictor, XrayPredictor, load_predictor
from models.protocol import is_reserved
from models.sepsis_io import FEATURES, load_labelled_dir
from models.train import main as train_main
from models.train_sequence import TEACHER_WEIGHT
from models.xray_io import load_xray_file

N_STEP = 12  # every 12th generated image: 4 images, both classes
LIMIT = 40  # --limit of the tiny CNN run (conftest.tiny_cnn)


def _card(directory: Path) -> ModelCard:
    for name in (CHECKPOINT_FILE, CARD_JSON, CARD_MD):
        assert (directory / name).is_file(), f"{name} not written to {directory}"
    card = ModelCard.model_validate_json((directory / CARD_JSON).read_text())
    assert read_card(directory) == card
    return card


def _check_markdown(directory: Path, card: ModelCard) -> None:
    md = (directory / CARD_MD).read_text()
    assert md.startswith(f"# Model card: `{card.name}` ({card.version})")
    assert "Not for clinical use" in md
    assert f"{card.threshold:.4f}" in md
    assert f"| AUROC | {card.evaluation.auroc:.4f} |" in md
    assert f"n = {card.evaluation.n} ({card.evaluation.n_positive} positive)" in md


def test_cnn_training_run(tiny_cnn: Path, xray_folder: Path) -> None:
    card = _card(tiny_cnn)
    meta, state = load_checkpoint(tiny_cnn, expected="cnn")
    assert card.name == "cnn" and card.version == meta.version
    assert card.threshold == meta.threshold and 0.0 <= meta.threshold <= 1.0
    assert card.data_path == str(xray_folder) and card.seed == 0
    assert card.hyperparameters["epochs"] == 6 and card.hyperparameters["batch_size"] == 12
    assert meta.labels == ["NORMAL", "PNEUMONIA"]
    config = CnnConfig.model_validate(meta.config)
    assert config.mean != CnnConfig().mean  # normalisation fitted on the training images
    saved = np.load(tiny_cnn / "validation_predictions.npz")
    ev = card.evaluation
    assert ev.n == len(saved["y"]) and ev.n_positive == int(saved["y"].sum())
    assert 0 < ev.n_positive < ev.n < LIMIT  # both classes held out, from the images of --limit
    assert f"{LIMIT - ev.n} training images" in card.split
    assert ev.utility is None
    _check_markdown(tiny_cnn, card)
    assert all(k.startswith(("stem", "stages", "head")) for k in state)

    predictor = XrayPredictor(tiny_cnn, device="cpu")
    assert predictor.card == card and predictor.threshold == meta.threshold
    images = [load_xray_file(p).pixels for p in sorted(xray_folder.rglob("*.png"))[::N_STEP]]
    probs = predictor.predict(images)
    assert probs.shape == (len(images),) and np.isfinite(probs).all()
    assert ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_sequence_training_run(arch: str, request: pytest.FixtureRequest, psv_folder: Path) -> None:
    out: Path = request.getfixturevalue(f"tiny_{arch}")
    card = _card(out)
    meta, _ = load_checkpoint(out, expected=arch)
    assert card.name == arch and card.threshold == meta.threshold
    assert meta.config["arch"] == arch and meta.config["members"] == 2  # --folds 2: a 2-member ensemble
    assert meta.preprocessing["features"] == FEATURES
    assert len(meta.preprocessing["norm_stats"]["mean"]) == len(FEATURES)
    every = load_labelled_dir(psv_folder)
    records = [r for r in every if not is_reserved(r.name)]  # the protocol's reserve is never trained on
    assert 0 < len(records) < len(every)
    labels = np.concatenate([r.labels for r in records if r.labels is not None])
    ev = card.evaluation
    assert ev.n == len(labels) and ev.n_positive == int(labels.sum())  # every hour scored out of fold
    assert ev.utility is not None and np.isfinite(ev.utility)
    assert f"over {len(records)} stays" in card.split
    assert f"reserve ({len(every) - len(records)} stays" in card.split
    w = TEACHER_WEIGHT[arch]  # the card names the teacher weight this run used (no --teacher-weight: the default)
    assert str(card.hyperparameters["targets"]).startswith(f"{1 - w:g} x label + {w:g} x teacher")
    _check_markdown(out, card)
    assert "Normalised challenge utility" in (out / CARD_MD).read_text()

    predictor = load_predictor(arch, out, device="cpu")
    assert isinstance(predictor, SepsisPredictor) and predictor.config.members == 2
    probs = predictor.predict([r.values for r in records[:3]])
    for record, prob in zip(records[:3], probs, strict=True):
        assert prob.shape == (record.hours,)
        assert ((prob > 0) & (prob < 1)).all()


def test_train_cli_refuses_a_single_fold(tmp_path: Path, psv_folder: Path) -> None:
    with pytest.raises(SystemExit) as info:
        train_main(["lstm", "--data", str(psv_folder), "--out", str(tmp_path / "w"), "--folds", "1"])
    assert info.value.code == 2
    assert not (tmp_path / "w").exists()


def test_train_cli_refuses_an_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        train_main(["gru", "--out", str(tmp_path)])


def test_a_wider_network_with_another_head_is_trained_and_served_from_its_checkpoint(
    tmp_path: Path, psv_folder: Path
) -> None:
    """``--d-model`` and ``--head``: the checkpoint's config carries the width and the head, its preprocessing every
    recipe setting the protocol compares, and inference rebuilds the network from them."""
    from models.protocol import RECIPE_DEFAULTS
    from models.sequence_tasks import sequence_task

    out = tmp_path / "wide"
    argv = ["lstm", "--data", str(psv_folder), "--out", str(out), "--folds", "2", "--epochs", "1", "--d-model", "16"]
    assert train_main([*argv, "--head", "mlp", "--batching", "shuffled", "--batch-size", "8", "--threads", "1"]) == 0
    meta, state = load_checkpoint(out, expected="lstm")
    assert meta.config["d_model"] == 16 and _card(out).hyperparameters["d_model"] == 16
    assert state["members.0.lstm.weight_hh_l0"].shape == (4 * 16, 16)  # (gates x hidden, hidden)
    assert meta.config["head"] == "mlp" and state["members.0.head.1.weight"].shape == (2 * 16, 2 * 16)
    task = sequence_task("sepsis", batching="shuffled", head="mlp")
    assert {k: meta.preprocessing[k] for k in RECIPE_DEFAULTS} == {k: getattr(task, k) for k in RECIPE_DEFAULTS}
    predictor = load_predictor("lstm", out, device="cpu")
    record = next(r for r in load_labelled_dir(psv_folder) if not is_reserved(r.name))
    assert predictor.predict([record.values])[0].shape == (record.hours,)


def test_an_auxiliary_head_is_trained_and_left_out_of_the_checkpoint(
    tmp_path: Path, psv_folder: Path, tiny_lstm: Path
) -> None:
    """``--auxiliary horizons``: the card and the checkpoint say so, and the checkpoint holds exactly the served
    network's tensors (the same keys and shapes as one trained without it)."""
    out = tmp_path / "aux"
    argv = ["lstm", "--data", str(psv_folder), "--out", str(out), "--folds", "2", "--epochs", "1"]
    assert train_main([*argv, "--auxiliary", "horizons", "--batch-size", "8", "--threads", "1"]) == 0
    meta, state = load_checkpoint(out, expected="lstm")
    _, plain = load_checkpoint(tiny_lstm, expected="lstm")
    assert meta.preprocessing["auxiliary"] == "horizons"
    assert "auxiliary head" in str(_card(out).hyperparameters["loss"])
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in plain.items()}
    assert load_predictor("lstm", out, device="cpu").threshold == meta.threshold
