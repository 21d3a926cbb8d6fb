"""``SepsisPredictor.assess`` (models/inference.py): the hourly risk, its calibrated value and the fold members'
spread from one forward pass, the same on every execution path (torch fp32, bf16 autocast, ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.backends import bf16_native
from models.inference import SepsisPredictor
from models.sepsis_io import load_series_file

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _records(psv_paths: list[Path]) -> list[np.ndarray]:
    return [load_series_file(p, on_impossible="drop").values for p in psv_paths[:4]]


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_members_agree_between_torch_and_onnx_runtime(
    name: str, request: pytest.FixtureRequest, psv_paths: list[Path]
) -> None:
    """Every member's output travels through the ONNX export: spread and band as torch fp32 computes them."""
    weights = request.getfixturevalue(f"{name}_weights")
    records = _records(psv_paths)
    fp32 = SepsisPredictor(name, weights, "cpu", backend="torch-fp32").assess(records)
    ort = SepsisPredictor(name, weights, "cpu", backend="onnxruntime").assess(records)
    for a, b in zip(fp32, ort, strict=True):
        assert a.members == b.members == 5
        for field in ("probability", "member_std", "member_min", "member_max", "calibrated_probability"):
            want, got = getattr(a, field), getattr(b, field)
            assert (want is None) == (got is None), field
            if want is not None:
                np.testing.assert_allclose(got, want, atol=1e-5, err_msg=field)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_the_spread_brackets_the_risk_on_every_path(
    name: str, request: pytest.FixtureRequest, psv_paths: list[Path]
) -> None:
    weights = request.getfixturevalue(f"{name}_weights")
    records = _records(psv_paths)
    backends = ["torch-fp32", "onnxruntime"] + (["torch-bf16"] if bf16_native(torch.device("cpu")) else [])
    for backend in backends:
        predictor = SepsisPredictor(name, weights, "cpu", backend=backend)  # type: ignore[arg-type]
        for record, a, risk in zip(records, predictor.assess(records), predictor.predict(records), strict=True):
            assert a.probability.shape == (record.shape[0],)
            np.testing.assert_allclose(a.probability, risk, atol=1e-6)  # the same risk as predict()
            assert a.member_std is not None and a.member_min is not None and a.member_max is not None
            assert np.all(a.member_std >= 0) and np.all(a.member_std < 0.5)
            assert np.all(a.member_min <= a.probability) and np.all(a.probability <= a.member_max)
            assert np.any(a.member_std > 0)  # five independently trained networks do not agree exactly


def test_an_uncalibrated_checkpoint_answers_no_calibrated_risk(tiny_lstm: Path) -> None:
    """The tiny checkpoint (2 folds, never calibrated): a spread of its 2 members, no calibrated risk."""
    values = np.full((6, 40), np.nan, dtype=np.float32)
    values[:, -1] = np.arange(1, 7)
    (a,) = SepsisPredictor("lstm", tiny_lstm, "cpu", backend="torch-fp32").assess([values])
    assert a.members == 2 and a.calibrated_probability is None and a.member_std is not None
