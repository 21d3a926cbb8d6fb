"""The CNN deep ensemble: the network (models/cnn.py ``CnnEnsemble``), its trusted graph, the adoption rule and
``python -m models.ensemble`` on tiny members trained through the real CLI, then calibrated and served by the
predictor on every execution path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.cards import read_card
from models.checkpoint import load_checkpoint
from models.cnn import CnnConfig, CnnEnsemble, PneumoniaCNN, build_cnn
from models.ensemble import adopt_size
from models.inference import XrayPredictor
from models.ood import TrustedCNN
from models.trust_report import EnsembleRow
from tests.models.conftest import TORCH_THREADS, _train

SMALL = CnnConfig(image_size=64, widths=(8, 8, 8, 8, 16), blocks=(1, 1, 1, 1))


def test_an_ensemble_predicts_the_mean_of_its_members_logits() -> None:
    torch.manual_seed(0)
    ensemble = build_cnn(SMALL.model_copy(update={"members": 3})).eval()
    assert isinstance(ensemble, CnnEnsemble) and len(ensemble.members) == 3
    x = torch.randn(4, 1, 64, 64)  # (batch, 1, S, S)
    with torch.inference_mode():
        each = torch.stack([m(x) for m in ensemble.members], dim=1)  # (4, 3)
        assert torch.allclose(ensemble(x), each.mean(dim=1), atol=1e-6)
        assert ensemble.pooled(x).shape == (4, 3 * 16)
        assert torch.allclose(ensemble.member_logits(ensemble.pooled(x)), each, atol=1e-6)
    assert isinstance(build_cnn(SMALL), PneumoniaCNN)
    assert all(k.startswith("nets.") for k in ensemble.state_dict())


def test_the_trusted_graph_returns_the_members_beside_the_mean_and_the_ood_score() -> None:
    torch.manual_seed(0)
    ensemble = build_cnn(SMALL.model_copy(update={"members": 2})).eval()
    x = torch.randn(5, 1, 64, 64)
    with torch.inference_mode():
        out = TrustedCNN(ensemble, "energy", None).eval()(x)  # (5, 2 + 2)
        single = TrustedCNN(ensemble.members[0], "energy", None).eval()(x)  # (5, 2)
    assert out.shape == (5, 4) and single.shape == (5, 2)
    assert torch.allclose(out[:, 0], out[:, 2:].mean(dim=1), atol=1e-6)
    assert torch.allclose(out[:, 2], single[:, 0], atol=1e-6)
    assert torch.allclose(out[:, 1], -torch.logaddexp(torch.zeros(5), out[:, 0]), atol=1e-6)


def _row(size: int, drift: float, brier: float, drift_sd: float = 0.01, brier_sd: float = 0.002) -> EnsembleRow:
    return EnsembleRow(
        size=size,
        subsets=1,
        auroc=(0.99, 0.0),
        brier=(brier, brier_sd),
        ece=(0.05, 0.0),
        specificity=(0.9, 0.0),
        drift=(drift, drift_sd),
        worst_specificity=(0.8, 0.0),
        adopted=False,
    )


def test_the_adoption_rule_needs_a_gain_larger_than_the_single_members_spread() -> None:
    # drift falls by 0.03 then 0.005 (single members' sd 0.01): two members, not three
    assert adopt_size([_row(1, 0.10, 0.05), _row(2, 0.07, 0.05), _row(3, 0.065, 0.05)]) == 2
    # nothing beats the spread: one member
    assert adopt_size([_row(1, 0.10, 0.05), _row(2, 0.095, 0.049), _row(3, 0.09, 0.0485)]) == 1
    # Brier alone can carry a step (gain 0.004 > sd 0.002)
    assert adopt_size([_row(1, 0.10, 0.05), _row(2, 0.10, 0.046)]) == 2
    # a later gain does not count once a step failed
    assert adopt_size([_row(1, 0.10, 0.05), _row(2, 0.10, 0.05), _row(3, 0.01, 0.01)]) == 1


@pytest.fixture(scope="module")
def tiny_ensemble(tmp_path_factory: pytest.TempPathFactory, xray_folder: Path) -> Path:
    """Two tiny members (seeds 0 and 1, one patient split) -> ``models.ensemble --size 2`` -> calibrated."""
    from models.calibrate import main as calibrate_main
    from models.ensemble import main as ensemble_main

    root = tmp_path_factory.mktemp("ensemble")
    members = [
        _train(
            "cnn",
            xray_folder,
            root / f"m{seed}",
            "--seed",
            str(seed),
            "--split-seed",
            "0",
            "--batch-size",
            "12",
            epochs=4,
        )
        for seed in (0, 1)
    ]
    out = root / "ensemble"
    argv = ["--members", *map(str, members), "--out", str(out), "--data", str(xray_folder), "--size", "2"]
    assert ensemble_main([*argv, "--threads", str(TORCH_THREADS)]) == 0
    assert (
        calibrate_main(["cnn", "--weights", str(out), "--data", str(xray_folder), "--threads", str(TORCH_THREADS)]) == 0
    )
    return out


def test_the_ensemble_cli_writes_a_checkpoint_and_a_card_with_every_size(tiny_ensemble: Path) -> None:
    meta, state = load_checkpoint(tiny_ensemble, expected="cnn")
    assert CnnConfig.model_validate(meta.config).members == 2
    assert any(k.startswith("nets.1.") for k in state) and meta.trust is not None
    card = read_card(tiny_ensemble)
    assert card.ensemble is not None
    assert [r.size for r in card.ensemble.rows] == [1, 2] and [r.subsets for r in card.ensemble.rows] == [2, 1]
    assert [r.adopted for r in card.ensemble.rows] == [False, True]
    assert len(card.ensemble.members) == 2 and "--size" in card.ensemble.rule + card.ensemble.command
    assert card.trust is not None  # calibrate kept the ensemble report and added its own
    prob = np.load(tiny_ensemble / "validation_predictions.npz")["member_prob"]
    assert prob.shape[0] == 2


def test_every_execution_path_serves_the_members_and_their_spread(tiny_ensemble: Path, xray_folder: Path) -> None:
    from PIL import Image

    images = [np.asarray(Image.open(p), dtype=np.float32) / 255.0 for p in sorted(xray_folder.rglob("*.png"))[::6]]
    results = {}
    for backend in ("torch-fp32", "onnxruntime"):
        predictor = XrayPredictor(tiny_ensemble, device="cpu", backend=backend)
        assert predictor.n_members == 2
        results[backend] = predictor.assess(images)
        prob = predictor.predict(images)
        for a, p in zip(results[backend], prob, strict=True):
            assert len(a.member_probabilities) == 2 and a.spread >= 0
            assert abs(a.probability - p) < 1e-5
            mean_logit = np.mean([np.log(q / (1 - q)) for q in a.member_probabilities])
            assert abs(a.probability - 1 / (1 + np.exp(-mean_logit))) < 1e-4
    for a, b in zip(results["torch-fp32"], results["onnxruntime"], strict=True):
        assert np.allclose(a.member_probabilities, b.member_probabilities, atol=1e-4)
        assert a.label == b.label
    heat = XrayPredictor(tiny_ensemble, device="cpu").explain(images[0])
    assert heat.shape == images[0].shape and heat.min() >= 0 and heat.max() <= 1
