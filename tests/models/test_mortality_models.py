"""The mortality models through the real CLIs on a generated PhysioNet 2012 layout: training (checkpoint, card,
the reserve left out), ``models.predict`` (``RecordID,probability,label``, one row per stay) and
``models.evaluate``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from models.cards import read_card
from models.checkpoint import load_checkpoint
from models.evaluate import main as evaluate_main
from models.inference import MortalityPredictor, load_predictor
from models.metrics import expected_calibration_error
from models.mortality_features import MORTALITY_V1
from models.mortality_io import load_labelled_sets
from models.predict import main as predict_main
from models.protocol import is_reserved


def test_training_run(tiny_mortality_lstm: Path, mortality_folder: Path) -> None:
    meta, _ = load_checkpoint(tiny_mortality_lstm, expected="mortality-lstm")
    assert meta.preprocessing["schema"] == MORTALITY_V1.name and meta.config["n_input"] == MORTALITY_V1.n_input
    assert meta.labels == ["SURVIVED", "DIED_IN_HOSPITAL"]
    card = read_card(tiny_mortality_lstm)
    records = load_labelled_sets(mortality_folder)
    kept = [r for r in records if not is_reserved(r.name)]
    assert 0 < len(kept) < len(records)  # the generated RecordIDs put some stays in the reserve
    assert card.evaluation.n == len(kept)  # one out-of-fold prediction per stay, the reserve left out
    assert card.evaluation.n_positive == sum(int(r.label or 0) for r in kept)
    assert f"reserve ({len(records) - len(kept)} stays" in card.split
    assert 0.0 <= card.extra_metrics["Event-1 score min(Se, +P)"] <= 1.0
    assert card.evaluation.utility is None
    assert "Event-1" in (tiny_mortality_lstm / "card.md").read_text()


def _predict_set_a(weights: Path, mortality_folder: Path, tmp_path: Path) -> list[dict[str, str]]:
    """``python -m models.predict mortality-lstm`` on set-a (fp32 path) -> the CSV's rows."""
    out = tmp_path / "preds.csv"
    code = predict_main(
        ["mortality-lstm", "--weights", str(weights), "--input", str(mortality_folder / "set-a"),
         "--output", str(out), "--backend", "torch-fp32"]
    )  # fmt: skip
    assert code == 0
    return list(csv.DictReader(out.open()))


def test_predict_writes_one_row_per_stay(tiny_mortality_lstm: Path, mortality_folder: Path, tmp_path: Path) -> None:
    rows = _predict_set_a(tiny_mortality_lstm, mortality_folder, tmp_path)
    files = sorted(p.stem for p in (mortality_folder / "set-a").glob("*.txt"))
    assert [r["RecordID"] for r in rows] == files and list(rows[0]) == ["RecordID", "probability", "label"]
    predictor = load_predictor("mortality-lstm", tiny_mortality_lstm, "cpu", "torch-fp32")
    assert isinstance(predictor, MortalityPredictor)
    for r in rows:
        p = float(r["probability"])
        assert 0 < p < 1 and int(r["label"]) == int(p >= predictor.threshold)


def test_predict_matches_the_hourly_risk(tiny_mortality_lstm: Path, mortality_folder: Path) -> None:
    """The stay's probability is the 48th hour of the risk trajectory; the record is read as serving reads it."""
    predictor = load_predictor("mortality-lstm", tiny_mortality_lstm, "cpu", "torch-fp32")
    assert isinstance(predictor, MortalityPredictor)
    path = sorted((mortality_folder / "set-b").glob("*.txt"))[0]
    values = predictor.model_values(predictor.decode(path.read_bytes(), path.name))
    assert values.shape == (48, len(MORTALITY_V1.columns))
    hourly = predictor.predict([values])[0]
    assert hourly.shape == (48,)
    assert predictor.assess_stays([values])[0][0] == pytest.approx(hourly[-1])
    attribution = predictor.explain(values, n_steps=2)
    assert attribution.shape == (48, len(MORTALITY_V1.explained_columns)) and np.isfinite(attribution).all()
    assert np.all(attribution[:, MORTALITY_V1.explained_columns.index("Hour")] == 0.0)  # compared at the same hour
    assert np.abs(attribution[-1]).sum() > 0
    last = predictor.explain_stay(values, n_steps=2)  # the 48th hour alone, as serving asks for it
    np.testing.assert_allclose(last, attribution[-1], rtol=1e-4, atol=1e-6)


