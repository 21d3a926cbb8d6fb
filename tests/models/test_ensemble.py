"""The CNN deep ensemble: the network (models/cnn.py ``CnnEnsemble``), its trusted graph, the adoption rule and
``python -m models.ensemble`` on tiny members trained through the real CLI, then calibrated and served by the
predictor on every execution path; ``--rethreshold``; and the committed ensemble's threshold on the served paths."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.cards import read_card, write_card
from models.catalogue import CATALOGUE, PNEUMONIA, ModelEntry
from models.checkpoint import CARD_JSON, CheckpointMeta, load_checkpoint, save_checkpoint
from models.cnn import CnnConfig, CnnEnsemble, PneumoniaCNN, build_cnn
from models.config import DataPaths
from models.ensemble import adopt_size, validation_set
from models.inference import XrayPredictor
from models.metrics import binary_evaluation
from models.ood import TrustedCNN
from models.train_cnn import VAL_FRACTION, sensitivity_first_threshold
from models.trust_report import EnsembleRow
from models.xray_io import load_xray_file
from tests.models.conftest import TORCH_THREADS, _train, committed_weights

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


def _meta(kind: str, config: CnnConfig | None) -> CheckpointMeta:
    return CheckpointMeta(
        kind=kind,
        version=f"{kind}-test",
        task="test",
        labels=["NORMAL", "PNEUMONIA"],
        threshold=0.5,
        config={} if config is None else config.model_dump(mode="json"),
        preprocessing={},
    )


def test_the_ensemble_cli_names_a_member_it_cannot_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --members folder without a checkpoint, with another model's, with an ensemble, or without a readable card
    ended in a traceback (WeightsError, ValueError, FileNotFoundError, ValidationError); now a usage error naming
    that member, before any radiograph is read and with nothing written."""
    from models.ensemble import main as ensemble_main

    torch.manual_seed(0)
    single = PneumoniaCNN(SMALL).state_dict()
    save_checkpoint(tmp_path / "lstm", _meta("lstm", None), {})
    save_checkpoint(tmp_path / "ensemble", _meta("cnn", SMALL.model_copy(update={"members": 2})), {})
    save_checkpoint(tmp_path / "no-card", _meta("cnn", SMALL), single)
    save_checkpoint(tmp_path / "bad-card", _meta("cnn", SMALL), single)
    (tmp_path / "bad-card" / CARD_JSON).write_text('{"name": "cnn"}')
    for member, said in (
        ("missing", f"No checkpoint at {tmp_path / 'missing'}: "),
        ("lstm", "holds a lstm model"),
        ("ensemble", "is already an ensemble (2 members): pass single members"),
        ("no-card", f"no readable {CARD_JSON} beside its checkpoint (No such file or directory)"),
        ("bad-card", f"its {CARD_JSON} is not a model card this code can read (version: Field required)"),
    ):
        argv = ["--members", str(tmp_path / member), "--out", str(tmp_path / "out"), "--data", str(tmp_path / "none")]
        with pytest.raises(SystemExit) as info:
            ensemble_main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.startswith("usage:"), err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"python -m models.ensemble: error: --members {tmp_path / member}: "), err
        assert said in last, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--out", "/proc/medlens-no-such-folder", "argument --out: cannot write in"),
        ("--threads", "0", "argument --threads: must be 1 or more, not 0"),
        ("--val-fraction", "1.5", "argument --val-fraction: must lie in (0, 1), not 1.5"),
        ("--split-seed", "-1", "argument --split-seed: must be 0 or more, not -1"),
    ],
)
def test_the_ensemble_cli_refuses_arguments_that_cannot_work(
    option: str, value: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An --out it cannot write was found after every member and radiograph was read and scored (a traceback from
    mkdir), --threads 0 in torch; both are now refused as the arguments are read."""
    from models.ensemble import main as ensemble_main

    argv = ["--members", str(tmp_path / "m0"), "--out", str(tmp_path / "out"), option, value]
    with pytest.raises(SystemExit) as info:
        ensemble_main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and said in err, err


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


def _as_model(directory: Path, name: str) -> Path:
    """Rewrite a member trained as ``cnn`` as the checkpoint and card of catalogue model ``name`` (what
    ``python -m models.train <name>`` writes for another image CNN entry)."""
    meta, state = load_checkpoint(directory)
    save_checkpoint(directory, meta.model_copy(update={"kind": name}), state)
    write_card(directory, read_card(directory).model_copy(update={"name": name}))
    return directory


def test_an_ensemble_is_a_checkpoint_of_its_members_catalogue_entry(
    tiny_ensemble: Path, xray_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members of another image CNN of the catalogue make an ensemble of that entry (kind, version, card), which its
    predictor loads; members of two catalogue models are refused."""
    from models.ensemble import main as ensemble_main

    second = ModelEntry("cnn-second", PNEUMONIA, "cnn", "models.inference:XrayPredictor", "/v1/xray-second", "#000000")
    monkeypatch.setitem(CATALOGUE, second.name, second)  # what adding the entry to models/catalogue.py does
    members = []
    for k in (0, 1):
        shutil.copytree(tiny_ensemble.parent / f"m{k}", tmp_path / f"m{k}")
        members.append(_as_model(tmp_path / f"m{k}", "cnn-second"))
    out = tmp_path / "ensemble"
    argv = ["--members", *map(str, members), "--out", str(out), "--data", str(xray_folder), "--size", "2"]
    assert ensemble_main([*argv, "--threads", str(TORCH_THREADS)]) == 0
    meta, _ = load_checkpoint(out, expected="cnn-second")
    assert meta.version.startswith("cnn-second-") and read_card(out).name == "cnn-second"
    assert second.load(weights=out, device="cpu").n_members == 2
    shutil.copytree(tiny_ensemble.parent / "m1", tmp_path / "cnn-m1")
    mixed = ["--members", str(members[0]), str(tmp_path / "cnn-m1"), "--out", str(tmp_path / "mixed")]
    with pytest.raises(SystemExit) as exc:
        ensemble_main([*mixed, "--data", str(xray_folder), "--threads", str(TORCH_THREADS)])
    assert exc.value.code == 2 and not (tmp_path / "mixed").exists()


def test_rethreshold_rederives_the_threshold_from_the_weights_validation_scores(
    tiny_ensemble: Path, xray_folder: Path, tmp_path: Path
) -> None:
    """An ensemble whose threshold is the score of one validation positive (the rule before) gets today's rule's
    threshold, chosen on its validation scores recomputed from its weights, and the card's evaluation there; the
    weights, the OOD head, calibration, conformal scores and stored scores stay as they were."""
    from models.ensemble import main as ensemble_main

    directory = tmp_path / "ensemble"
    shutil.copytree(tiny_ensemble, directory)
    stored = np.load(directory / "validation_predictions.npz")
    y, prob = stored["y"], stored["prob"]
    old = float(np.sort(prob[y == 1])[math.floor(0.05 * int(y.sum()))])  # what the rule before returned
    meta, state = load_checkpoint(directory)
    save_checkpoint(directory, meta.model_copy(update={"threshold": old}), state)
    card = read_card(directory)
    write_card(directory, card.model_copy(update={"threshold": old, "evaluation": binary_evaluation(y, prob, old)}))
    npz_bytes = (directory / "validation_predictions.npz").read_bytes()

    argv = ["--rethreshold", str(directory), "--data", str(xray_folder), "--threads", str(TORCH_THREADS)]
    assert ensemble_main(argv) == 0
    new_meta, new_state = load_checkpoint(directory)
    new_card = read_card(directory)
    expected = sensitivity_first_threshold(y, prob, 0.95)
    assert new_meta.threshold == new_card.threshold == new_card.evaluation.threshold == expected != old
    assert new_card.evaluation == binary_evaluation(y, prob, expected)
    assert "--rethreshold" in new_card.threshold_rule and repr(old) in new_card.threshold_rule
    assert new_meta.preprocessing["threshold_rule"] == new_card.threshold_rule
    assert new_meta.trust == meta.trust and new_meta.config == meta.config and new_card.trust == card.trust
    assert new_state.keys() == state.keys() and all(torch.equal(new_state[k], state[k]) for k in state)
    assert (directory / "validation_predictions.npz").read_bytes() == npz_bytes

    for refused in (
        [*argv, "--split-seed", "3"],  # other validation patients than the stored scores'
        ["--rethreshold", str(tiny_ensemble.parent / "m0"), "--data", str(xray_folder)],  # not an ensemble's
        [*argv, "--out", str(tmp_path / "x")],
    ):
        with pytest.raises(SystemExit) as exc:
            ensemble_main(refused)
        assert exc.value.code == 2


def test_the_committed_cnn_labels_the_radiographs_nearest_its_threshold_as_its_card_on_every_path(
    real_data: DataPaths,
) -> None:
    """The committed CNN's card counts each validation radiograph at its stored (float64) score; the served paths
    return float32 scores from a float32 forward pass. The radiographs whose stored scores lie nearest the
    threshold get the card's label on each path (a threshold equal to a stored score loses that radiograph)."""
    weights = committed_weights("cnn")
    if weights is None:
        pytest.skip("no committed CNN checkpoint")
    card = read_card(weights)
    stored = np.load(weights / "validation_predictions.npz")
    y, paths = validation_set(real_data.xray_train, 0, VAL_FRACTION)  # the card's split: seed 0
    if not np.array_equal(y, stored["y"]):
        pytest.skip(f"{real_data.xray_train} is not the data of the committed CNN's card")
    threshold = card.threshold
    flagged = stored["prob"] >= threshold
    c = card.evaluation.confusion
    assert (c.tp, c.fn, c.fp) == (
        int((flagged & (y == 1)).sum()),
        int((~flagged & (y == 1)).sum()),
        int(flagged[y == 0].sum()),
    )
    near = np.argsort(np.abs(stored["prob"] - threshold))[:8]
    images = [load_xray_file(paths[i]).pixels for i in near]
    for backend in ("torch-fp32", "onnxruntime"):
        predictor = XrayPredictor(weights, device="cpu", backend=backend)
        assert predictor.threshold == threshold
        np.testing.assert_array_equal(predictor.predict(images) >= threshold, flagged[near], err_msg=backend)
        assert [a.label == "PNEUMONIA" for a in predictor.assess(images)] == list(flagged[near]), backend
