"""Checkpoints (models/checkpoint.py): round trip, kind check, helpful errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.checkpoint import CHECKPOINT_FILE, CheckpointMeta, load_checkpoint, save_checkpoint
from models.cnn import CnnConfig, PneumoniaCNN
from models.errors import WeightsError
from models.inference import XrayPredictor


def _meta(kind: str = "cnn") -> CheckpointMeta:
    return CheckpointMeta(
        kind=kind,
        version=f"{kind}-test",
        task="round trip",
        labels=["NORMAL", "PNEUMONIA"],
        threshold=0.375,
        config={"widths": [8, 16], "nested": {"a": 1.5}},
        preprocessing={"normalise": {"mean": 0.5, "std": 0.25}, "threshold_rule": "fixed"},
    )


def test_round_trip_keeps_meta_and_tensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = {
        "w": torch.randn(3, 4),
        "b": torch.arange(5, dtype=torch.int64),
        "h": torch.randn(2, 2, dtype=torch.bfloat16),
        "t": torch.randn(4, 4).t(),  # non-contiguous
        "g": torch.randn(3, requires_grad=True),
    }
    path = save_checkpoint(tmp_path / "new" / "dir", _meta(), state)
    assert path == tmp_path / "new" / "dir" / CHECKPOINT_FILE and path.is_file()
    for where in (tmp_path / "new" / "dir", path):  # a directory or the file itself
        meta, loaded = load_checkpoint(where, expected="cnn")
        assert meta == _meta()
        assert set(loaded) == set(state)
        for key, tensor in state.items():
            assert loaded[key].dtype == tensor.dtype and loaded[key].device.type == "cpu"
            assert torch.equal(loaded[key], tensor.detach()), key
            assert not loaded[key].requires_grad
    meta, _ = load_checkpoint(tmp_path / "new" / "dir")  # no expectation: any kind
    assert meta.kind == "cnn"


def test_model_state_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    config = CnnConfig(image_size=64, widths=(8, 8, 16, 16, 16), blocks=(1, 1, 1, 1))
    model = PneumoniaCNN(config).eval()
    meta = _meta().model_copy(update={"config": config.model_dump(mode="json"), "threshold": 0.5})
    save_checkpoint(tmp_path, meta, model.state_dict())
    predictor = XrayPredictor(tmp_path, device="cpu", backend="torch-fp32")
    image = torch.rand(64, 64).numpy()
    x = (torch.from_numpy(image).view(1, 1, 64, 64) - config.mean) / config.std
    with torch.no_grad():
        expected = torch.sigmoid(model(x)).numpy()
    assert predictor.predict([image]) == pytest.approx(expected, abs=1e-3)
    assert predictor.threshold == 0.5 and predictor.card is None


@pytest.mark.parametrize(("saved", "expected"), [("cnn", "lstm"), ("lstm", "transformer"), ("transformer", "cnn")])
def test_wrong_kind_raises(tmp_path: Path, saved: str, expected: str) -> None:
    save_checkpoint(tmp_path, _meta(saved), {"w": torch.zeros(1)})
    with pytest.raises(WeightsError, match=f"holds a {saved} model, not a {expected} model"):
        load_checkpoint(tmp_path, expected=expected)


def test_missing_directory_is_explained(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "weights"
    with pytest.raises(WeightsError) as info:
        load_checkpoint(missing, expected="lstm")
    message = str(info.value)
    assert str(missing) in message
    assert "python -m models.train" in message and "--weights" in message
    with pytest.raises(WeightsError, match="No checkpoint"):
        load_checkpoint(tmp_path, expected="lstm")  # a directory without model.pt


def test_predictor_on_missing_weights_is_explained(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="No checkpoint"):
        XrayPredictor(tmp_path / "empty")


def test_a_file_that_is_not_a_checkpoint_raises_weights_error(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path, expected="cnn")


def test_meta_from_incompatible_code_raises_weights_error(tmp_path: Path) -> None:
    blob = {"meta": {**_meta().model_dump(mode="json"), "kind": "resnet"}, "state_dict": {}}
    torch.save(blob, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("name", ["cnn", "lstm", "transformer", "mortality-lstm", "mortality-transformer"])
def test_committed_cards_carry_their_checkpoints_labels_and_threshold(name: str) -> None:
    """Serving describes a model scaled to zero from its card alone (serving/app.py), so the card's labels and
    threshold must be the checkpoint's."""
    from models.cards import ModelCard
    from models.catalogue import entry

    weights = entry(name).default_weights
    meta, _ = load_checkpoint(weights, expected=name)
    card = ModelCard.model_validate_json((weights / "card.json").read_text())
    assert card.labels == meta.labels
    assert card.threshold == meta.threshold
    assert card.version == meta.version


