"""Explanations: Grad-CAM heatmaps of the CNN and integrated-gradient attributions of the sepsis models.

Committed weights (models/weights/<name>) are used when present, else the tiny session checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.cnn import PneumoniaCNN, to_tensor
from models.inference import MortalityPredictor, SepsisPredictor, XrayPredictor, load_predictor, normalised_heatmap
from models.sepsis_io import FEATURES
from models.sequence import baseline_features, baseline_values, engineer
from tests.models.conftest import committed_weights, synthetic_stay, synthetic_xray

HR = FEATURES.index("HR")
HOURS = 16
CHANGE_FROM = 10  # HR is made extreme from this hour on


@pytest.mark.parametrize("shape", [(64, 64), (72, 96), (150, 110)])
def test_gradcam_heatmap(cnn_weights: Path, shape: tuple[int, int]) -> None:
    predictor = XrayPredictor(cnn_weights, device="cpu")
    square = synthetic_xray(np.random.default_rng(9), pneumonia=True, side=max(shape)).astype(np.float32) / 255.0
    image = square[: shape[0], : shape[1]]
    original = image.copy()
    heat = predictor.explain(image)
    assert heat.shape == image.shape and heat.dtype == np.float32
    assert np.isfinite(heat).all()
    assert float(heat.min()) >= 0.0 and float(heat.max()) == pytest.approx(1.0)  # normalised to its maximum
    assert float(heat.max() - heat.min()) > 0.1 and float(heat.std()) > 0.01  # not constant
    np.testing.assert_array_equal(image, original)  # explaining does not touch the input


@pytest.fixture(scope="module")
def stay() -> np.ndarray:
    values, _ = synthetic_stay(np.random.default_rng(21), HOURS, septic=False)
    return values.astype(np.float32)


def _hr_share(attribution: np.ndarray) -> float:
    later = np.abs(attribution[CHANGE_FROM:])
    return float(later[:, HR].sum() / later.sum())


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_sequence_attribution_follows_a_decisive_vital_sign(
    arch: str, request: pytest.FixtureRequest, stay: np.ndarray
) -> None:
    weights: Path = request.getfixturevalue(f"{arch}_weights")
    predictor = SepsisPredictor(arch, weights, device="cpu")
    base = predictor.explain(stay, n_steps=4)
    assert base.shape == (HOURS, len(FEATURES)) and base.dtype == np.float32
    assert np.isfinite(base).all() and np.abs(base).sum() > 0

    tachycardic = stay.copy()
    tachycardic[CHANGE_FROM:, HR] = 250.0  # extreme heart rate, measured every later hour
    altered = predictor.explain(tachycardic, n_steps=4)
    assert altered.shape == base.shape
    before, after = _hr_share(base), _hr_share(altered)
    assert after > 1.25 * before and after > before + 0.005, (before, after)
    # explanations are causal too: earlier hours are explained exactly as before
    scale = float(np.abs(base[:CHANGE_FROM]).max())
    np.testing.assert_allclose(altered[:CHANGE_FROM], base[:CHANGE_FROM], atol=1e-4 * scale + 1e-6)
    # the baseline patient is at the same hour of the stay: the clock (ICULOS) itself is never a reason
    assert np.all(base[:, FEATURES.index("ICULOS")] == 0.0) and np.all(altered[:, FEATURES.index("ICULOS")] == 0.0)


def test_a_variable_never_measured_gets_no_attribution(lstm_weights: Path, stay: np.ndarray) -> None:
    """The reference is a stay in which nothing was measured: a variable the record never measured reads the same
    in both (hours since the last measurement at the cap, no encoding), so it is never a reason. The old reference
    (hours since 0, encodings at the training median) put a never-measured HCO3 in most hours' top 5."""
    predictor = SepsisPredictor("lstm", lstm_weights, device="cpu")
    never = [FEATURES.index(c) for c in ("HCO3", "EtCO2", "TroponinI")]
    values = stay.copy()
    values[:, never] = np.nan
    attribution = predictor.explain(values, n_steps=4)  # (hours, 40)
    assert np.abs(attribution).sum() > 0
    np.testing.assert_array_equal(attribution[:, never], 0.0)


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_attributions_add_up_to_the_change_from_the_reference(
    arch: str, request: pytest.FixtureRequest, stay: np.ndarray
) -> None:
    """Completeness of integrated gradients: each hour's attributions sum to f(x) - f(reference) of its logit."""
    weights: Path = request.getfixturevalue(f"{arch}_weights")
    predictor = SepsisPredictor(arch, weights, device="cpu")
    features = torch.from_numpy(engineer(stay, predictor.stats, predictor.schema))[None]  # (1, hours, F)
    reference = torch.from_numpy(baseline_features(predictor.stats, stay, predictor.schema))[None]
    with torch.no_grad():
        change = (predictor.model(features) - predictor.model(reference))[0].numpy()  # (hours,)
    total = predictor.explain(stay, n_steps=64).sum(axis=1)  # (hours,)
    assert float(np.abs(change).max()) > 0.1  # the record is not the reference
    np.testing.assert_allclose(total, change, atol=0.05 + 0.05 * float(np.abs(change).max()))


