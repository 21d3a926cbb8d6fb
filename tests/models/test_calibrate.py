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
