"""The sepsis models are causal: the risk at hour t depends on rows 0..t only, and batching
(padding) never changes a record's risk. Checked on the feature engineering, on randomly
initialised networks of both architectures and on the checkpoints the CLIs load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

from models.inference import SepsisPredictor
from models.mortality_features import MORTALITY_V1, MORTALITY_V2
from models.sequence import (
    N_INPUT,
    N_PLE,
    PLE_BINS,
    PLE_COLUMNS,
    SEPSIS_V1,
    SEPSIS_V2,
    SEPSIS_V3,
    SIGNATURE_WINDOW,
    FeatureSchema,
    NormStats,
    SequenceConfig,
    build_sequence_model,
    engineer,
    feature_groups,
    log_signature,
    pad_batch,
    piecewise_linear,
    to_probability,
)
from tests.models.conftest import synthetic_stay

T = 13  # rows 0..T must not feel anything that happens later
HOURS = 30
ATOL = 1e-5


@pytest.fixture(scope="module")
def stays() -> tuple[np.ndarray, np.ndarray, NormStats]:
    """A 30-hour septic stay, a 12-hour stay and normalisation statistics fitted on both."""
    rng = np.random.default_rng(3)
    long, _ = synthetic_stay(rng, HOURS, septic=True)
    short, _ = synthetic_stay(rng, 12, septic=False)
    return long.astype(np.float32), short.astype(np.float32), NormStats.fit(np.concatenate([long, short]))


def futures(values: np.ndarray) -> dict[str, np.ndarray]:
    """Variants of ``values`` that differ only after row T (and the record cut at T)."""
    rng = np.random.default_rng(5)
    changed = values.copy()
    changed[T + 1 :, :34] = values[T + 1 :, :34] * rng.uniform(0.5, 1.5, size=(HOURS - T - 1, 34))
    changed[T + 1 :: 2, :8] = np.nan  # measurements disappear ...
    changed[T + 2 :: 3, 8:34] = 1.0  # ... and appear
    extended = np.concatenate([values, values[-8:] * 1.3])  # more hours appended
    return {"changed": changed, "extended": extended, "cut": values[: T + 1]}


def test_engineer_is_causal(stays: tuple[np.ndarray, np.ndarray, NormStats]) -> None:
    values, _, stats = stays
    base = engineer(values, stats)
    assert base.shape == (HOURS, N_INPUT) and base.dtype == np.float32 and np.isfinite(base).all()
    assert len(feature_groups()) == N_INPUT
    for name, other in futures(values).items():
        feats = engineer(other, stats)
        np.testing.assert_allclose(feats[: T + 1], base[: T + 1], atol=1e-6, err_msg=name)
    # and the later rows do change: the test can see a leak
    assert not np.allclose(engineer(futures(values)["changed"], stats)[T + 1 :], base[T + 1 :])


def test_engineer_forward_fills_and_counts(stays: tuple[np.ndarray, np.ndarray, NormStats]) -> None:
    _, _, stats = stays
    values = np.full((5, 40), np.nan, dtype=np.float32)
    values[1, 0] = 100.0  # HR measured once, at hour 1
    feats = engineer(values, stats)
    z_hr = (100.0 - stats.mean[0]) / stats.std[0]
    np.testing.assert_allclose(feats[:, 0], [0.0, z_hr, z_hr, z_hr, z_hr], rtol=1e-5)  # forward filled
    np.testing.assert_array_equal(feats[:, 34], [0, 1, 0, 0, 0])  # measured-this-hour mask
    np.testing.assert_allclose(feats[:, 68], [1.0, 0.0, 1 / 72, 2 / 72, 3 / 72], rtol=1e-5)  # hours since
    # HR's piecewise-linear channels: nothing before the first measurement, then the forward-filled value's
    hr_ple = feats[:, N_INPUT - N_PLE :][:, :PLE_BINS]  # (hours, bins), HR is PLE column 0
    assert not hr_ple[0].any()
    np.testing.assert_allclose(hr_ple[1:], np.repeat(hr_ple[1:2], 4, axis=0))
    edges = np.asarray(stats.edges[0])
    np.testing.assert_allclose(hr_ple[1].sum(), piecewise_linear(np.array([[100.0]]), edges[None]).sum())


def test_piecewise_linear_encoding_by_hand() -> None:
    """Edges 0, 1, 1, 3: a ramp over [0, 1], a step at 1 (empty bin) and a ramp over [1, 3]."""
    edges = np.array([[0.0, 1.0, 1.0, 3.0]])
    values = np.array([[np.nan], [-5.0], [0.25], [1.0], [2.0], [9.0]])
    expected = np.array([[0, 0, 0], [0, 0, 0], [0.25, 0, 0], [1, 1, 0], [1, 1, 0.5], [1, 1, 1]])
    np.testing.assert_allclose(piecewise_linear(values, edges), expected)


def test_norm_stats_edges_are_training_quantiles(stays: tuple[np.ndarray, np.ndarray, NormStats]) -> None:
    long, short, stats = stays
    both = np.concatenate([long, short])
    assert len(stats.edges) == len(PLE_COLUMNS) and all(len(e) == PLE_BINS + 1 for e in stats.edges)
    for column, edges in zip(PLE_COLUMNS, stats.edges, strict=True):
        seen = both[:, column][np.isfinite(both[:, column])]
        if seen.size:
            assert edges[0] == pytest.approx(seen.min()) and edges[-1] == pytest.approx(seen.max())
            assert np.all(np.diff(edges) >= 0)


def _random_model(
    arch: Literal["lstm", "transformer"], members: int = 1, head: Literal["linear", "mlp"] = "linear"
) -> torch.nn.Module:
    torch.manual_seed(0)
    config = SequenceConfig(arch=arch, d_model=32, n_layers=2, n_heads=4, members=members, head=head)
    return build_sequence_model(config).eval()


def _probs(model: torch.nn.Module, records: list[np.ndarray], stats: NormStats) -> list[np.ndarray]:
    x, mask = pad_batch([engineer(v, stats) for v in records])
    with torch.no_grad():
        prob = to_probability(model(x, mask)).numpy()
    return [prob[i, : len(v)] for i, v in enumerate(records)]


@pytest.mark.parametrize(
    ("arch", "members", "head"),
    [("lstm", 1, "linear"), ("lstm", 1, "mlp"), ("transformer", 1, "linear"), ("transformer", 2, "mlp")],
)
def test_random_model_is_causal(
    arch: Literal["lstm", "transformer"],
    members: int,
    head: Literal["linear", "mlp"],
    stays: tuple[np.ndarray, np.ndarray, NormStats],
) -> None:
    values, _, stats = stays
    model = _random_model(arch, members, head)
    (base,) = _probs(model, [values], stats)
    assert base.shape == (HOURS,) and ((base > 0) & (base < 1)).all()
    for name, other in futures(values).items():
        (prob,) = _probs(model, [other], stats)
        np.testing.assert_allclose(prob[: T + 1], base[: T + 1], atol=ATOL, err_msg=f"{arch}: {name}")
    (changed,) = _probs(model, [futures(values)["changed"]], stats)
    assert np.abs(changed[T + 1 :] - base[T + 1 :]).max() > 1e-4  # later hours do see the change


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_random_model_padding_is_invisible(
    arch: Literal["lstm", "transformer"], stays: tuple[np.ndarray, np.ndarray, NormStats]
) -> None:
    long, short, stats = stays
    model = _random_model(arch)
    alone_short, alone_long = _probs(model, [short], stats)[0], _probs(model, [long], stats)[0]
    batch_short, batch_long = _probs(model, [short, long], stats)
    np.testing.assert_allclose(batch_short, alone_short, atol=ATOL)
    np.testing.assert_allclose(batch_long, alone_long, atol=ATOL)


@pytest.fixture(scope="module", params=["lstm", "transformer"])
def predictor(request: pytest.FixtureRequest) -> SepsisPredictor:
    weights: Path = request.getfixturevalue(f"{request.param}_weights")
    return SepsisPredictor(request.param, weights, device="cpu")


def test_predictor_is_causal(predictor: SepsisPredictor, stays: tuple[np.ndarray, np.ndarray, NormStats]) -> None:
    values, _, _ = stays
    (base,) = predictor.predict([values])
    assert base.shape == (HOURS,) and base.dtype == np.float32
    variants = futures(values)
    probs = predictor.predict(list(variants.values()))  # one padded batch of different lengths
    for name, prob in zip(variants, probs, strict=True):
        assert len(prob) == len(variants[name])
        np.testing.assert_allclose(prob[: T + 1], base[: T + 1], atol=ATOL, err_msg=f"{predictor.name}: {name}")


def test_predictor_padding_is_invisible(
    predictor: SepsisPredictor, stays: tuple[np.ndarray, np.ndarray, NormStats]
) -> None:
    long, short, _ = stays
    (alone_short,) = predictor.predict([short])
    (alone_long,) = predictor.predict([long])
    for batch in ([short, long], [long, short]):
        out = predictor.predict(batch)
        got = dict(zip((len(b) for b in batch), out, strict=True))
        np.testing.assert_allclose(got[len(short)], alone_short, atol=ATOL)
        np.testing.assert_allclose(got[len(long)], alone_long, atol=ATOL)
    assert predictor.predict([]) == []


def _schema_record(schema: FeatureSchema, rng: np.random.Generator, hours: int) -> np.ndarray:
    """(hours, len(schema.columns)): every measured column around 50 with 60 % missing, static columns set."""
    values = rng.normal(50.0, 10.0, size=(hours, len(schema.columns))).astype(np.float32)
    values[:, : schema.n_measured][rng.random((hours, schema.n_measured)) < 0.6] = np.nan
    for c in schema.binary:
        values[:, schema.columns.index(c)] = 1.0
    return values


@pytest.mark.parametrize("schema", [SEPSIS_V2, SEPSIS_V3, MORTALITY_V1, MORTALITY_V2], ids=lambda s: s.name)
def test_every_schema_is_causal(schema: FeatureSchema) -> None:
    """The summaries (running min / max / mean, change from the first value and the last day) and the derived
    ratios look backwards only: changing hours after T leaves hours 0..T as they were."""
    rng = np.random.default_rng(8)
    values = _schema_record(schema, rng, HOURS)
    stats = NormStats.fit_records([values, _schema_record(schema, rng, 12)], schema)
    base = engineer(values, stats, schema)
    assert base.shape == (HOURS, schema.n_input) and np.isfinite(base).all()
    assert len(schema.feature_groups()) == schema.n_input
    assert sorted(set(schema.feature_groups())) == list(range(len(schema.explained_columns)))
    later = values.copy()
    later[T + 1 :, : schema.n_measured] = rng.normal(90.0, 30.0, size=(HOURS - T - 1, schema.n_measured))
    changed = engineer(later, stats, schema)
    np.testing.assert_allclose(changed[: T + 1], base[: T + 1], atol=1e-6)
    assert not np.allclose(changed[T + 1 :], base[T + 1 :])
    np.testing.assert_allclose(engineer(values[: T + 1], stats, schema), base[: T + 1], atol=1e-6)


def test_summaries_and_derived_ratios_by_hand() -> None:
    """HR 100 then 80 then 120 and SBP 100 from hour 1: running min / max / mean of HR's z-scores, the change from
    the first value, and the shock index HR / SBP from the forward-filled values where either was measured."""
    schema = SEPSIS_V2
    values = np.full((4, len(schema.columns)), np.nan, dtype=np.float32)
    hr, sbp = schema.columns.index("HR"), schema.columns.index("SBP")
    values[:3, hr] = [100.0, 80.0, 120.0]
    values[1, sbp] = 100.0
    augmented = schema.augment(values)
    shock = schema.n_measured  # the first derived column
    np.testing.assert_allclose(augmented[:, shock], [np.nan, 0.8, 1.2, np.nan], equal_nan=True)
    stats = NormStats(
        mean=[0.0] * len(schema.stats_columns),
        std=[100.0] * len(schema.stats_columns),
        edges=[list(np.linspace(0, 200, 17))] * len(schema.ple_columns),
    )
    feats = engineer(values, stats, schema)
    m = schema.n_all_measured
    start = 4 * m + 3 * schema.n_trend + len(schema.static)  # the summaries block: min, max, mean, first, day
    block = feats[:, start : start + 5 * m].reshape(4, 5, m)[:, :, hr]  # (hours, 5) for HR
    np.testing.assert_allclose(block[:, 0], [1, 0.8, 0.8, 0.8], rtol=1e-6)  # running min of z = HR / 100
    np.testing.assert_allclose(block[:, 1], [1, 1, 1.2, 1.2], rtol=1e-6)
    np.testing.assert_allclose(block[:, 2], [1, 0.9, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(block[:, 3], [0, -0.2, 0.2, 0.2], rtol=1e-6, atol=1e-7)  # change from the first
    np.testing.assert_allclose(block[:, 4], [0, -0.1, 0.2, 0.15], rtol=1e-6, atol=1e-7)  # from the day's mean


def _iterated_integrals(path: np.ndarray) -> np.ndarray:
    """Level 2 of a piecewise-linear path's signature, segment by segment (Chen): (points, d) -> (d, d)."""
    d = path.shape[1]
    s1, s2 = np.zeros(d), np.zeros((d, d))
    for step in np.diff(path, axis=0):
        s2 += np.outer(s1, step) + np.outer(step, step) / 2
        s1 += step
    return s2