def test_the_reference_is_a_possible_stay_with_nothing_measured(lstm_weights: Path, stay: np.ndarray) -> None:
    """Its flags sit at their training prevalence (never all 0: no patient has no ICU unit and no sex), its
    other static columns at their training mean, its clock is the record's own, and nothing is measured."""
    predictor = SepsisPredictor("lstm", lstm_weights, device="cpu")
    schema, stats = predictor.schema, predictor.stats
    raw = baseline_values(stats, stay, schema)  # (hours, 40)
    assert np.isnan(raw[:, : schema.n_measured]).all()
    for column in ("Gender", "Unit1", "Unit2", "Age"):
        mean = stats.mean[schema.stats_columns.index(column)]
        np.testing.assert_allclose(raw[:, FEATURES.index(column)], mean, rtol=1e-6)
        if column != "Age":
            assert 0.0 < mean < 1.0
    np.testing.assert_array_equal(raw[:, FEATURES.index("ICULOS")], stay[:, FEATURES.index("ICULOS")])
    np.testing.assert_array_equal(baseline_features(stats, stay, schema), engineer(raw, stats, schema))


def _disagreeing(predictor: XrayPredictor, scale: float) -> PneumoniaCNN:
    """Makes the ensemble's second member the first with its logit times ``scale``; returns the first."""
    first, second = predictor.model.members
    second.load_state_dict(first.state_dict())
    head = second.head[1]
    assert isinstance(head, torch.nn.Linear)
    with torch.no_grad():
        head.weight.mul_(scale)
        head.bias.mul_(scale)
    return first


def test_gradcam_of_an_ensemble_is_that_of_its_mean_logit(cnn_weights: Path) -> None:
    """Members that disagree in sign: the map is Grad-CAM of the mean logit, not the mean of the members'
    clamped maps (which showed one member's evidence that the other's cancels)."""
    image = synthetic_xray(np.random.default_rng(9), pneumonia=True, side=96).astype(np.float32) / 255.0
    predictor = XrayPredictor(cnn_weights, device="cpu")
    if predictor.n_members < 2:
        pytest.skip("an ensemble checkpoint is needed")
    _disagreeing(predictor, -1.0)  # the mean logit is 0 whatever the image: nothing raised it
    assert not predictor.explain(image).any()

    predictor = XrayPredictor(cnn_weights, device="cpu")
    first = _disagreeing(predictor, -0.5)  # the mean logit is a quarter of the first member's
    from captum.attr import LayerGradCam

    x = to_tensor([image], predictor.config)
    with torch.enable_grad():
        alone = LayerGradCam(first, first.target_layer).attribute(x, relu_attributions=True).detach()
    expected = normalised_heatmap(alone, image.shape)
    assert expected.max() == pytest.approx(1.0)
    np.testing.assert_allclose(predictor.explain(image), expected, atol=1e-4)


def test_a_derived_ratio_is_explained_under_its_own_name_and_value(request: pytest.FixtureRequest) -> None:
    """Mortality's ratios (PaO2/FiO2, shock index, BUN/creatinine) are variables of their own: their channels
    are no longer summed into the numerator's bar, shown under the numerator's name and value."""
    weights = committed_weights("mortality-lstm") or request.getfixturevalue("tiny_mortality_lstm")
    predictor = load_predictor("mortality-lstm", weights, "cpu", "torch-fp32")
    assert isinstance(predictor, MortalityPredictor)
    schema = predictor.schema
    columns = schema.explained_columns
    assert columns[schema.n_measured : schema.n_all_measured] == ("PaO2/FiO2", "ShockIndex", "BUN/Creatinine")
    values = np.full((48, len(schema.columns)), np.nan, dtype=np.float32)
    values[:, schema.columns.index("Hour")] = np.arange(1, 49)
    for column, value in (("Age", 70.0), ("Gender", 1.0), ("ICUType3", 1.0), ("HR", 110.0), ("SysABP", 100.0)):
        values[:, schema.columns.index(column)] = value
    for hour, (bun, creatinine) in ((4, (30.0, 1.5)), (30, (48.0, 2.0))):
        values[hour, schema.columns.index("BUN")] = bun
        values[hour, schema.columns.index("Creatinine")] = creatinine
    attribution = predictor.explain_stay(values, n_steps=4)  # (len(explained_columns),)
    assert attribution.shape == (len(columns),)
    for ratio in ("ShockIndex", "BUN/Creatinine"):
        assert attribution[columns.index(ratio)] != 0.0
    assert attribution[columns.index("PaO2/FiO2")] == 0.0  # never measured
    last = predictor.explained_values(values)[-1]  # (len(explained_columns),)
    assert last[columns.index("BUN/Creatinine")] == pytest.approx(24.0)
    assert last[columns.index("ShockIndex")] == pytest.approx(1.1)
    assert last[columns.index("BUN")] == 48.0 and np.isnan(last[columns.index("PaO2/FiO2")])
