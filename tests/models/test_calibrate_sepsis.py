"""``python -m models.calibrate lstm|transformer`` (models/calibrate_sepsis.py): the out-of-fold predictions
rebuilt from the checkpoint, calibrators cross-fitted by stay, what is stored, and the committed figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.calibrate import main as calibrate_main
from models.calibrate_sepsis import METHODS, adopt, cross_fit
from models.calibration import fit_calibrator
from models.cards import read_card
from models.checkpoint import load_checkpoint
from models.inference import SepsisPredictor
from models.metrics import expected_calibration_error
from models.sepsis_io import load_labelled_dir
from models.trust import SepsisTrustSettings
from models.trust_report import SepsisTrustReport
from tests.models.conftest import committed_weights

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tiny_lstm_calibrated(tmp_path_factory: pytest.TempPathFactory, tiny_lstm: Path, psv_folder: Path) -> Path:
    out = tmp_path_factory.mktemp("weights") / "lstm-calibrated"
    shutil.copytree(tiny_lstm, out)
    assert calibrate_main(["lstm", "--weights", str(out), "--data", str(psv_folder), "--threads", "1"]) == 0
    return out


def test_the_out_of_fold_predictions_are_rebuilt_from_the_checkpoint(tiny_lstm_calibrated: Path) -> None:
    """Each stay scored by the member that never saw it (folds from the card's seed) gives the training card's
    figures again: no retraining needed to calibrate."""
    card = read_card(tiny_lstm_calibrated)
    assert isinstance(card.trust, SepsisTrustReport)
    check = card.trust.out_of_fold
    assert check.n_hours == card.evaluation.n
    assert check.auroc == pytest.approx(card.evaluation.auroc, abs=1e-6)
    assert check.brier == pytest.approx(card.evaluation.brier, abs=1e-6)
    assert check.utility == pytest.approx(card.evaluation.utility, abs=1e-6)


def test_the_alerting_hours_are_measured_apart(tiny_lstm_calibrated: Path, psv_folder: Path) -> None:
    """The report's alerting predictions are the out-of-fold hours whose raw risk reaches the checkpoint's
    threshold: their count, their stays, the fraction labelled 1 and the raw risk's mean over them."""
    from models.calibrate_sepsis import out_of_fold

    card = read_card(tiny_lstm_calibrated)
    assert isinstance(card.trust, SepsisTrustReport)
    oof = out_of_fold("lstm", tiny_lstm_calibrated, psv_folder)
    probs, labels = oof.probabilities(), [r.labels for r in oof.records]
    alerting = [(p >= oof.meta.threshold) for p in probs]
    assert card.trust.alert_hours == sum(int(a.sum()) for a in alerting) > 0
    assert card.trust.alert_stays == sum(bool(a.any()) for a in alerting)
    flagged = np.concatenate([lab[a] for lab, a in zip(labels, alerting, strict=True)])
    assert card.trust.alert_observed == pytest.approx(flagged.mean())
    raw = next(r for r in card.trust.calibration if r.method == "uncalibrated")
    assert raw.alert_mean == pytest.approx(np.concatenate([p[a] for p, a in zip(probs, alerting, strict=True)]).mean())


def test_the_calibrator_is_stored_and_changes_neither_weights_nor_labels(
    tiny_lstm: Path, tiny_lstm_calibrated: Path, psv_folder: Path
) -> None:
    before, state = load_checkpoint(tiny_lstm, expected="lstm")
    meta, state2 = load_checkpoint(tiny_lstm_calibrated, expected="lstm")
    assert before.trust is None and meta.trust is not None
    trust = SepsisTrustSettings.model_validate(meta.trust)
    assert "single-member out-of-fold" in trust.fitted_on
    assert meta.threshold == before.threshold
    assert state.keys() == state2.keys() and all(torch.equal(state[k], state2[k]) for k in state)
    card = read_card(tiny_lstm_calibrated)
    assert card.trust is not None and sum(r.adopted for r in card.trust.calibration) == 1
    assert {r.method for r in card.trust.calibration} == {"uncalibrated", *METHODS}
    assert "When not to trust it" in (tiny_lstm_calibrated / "card.md").read_text()
    records = [r.values for r in load_labelled_dir(psv_folder)[:5]]
    plain = SepsisPredictor("lstm", tiny_lstm, "cpu", backend="torch-fp32")
    calibrated = SepsisPredictor("lstm", tiny_lstm_calibrated, "cpu", backend="torch-fp32")
    for a, b in zip(plain.assess(records), calibrated.assess(records), strict=True):
        np.testing.assert_array_equal(a.probability, b.probability)  # the same risk, so the same labels
        assert b.calibrated_probability is not None
        assert np.all((b.calibrated_probability >= 0) & (b.calibrated_probability <= 1))


def test_evaluate_reports_the_calibrated_risk(
    tiny_lstm: Path, tiny_lstm_calibrated: Path, psv_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m models.evaluate lstm`` on a calibrated checkpoint: the raw risk's figures as before, and the
    calibrated hourly risk's ECE and Brier, as computed here from the served assessments."""
    from models.evaluate import main as evaluate_main

    FP32 = ["--backend", "torch-fp32"]  # one execution path for the CLI and the reference
    assert evaluate_main(["lstm", "--weights", str(tiny_lstm), "--data", str(psv_folder), *FP32]) == 0
    plain = capsys.readouterr().out
    assert "calibrated:" not in plain
    assert evaluate_main(["lstm", "--weights", str(tiny_lstm_calibrated), "--data", str(psv_folder), *FP32]) == 0
    out = capsys.readouterr().out
    assert out.startswith(plain.splitlines()[0])  # the same raw evaluation first
    records = [r for r in load_labelled_dir(psv_folder) if r.labels is not None]
    predictor = SepsisPredictor("lstm", tiny_lstm_calibrated, "cpu", backend="torch-fp32")
    calibrated = np.concatenate([a.calibrated_probability for a in predictor.assess([r.values for r in records])])
    labels = np.concatenate([r.labels for r in records])
    ece, brier = expected_calibration_error(labels, calibrated), float(np.mean((calibrated - labels) ** 2))
    assert f"  calibrated: ECE {ece:.4f}  Brier {brier:.4f}" in out.splitlines()


def _stays(rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Stays of 10-60 hours whose true hourly logit drifts; the model's score is too high and too flat (as a
    network trained with a positive-class weight)."""
    scores, labels = [], []
    for _ in range(n):
        hours = int(rng.integers(10, 61))
        true = rng.normal(-4.0, 1.0) + np.cumsum(rng.normal(0.0, 0.15, hours))
        labels.append((rng.random(hours) < 1 / (1 + np.exp(-true))).astype(np.int64))
        scores.append(0.6 * true + 1.5 + rng.normal(0.0, 0.3, hours))
    return scores, labels


def test_cross_fitted_calibration_improves_ece_on_held_out_stays_and_is_monotone() -> None:
    rng = np.random.default_rng(7)
    scores, labels = _stays(rng, 1500)
    stay_fold = np.arange(len(scores)) % 5
    z, y = np.concatenate(scores), np.concatenate(labels)
    hour_fold = np.concatenate([np.full(len(s), stay_fold[i]) for i, s in enumerate(scores)])
    probs = cross_fit(z, y, hour_fold)  # each fold's hours calibrated by a fit on the other folds' stays
    ece = {m: expected_calibration_error(y, p) for m, p in probs.items()}
    for method in METHODS:
        assert ece[method] < ece["uncalibrated"], method
    figures = {m: (ece[m], float(np.mean((p - y) ** 2))) for m, p in probs.items()}
    method = adopt(figures)
    assert method in ("platt", "isotonic")  # a temperature alone cannot remove the offset
    grid = np.linspace(-12.0, 8.0, 1000)
    assert np.all(np.diff(fit_calibrator(method, z, y)(grid)) >= 0)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_committed_calibration_figures(name: str) -> None:
    """The committed checkpoints are calibrated: their cards show the out-of-fold figures reproduced and a lower
    cross-fitted ECE and Brier after calibration; the stored calibrator is monotone."""
    weights = committed_weights(name)
    if weights is None:
        pytest.skip(f"no committed {name} checkpoint")
    card = read_card(weights)
    assert isinstance(card.trust, SepsisTrustReport), f"run python -m models.calibrate {name}"
    check = card.trust.out_of_fold
    assert check.auroc == pytest.approx(check.card_auroc, abs=1e-5)
    assert check.utility == pytest.approx(check.card_utility, abs=1e-5)
    rows = {r.method: r for r in card.trust.calibration}
    adopted = next(r for r in card.trust.calibration if r.adopted)
    assert adopted.ece < rows["uncalibrated"].ece and adopted.brier < rows["uncalibrated"].brier
    assert sum(card.trust.reliability["uncalibrated"].thresholds) == check.n_hours
    meta, _ = load_checkpoint(weights, expected=name)
    calibrator = SepsisTrustSettings.model_validate(meta.trust).calibration
    assert calibrator.method == adopted.method
    assert np.all(np.diff(calibrator(np.linspace(-15.0, 10.0, 2000))) >= 0)


def test_calibration_refuses_data_that_are_not_the_training_stays(
    tiny_lstm: Path, psv_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With more stays than training had, the folds differ and members score stays they trained on: the in-sample
    scores fitted a calibrator that was stored (exit 0). It is refused (status 2) before anything is written, with
    the figures that differ and the data to pass."""
    weights = tmp_path / "lstm"
    shutil.copytree(tiny_lstm, weights)
    before = {p.name: p.read_bytes() for p in weights.iterdir()}
    data = tmp_path / "more"
    shutil.copytree(psv_folder, data)
    for i in range(6):
        shutil.copy(psv_folder / f"p{i:04d}.psv", data / f"extra{i}.psv")
    with pytest.raises(SystemExit) as info:
        calibrate_main(["lstm", "--weights", str(weights), "--data", str(data), "--threads", "1"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"--data {data} is not the training data of {weights}" in err, err
    card = read_card(weights)
    assert f"training's were {card.evaluation.n} predictions ({card.evaluation.n_positive} positive)" in err
    assert f"Pass the training data the card names (--data {psv_folder}" in err and "nothing was written" in err
    assert {p.name: p.read_bytes() for p in weights.iterdir()} == before