def test_evaluate(tiny_mortality_lstm: Path, mortality_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = evaluate_main(
        ["mortality-lstm", "--weights", str(tiny_mortality_lstm), "--data", str(mortality_folder), "--sets", "b"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "event-1 min(Se, +P)" in out and "n=12" in out


def test_calibrate_the_48th_hour(
    tiny_mortality_lstm: Path, mortality_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m models.calibrate mortality-lstm``: the calibrator is fitted on each stay's last hour (one
    out-of-fold score per stay) and served beside the raw risk."""
    import shutil

    from models.calibrate import main as calibrate_main

    weights = tmp_path / "w"
    shutil.copytree(tiny_mortality_lstm, weights)
    code = calibrate_main(["mortality-lstm", "--weights", str(weights), "--data", str(mortality_folder)])
    assert code == 0
    card = read_card(weights)
    assert card.trust is not None and card.trust.out_of_fold.utility is None  # type: ignore[union-attr]
    kept = [r for r in load_labelled_sets(mortality_folder) if not is_reserved(r.name)]
    assert card.trust.out_of_fold.n_hours == len(kept)  # type: ignore[union-attr]
    predictor = load_predictor("mortality-lstm", weights, "cpu", "torch-fp32")
    assert isinstance(predictor, MortalityPredictor)
    path = sorted((mortality_folder / "set-a").glob("*.txt"))[1]
    values = predictor.model_values(predictor.decode(path.read_bytes(), path.name))
    assessment = predictor.assess([values])[0]
    assert assessment.calibrated_probability is not None and assessment.calibrated_probability.shape == (48,)
    assert predictor.trust is not None
    logit = np.log(assessment.probability[-1] / (1 - assessment.probability[-1]))
    expected = float(predictor.trust.calibration(np.array([logit], dtype=np.float64))[0])
    assert float(assessment.calibrated_probability[-1]) == pytest.approx(expected, abs=1e-5)

    # models.predict writes the calibrated 48th hour beside the raw risk, for this stay as assess gives it
    rows = _predict_set_a(weights, mortality_folder, tmp_path)
    assert list(rows[0]) == ["RecordID", "probability", "label", "calibrated_probability"]
    row = next(r for r in rows if r["RecordID"] == path.stem)
    assert float(row["probability"]) == pytest.approx(float(assessment.probability[-1]), abs=2e-6)
    assert float(row["calibrated_probability"]) == pytest.approx(float(assessment.calibrated_probability[-1]), abs=2e-6)
    for r in rows:
        assert 0 <= float(r["calibrated_probability"]) <= 1 and int(r["label"]) == int(
            float(r["probability"]) >= predictor.threshold
        )

    # models.evaluate: the calibrated 48th hour's ECE and Brier, from the calibrated column just written
    capsys.readouterr()
    argv = ["mortality-lstm", "--weights", str(weights), "--data", str(mortality_folder), "--sets", "a"]
    assert evaluate_main([*argv, "--backend", "torch-fp32"]) == 0
    outcome = {r.name: int(r.label or 0) for r in load_labelled_sets(mortality_folder, ["a"])}
    y = np.array([outcome[r["RecordID"]] for r in rows])
    c = np.array([float(r["calibrated_probability"]) for r in rows])
    ece, brier = expected_calibration_error(y, c), float(np.mean((c - y) ** 2))
    lines = capsys.readouterr().out.splitlines()
    calibrated_line = next(line for line in lines if line.startswith("  calibrated:"))
    assert calibrated_line.split() == ["calibrated:", "ECE", f"{ece:.4f}", "Brier", f"{brier:.4f}"]
