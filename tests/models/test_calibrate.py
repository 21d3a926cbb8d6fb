"""``python -m models.calibrate cnn``: what it stores in the checkpoint and card, and what the predictor
then answers (tiny checkpoint trained and calibrated through the real CLIs; committed card figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.calibrate import main as calibrate_main
from models.cards import read_card
from models.checkpoint import load_checkpoint
from models.errors import WeightsError
from models.inference import XrayPredictor
from models.trust import TrustSettings, XrayAssessment
from models.xray_io import labelled_images, load_xray_file
from tests.models.conftest import committed_weights

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_calibration_is_stored_in_the_checkpoint_and_the_card(tiny_cnn_calibrated: Path) -> None:
    meta, state = load_checkpoint(tiny_cnn_calibrated, expected="cnn")
    assert meta.trust is not None
    trust = TrustSettings.model_validate(meta.trust)
    assert trust.alpha == 0.1 and trust.ood_pass_rate == 0.97
    if trust.ood_method != "energy":
        assert {"ood_head.centres", "ood_head.whiten"} <= set(state)
    card = read_card(tiny_cnn_calibrated)
    assert card.trust is not None
    assert {r.method for r in card.trust.ood} == {"mahalanobis", "energy", "pixel_stats"}
    assert sum(r.adopted for r in card.trust.ood) == 1 and sum(r.adopted for r in card.trust.calibration) == 1
    assert all(r.validation_pass >= 0.97 for r in card.trust.ood)
    assert "When not to trust it" in (tiny_cnn_calibrated / "card.md").read_text()


def test_calibrating_twice_gives_the_same_checkpoint(tiny_cnn_calibrated: Path, xray_folder: Path) -> None:
    """Fixed seeds; an already calibrated checkpoint is recalibrated from its plain CNN weights."""
    meta, state = load_checkpoint(tiny_cnn_calibrated, expected="cnn")
    argv = ["cnn", "--weights", str(tiny_cnn_calibrated), "--data", str(xray_folder), "--threads", "1"]
    assert calibrate_main(argv) == 0
    again, state2 = load_checkpoint(tiny_cnn_calibrated, expected="cnn")
    assert meta.trust is not None and again.trust is not None
    assert {k: v for k, v in again.trust.items() if k != "fitted"} == {
        k: v for k, v in meta.trust.items() if k != "fitted"
    }
    assert state.keys() == state2.keys() and all(torch.equal(state[k], state2[k]) for k in state)


def test_assess_answers_every_field(tiny_cnn_calibrated: Path, xray_folder: Path) -> None:
    predictor = XrayPredictor(tiny_cnn_calibrated, device="cpu")
    images = [load_xray_file(p) for p, _ in labelled_images(xray_folder)[:6]]
    results = predictor.assess(images)
    probs = predictor.predict([im.pixels for im in images])
    for r, p in zip(results, probs, strict=True):
        assert isinstance(r, XrayAssessment)
        assert r.probability == pytest.approx(float(p), abs=1e-6)
        assert r.label == ("PNEUMONIA" if r.probability >= predictor.threshold else "NORMAL")
        assert 0.0 < r.calibrated_probability < 1.0
        assert r.prediction_set in (["NORMAL"], ["PNEUMONIA"], ["NORMAL", "PNEUMONIA"])
        assert r.uncertain == (len(r.prediction_set) == 2)
        assert np.isfinite(r.ood_score)
        assert (r.ood_reason is None) == r.in_distribution
        assert r.reportable_label == (r.label if r.in_distribution else None)
    blank = predictor.assess([np.zeros((64, 64), dtype=np.float32)])
    assert blank[0].ood_score > 0


def test_alpha_changes_the_sets_as_conformal_prediction_says(tiny_cnn_calibrated: Path) -> None:
    """A smaller alpha needs larger quantiles: sets can only grow."""
    trust = XrayPredictor(tiny_cnn_calibrated, device="cpu").trust
    assert trust is not None
    z = np.linspace(-8, 8, 200)
    loose, strict = trust.sets(z, ["NORMAL", "PNEUMONIA"], 0.4), trust.sets(z, ["NORMAL", "PNEUMONIA"], 0.05)
    assert all(set(a) <= set(b) for a, b in zip(loose, strict, strict=True))


def test_an_uncalibrated_checkpoint_says_how_to_calibrate(tiny_cnn: Path) -> None:
    predictor = XrayPredictor(tiny_cnn, device="cpu")
    assert predictor.trust is None and predictor.spec().outputs == ("logit",)
    with pytest.raises(WeightsError, match=r"models\.calibrate cnn"):
        predictor.assess([np.zeros((64, 64), dtype=np.float32)])


def test_committed_card_holds_the_measured_figures() -> None:
    weights = committed_weights("cnn")
    if weights is None:
        pytest.skip("no committed CNN checkpoint")
    card = read_card(weights)
    if card.trust is None:
        pytest.skip("the committed CNN checkpoint is not calibrated: run python -m models.calibrate cnn")
    adopted = next(r for r in card.trust.ood if r.adopted)
    assert adopted.non_cxr_flag >= 0.95 and adopted.validation_pass >= 0.97
    assert {c.label for c in card.trust.conformal} == {"NORMAL", "PNEUMONIA"}
    assert all(c.coverage >= 1 - card.trust.alpha - 0.03 for c in card.trust.conformal)
    raw = next(c for c in card.trust.calibration if c.method == "uncalibrated")
    chosen = next(c for c in card.trust.calibration if c.adopted)
    assert chosen.brier <= raw.brier


def test_calibration_refuses_a_split_that_is_not_the_cards(
    tiny_cnn: Path, xray_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Other data (or another split seed) give another validation split: the calibrator and the OOD thresholds
    would be fitted on images the network trained on. That was a warning before the checkpoint was rewritten; it is
    refused (status 2) and nothing is written."""
    import shutil

    weights = tmp_path / "cnn"
    shutil.copytree(tiny_cnn, weights)
    before = {p.name: p.read_bytes() for p in weights.iterdir()}
    more = tmp_path / "more"
    shutil.copytree(xray_folder, more)
    for cls in ("NORMAL", "PNEUMONIA"):  # new patients: the split of the folder changes
        for i, path in enumerate(sorted((xray_folder / cls).glob("*.png"))[:6]):
            name = f"IM-9{i:03d}-0001.png" if cls == "NORMAL" else f"person9{i}_bacteria_9{i}.png"
            shutil.copy(path, more / cls / name)
    for extra in (["--data", str(more)], ["--data", str(xray_folder), "--split-seed", "7"]):
        with pytest.raises(SystemExit) as info:
            calibrate_main(["cnn", "--weights", str(weights), "--threads", "1", *extra])
        err = capsys.readouterr().err
        assert info.value.code == 2 and "the calibration would be fitted on images the network trained on" in err
        assert f"Pass the training data the card names ({xray_folder})" in err, err
    assert {p.name: p.read_bytes() for p in weights.iterdir()} == before


def test_calibration_draws_the_images_of_a_limited_training_run_again(tiny_cnn: Path, xray_folder: Path) -> None:
    """The tiny CNN was trained on 40 sampled images (--limit 40): its card records the limit, the split and which
    images it held out, and calibration draws and splits those same images, so the fixture's calibration
    (conftest.tiny_cnn_calibrated) is of the card's own validation patients."""
    from models.calibrate import split_digest, training_split

    card = read_card(tiny_cnn)
    recorded = card.hyperparameters
    assert recorded["limit"] == 40 and recorded["split_seed"] == 0
    paths, labels, val = training_split(xray_folder, 40, 0, float(recorded["val_fraction"]))
    assert len(paths) == 40
    assert (card.evaluation.n, card.evaluation.n_positive) == (int(val.sum()), int(labels[val].sum()))
    assert recorded["validation_digest"] == split_digest(paths, val)
    other_paths, _, other = training_split(xray_folder, 40, 1, float(recorded["val_fraction"]))  # another seed
    assert split_digest(other_paths, other) != recorded["validation_digest"]