def test_log_signature_by_hand() -> None:
    """Right then up encloses the unit square's lower half: Levy area +1/2; up then right: -1/2. Every hour's
    window agrees with the iterated integrals of that window's points computed directly."""
    right_up = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(log_signature(right_up, 2)[-1], [1.0, 1.0, 0.5])
    np.testing.assert_allclose(log_signature(right_up[:, ::-1], 2)[-1], [1.0, 1.0, -0.5])
    rng = np.random.default_rng(3)
    path = rng.normal(size=(30, 4)).cumsum(axis=0)  # (hours, d)
    window = 5
    sig = log_signature(path, window)
    assert sig.shape == (30, 4 + 6)
    iu, ju = np.triu_indices(4, k=1)
    for t in range(30):
        points = path[max(0, t - window) : t + 1]
        s2 = _iterated_integrals(points)
        np.testing.assert_allclose(sig[t, :4], points[-1] - points[0], atol=1e-9)
        np.testing.assert_allclose(sig[t, 4:], (s2[iu, ju] - s2[ju, iu]) / 2, atol=1e-9)


def test_signature_channels_sit_before_the_encoding() -> None:
    """sepsis-v3 is sepsis-v1 with the log-signature block between the static columns and the piecewise-linear
    encoding (a tree teacher reads it: it is dense); a heart rate rising while MAP falls gives a non-zero
    HR-MAP area, and flat vitals give none."""
    assert SEPSIS_V3.n_input == N_INPUT + SEPSIS_V3.n_signature and SEPSIS_V3.n_signature == 6 + 15
    values = np.full((SIGNATURE_WINDOW + 4, len(SEPSIS_V3.columns)), np.nan, dtype=np.float32)
    hr, map_ = SEPSIS_V3.columns.index("HR"), SEPSIS_V3.columns.index("MAP")
    values[:, hr], values[:, map_] = 80.0, 80.0
    stats = NormStats(
        mean=[80.0] * len(SEPSIS_V3.stats_columns),
        std=[10.0] * len(SEPSIS_V3.stats_columns),
        edges=[list(np.linspace(0, 200, PLE_BINS + 1))] * len(SEPSIS_V3.ple_columns),
    )
    start = SEPSIS_V3.n_dense - SEPSIS_V3.n_signature
    flat = engineer(values, stats, SEPSIS_V3)
    time_increment = np.minimum(np.arange(values.shape[0]), SIGNATURE_WINDOW) / SIGNATURE_WINDOW
    np.testing.assert_allclose(flat[:, start], np.log1p(time_increment), rtol=1e-6)  # only time moves
    np.testing.assert_allclose(flat[:, start + 1 : start + SEPSIS_V3.n_signature], 0.0, atol=1e-7)
    values[:, hr] = np.linspace(80.0, 120.0, values.shape[0]) ** 1.5 / 80.0**0.5  # rises faster and faster
    values[:, map_] = np.linspace(80.0, 60.0, values.shape[0])
    moving = engineer(values, stats, SEPSIS_V3)
    d = len(SEPSIS_V3.signature) + 1
    pairs = list(zip(*np.triu_indices(d, k=1), strict=True))
    hr_map = start + d + pairs.index((1 + SEPSIS_V3.signature.index("HR"), 1 + SEPSIS_V3.signature.index("MAP")))
    assert np.abs(moving[-1, hr_map]) > 1e-3
    np.testing.assert_allclose(moving[:, :start], engineer(values, stats, SEPSIS_V1)[:, :start], atol=1e-6)