def test_a_weights_version_names_the_weights_themselves() -> None:
    """Two sets of weights trained the same day have different versions (a GAN card keeps an evaluation only of
    the version it measured; a synthetic image's mark names it), the same weights the same one, and the version
    is one a synthetic mark can carry."""
    from models.checkpoint import weights_version
    from models.synthetic_mark import SyntheticMark

    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(3)}  # a 0-d counter too
    same = {k: v.clone() for k, v in state.items()}
    other = {**state, "w": state["w"] + 1e-6}
    assert weights_version("gan", state) == weights_version("gan", same) != weights_version("gan", other)
    version = weights_version("gan", state)
    mark = SyntheticMark.parse(f"{version}; seed=1; label=NORMAL")
    assert mark is not None and mark.version == version and len(version.split("-")[-1]) == 8


class _Unsaveable(torch.Tensor):
    """A tensor whose serialisation fails part-way through ``torch.save`` (a crash or a full disk mid-write)."""

    def __reduce_ex__(self, protocol: object) -> object:
        raise RuntimeError("disk full")


def test_a_save_that_fails_leaves_the_previous_checkpoint_whole(tmp_path: Path) -> None:
    state = {"w": torch.arange(4, dtype=torch.float32)}
    save_checkpoint(tmp_path, _meta(), state)
    broken = {"a": torch.zeros(3), "w": torch.ones(4).as_subclass(_Unsaveable)}
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tmp_path, _meta().model_copy(update={"threshold": 0.9}), broken)
    meta, loaded = load_checkpoint(tmp_path, expected="cnn")
    assert meta == _meta() and torch.equal(loaded["w"], state["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]  # no temporary file left


def committed_weights_or_skip(name: str) -> Path:
    from tests.models.conftest import committed_weights

    weights = committed_weights(name)
    if weights is None:
        pytest.skip(f"no committed {name} checkpoint")
    return weights


def _sequence_checkpoint(directory: Path, features: list[str]) -> Path:
    """A copy of the committed LSTM whose stored feature list is ``features``."""
    meta, state = load_checkpoint(committed_weights_or_skip("lstm"), expected="lstm")
    meta = meta.model_copy(update={"preprocessing": {**meta.preprocessing, "features": features}})
    save_checkpoint(directory, meta, state)
    return directory


def test_a_checkpoint_whose_features_are_not_its_schemas_is_refused(tmp_path: Path) -> None:
    """The network reads its inputs by position: a stored column list in another order (or another length) than
    the schema builds would be read as the wrong measurements, so loading it names the first difference."""
    from models.inference import SepsisPredictor
    from models.sequence import schema_of

    meta, _ = load_checkpoint(committed_weights_or_skip("lstm"), expected="lstm")
    columns = list(schema_of(meta.preprocessing).columns)
    reversed_ = _sequence_checkpoint(tmp_path / "reversed", columns[::-1])
    with pytest.raises(WeightsError, match=rf"from column 0 on \(the checkpoint has '{columns[-1]}', the schema "):
        load_checkpoint(reversed_, expected="lstm")
    with pytest.raises(WeightsError, match="input columns that differ"):
        SepsisPredictor("lstm", reversed_, device="cpu")
    shorter = _sequence_checkpoint(tmp_path / "shorter", columns[:-1])
    said = rf"from column {len(columns) - 1} on \(the checkpoint has no column, the schema '{columns[-1]}'\)"
    with pytest.raises(WeightsError, match=said):
        load_checkpoint(shorter, expected="lstm")
    same = _sequence_checkpoint(tmp_path / "same", columns)
    assert load_checkpoint(same, expected="lstm")[0].preprocessing["features"] == columns


@pytest.mark.parametrize("name", ["lstm", "transformer", "mortality-lstm", "mortality-transformer"])
def test_committed_sequence_checkpoints_without_a_head_load_as_linear(name: str) -> None:
    """The committed sequence checkpoints predate ``SequenceConfig.head``: read as a linear head, their tensors
    fit the network exactly (a strict load) and it predicts."""
    from models.inference import load_predictor
    from models.sequence import SequenceConfig, build_sequence_model

    weights = committed_weights_or_skip(name)
    meta, state = load_checkpoint(weights, expected=name)
    assert "head" not in meta.config and SequenceConfig.model_validate(meta.config).head == "linear"
    build_sequence_model(SequenceConfig.model_validate(meta.config)).load_state_dict(state, strict=True)
    predictor = load_predictor(name, weights, device="cpu", backend="torch-fp32")
    assert predictor.config.head == "linear" and predictor.threshold == meta.threshold


def test_a_trained_sequence_checkpoint_saves_its_head(tiny_lstm: Path) -> None:
    """A checkpoint says which head it has; it does not rely on the code's default."""
    meta, _ = load_checkpoint(tiny_lstm, expected="lstm")
    assert meta.config["head"] == "linear"
