"""The conditional GAN (models/gan.py), its training (models/train_gan.py through ``python -m models.train gan``),
the marked synthetic images (models/synthetic.py), ``python -m models.generate`` and the evaluation's
statistics (models/gan_eval.py). Quality of the committed generator: its card, from ``models.evaluate gan``."""

from __future__ import annotations

import errno
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from models.catalogue import MAX_SEED, generator_entry
from models.checkpoint import CARD_JSON, CARD_MD, CHECKPOINT_FILE
from models.errors import MedLensInputError, WeightsError
from models.gan import ConditionalBatchNorm, Discriminator, GanConfig, Generator
from models.gan_eval import frechet_distance, precision_recall
from models.synthetic import OUTPUT_SIZE, SyntheticMark, SyntheticXrayGenerator, burn_band
from models.train_gan import diff_augment, standing_statistics, train_gan
from models.xray_io import load_xray_bytes

# -- networks ---------------------------------------------------------------------------------------------


def test_generator_and_discriminator_shapes() -> None:
    config = GanConfig()
    g, d = Generator(config), Discriminator(config)
    z, y = torch.randn(3, config.z_dim), torch.tensor([0, 1, 1])
    x = g(z, y)
    assert x.shape == (3, 1, 128, 128) and float(x.detach().abs().max()) <= 1.0
    assert d(x, y).shape == (3,)


def test_a_config_that_does_not_reach_its_image_size_is_refused() -> None:
    with pytest.raises(ValueError, match="not image_size"):
        Generator(GanConfig(image_size=64))


def test_the_class_changes_the_image() -> None:
    torch.manual_seed(0)
    g = Generator(GanConfig())
    with torch.no_grad():
        for bn in (m for m in g.modules() if isinstance(m, ConditionalBatchNorm)):
            bn.gain.weight.normal_(1.0, 0.5)  # conditional gains that differ by class (a trained generator's)
        g.eval()
        z = torch.randn(1, 128).repeat(2, 1)
        x = g(z, torch.tensor([0, 1]))
    assert float((x[0] - x[1]).abs().mean()) > 1e-3


def test_differentiable_augmentation_keeps_shape_range_and_gradient() -> None:
    x = (torch.rand(4, 1, 128, 128) * 2 - 1).requires_grad_(True)
    out = diff_augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # a quarter-side square is cut out of each image (set to black)
    assert all(int((img == -1.0).sum()) >= 32 * 32 for img in out.detach())


def test_standing_statistics_leave_eval_mode_with_fresh_statistics() -> None:
    g = Generator(GanConfig())
    standing_statistics(g, 128, 2, batches=1, batch=4)
    assert not g.training
    bn = next(m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.num_batches_tracked is not None and bn.running_var is not None
    assert int(bn.num_batches_tracked) == 1 and float(bn.running_var.mean()) != 1.0


def test_training_resumes_from_its_state(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 128, 128), dtype=np.uint8)
    labels = np.array([0, 1] * 4)
    kwargs = {"config": GanConfig(), "batch_size": 2, "seed": 0, "lr_g": 2e-4, "lr_d": 2e-4, "precision": "fp32"}
    first = train_gan(images, labels, tmp_path, steps=1, **kwargs)  # type: ignore[arg-type]
    assert first.steps == 1 and (tmp_path / "state.pt").is_file()
    second = train_gan(images, labels, tmp_path, steps=2, **kwargs)  # type: ignore[arg-type]
    assert second.steps == 2
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["step"] == 2 and state["ema_start"] == 0
    # the weight average warms up: after two steps it is mostly the trained weights, not the initial ones
    torch.manual_seed(0)
    initial = Generator(GanConfig()).state_dict()  # the same seed as the run: its initial weights
    key = "fc.weight"
    trained, averaged = state["g"][key], state["ema"][key]
    assert (averaged - trained).norm() < 0.5 * (initial[key] - trained).norm()


def _half_then_a_full_disk(real_save: Any, when: Callable[[Path], bool]) -> Callable[..., None]:
    """``torch.save`` that, for a target ``when`` accepts, writes the first half of its bytes and then fails as a
    full disk does (a crash mid-write leaves the same half file); other targets are saved whole."""

    def save(obj: object, target: str | Path, *args: Any, **kwargs: Any) -> None:
        if not when(Path(target)):
            real_save(obj, target, *args, **kwargs)
            return
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        Path(target).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    return save


def test_a_state_save_that_fails_midway_leaves_the_previous_state_to_resume_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """state.pt was saved in place: a save that stopped midway left half a file, and the run could not resume."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 128, 128), dtype=np.uint8)
    labels = np.array([0, 1] * 4)
    kwargs = {"config": GanConfig(), "batch_size": 2, "seed": 0, "lr_g": 2e-4, "lr_d": 2e-4, "precision": "fp32"}
    train_gan(images, labels, tmp_path, steps=1, **kwargs)  # type: ignore[arg-type]
    before = (tmp_path / "state.pt").read_bytes()
    monkeypatch.setattr(torch, "save", _half_then_a_full_disk(torch.save, lambda target: True))
    with pytest.raises(OSError, match="No space left"):
        train_gan(images, labels, tmp_path, steps=2, **kwargs)  # type: ignore[arg-type]
    monkeypatch.undo()
    assert (tmp_path / "state.pt").read_bytes() == before
    assert int(torch.load(tmp_path / "state.pt", weights_only=True)["step"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples", "state.pt"]  # no temporary left


# -- the CLI's checkpoint and card ------------------------------------------------------------------------


def test_train_cli_writes_checkpoint_card_and_samples(tiny_gan: Path) -> None:
    assert (tiny_gan / CHECKPOINT_FILE).is_file() and (tiny_gan / "samples" / "final.png").is_file()
    card = json.loads((tiny_gan / CARD_JSON).read_text())
    assert card["name"] == "gan" and card["steps"] == 3 and card["command"].startswith("python -m models.train")
    assert card["evaluation"] is None
    text = (tiny_gan / CARD_MD).read_text()
    assert "SYNTHETIC" in text and "Not measured yet" in text


def test_a_checkpoint_save_that_fails_midway_leaves_the_previous_checkpoint_whole(
    tiny_gan: Path, xray_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model.pt was saved in place: a save that stopped midway left half a checkpoint where a whole one had been."""
    from models.train import main as train_main

    out = tmp_path / "gan"
    shutil.copytree(tiny_gan, out)  # its state.pt is at step 3: the run below resumes there and trains no step
    before = (out / CHECKPOINT_FILE).read_bytes()
    save = _half_then_a_full_disk(torch.save, lambda target: CHECKPOINT_FILE in target.name)
    monkeypatch.setattr(torch, "save", save)
    argv = ["gan", "--data", str(xray_folder), "--out", str(out), "--steps", "3", "--batch-size", "4"]
    with pytest.raises(OSError, match="No space left"):
        train_main([*argv, "--standing-batches", "1", "--threads", "1"])
    monkeypatch.undo()
    assert (out / CHECKPOINT_FILE).read_bytes() == before
    assert SyntheticXrayGenerator(out).version == json.loads((out / CARD_JSON).read_text())["version"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_missing_or_damaged_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"models\.train gan"):
        SyntheticXrayGenerator(tmp_path)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="retrain it"):
        SyntheticXrayGenerator(tmp_path)


# -- marked images ----------------------------------------------------------------------------------------


def test_every_image_is_marked_in_pixels_and_png_chunk(tiny_gan: Path) -> None:
    gen = SyntheticXrayGenerator(tiny_gan)
    png = gen.png("PNEUMONIA", seed=7)
    image = Image.open(io.BytesIO(png))
    assert image.size == (OUTPUT_SIZE, OUTPUT_SIZE) and image.mode == "L"
    mark = SyntheticMark.parse(image.info["MedLens-Synthetic"])
    assert mark == SyntheticMark(gen.version, 7, "PNEUMONIA")
    # the band: the top rows are black but for the white lettering of SYNTHETIC
    band = np.asarray(image)[: OUTPUT_SIZE // 9]
    assert np.mean(band == 0) > 0.6 and band.max() == 255
    # MedLens's loader reads the mark back
    loaded = load_xray_bytes(png, "upload.png")
    assert loaded.synthetic_mark == mark.text()


def test_the_band_is_burned_whatever_the_image() -> None:
    white = np.full((256, 256), 255, dtype=np.uint8)
    banded = burn_band(white)
    assert banded[:10].mean() < 128 and (banded[40:] == 255).all()


def test_the_same_seed_gives_the_same_image_alone_or_in_a_batch(tiny_gan: Path) -> None:
    gen = SyntheticXrayGenerator(tiny_gan)
    # the PNGs users get are exact: each made on its own, whatever batch serving gathered
    assert gen.pngs(["PNEUMONIA", "NORMAL"], [3, 11])[1] == gen.png("NORMAL", 11) == gen.png("NORMAL", 11)
    # raw batches (the evaluation's) may differ in the last bit of a convolution: one grey level at most
    alone = gen.raw(["NORMAL"], [11]).astype(int)
    batch = gen.raw(["PNEUMONIA", "NORMAL", "NORMAL"], [3, 11, 12]).astype(int)
    assert np.abs(alone[0] - batch[1]).max() <= 1
    assert not np.array_equal(batch[1], batch[2])


def test_unknown_labels_and_seeds_out_of_range_are_refused(tiny_gan: Path) -> None:
    gen = SyntheticXrayGenerator(tiny_gan)
    with pytest.raises(MedLensInputError, match="NORMAL, PNEUMONIA"):
        gen.png("EFFUSION", 0)
    with pytest.raises(MedLensInputError, match="out of range"):
        gen.png("NORMAL", MAX_SEED + 1)
    with pytest.raises(MedLensInputError, match="out of range"):
        gen.png("NORMAL", -1)


@pytest.mark.parametrize(
    "text",
    [
        "gan-20261204; seed=1; label=NORMAL; patient=Doe^John",
        "gan-20261204; seed=99999999999999999999; label=NORMAL",
        "<script>alert(1)</script>",
        "",
    ],
)
def test_a_mark_not_in_medlens_form_is_not_parsed(text: str) -> None:
    assert SyntheticMark.parse(text) is None


def test_a_real_image_has_no_mark() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(buf, format="PNG")
    assert load_xray_bytes(buf.getvalue(), "x.png").synthetic_mark is None


# -- python -m models.generate ----------------------------------------------------------------------------


def test_generate_cli_writes_marked_pngs(tiny_gan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models.generate import main

    out = tmp_path / "synthetic"
    assert main(["--label", "NORMAL", "--n", "3", "--seed", "5", "--out", str(out), "--weights", str(tiny_gan)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"synthetic-NORMAL-seed{s}.png" for s in (5, 6, 7)]
    for seed in (5, 6, 7):
        image = Image.open(out / f"synthetic-NORMAL-seed{seed}.png")
        assert SyntheticMark.parse(image.info["MedLens-Synthetic"]).seed == seed  # type: ignore[union-attr]
    assert "wrote 3 synthetic NORMAL" in capsys.readouterr().out


def test_generate_cli_refuses_bad_arguments(tiny_gan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models.generate import main

    assert main(["--label", "EFFUSION", "--out", str(tmp_path), "--weights", str(tiny_gan)]) == 2
    assert "choose one of NORMAL, PNEUMONIA" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--label", "NORMAL", "--n", "0", "--out", str(tmp_path)])


def test_the_committed_generator_fits_its_budget() -> None:
    weights = generator_entry("gan").default_weights
    if not (weights / CHECKPOINT_FILE).is_file():
        pytest.fail("models/weights/gan/model.pt is missing: the committed generator must ship")
    assert (weights / CHECKPOINT_FILE).stat().st_size <= 15e6
    card = json.loads((weights / CARD_JSON).read_text())
    assert card["training_seconds"] <= 90 * 60 and card["evaluation"] is not None


# -- the evaluation's statistics --------------------------------------------------------------------------


def test_frechet_distance_of_gaussians() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([2.0, 0.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(4.0, rel=1e-6)  # |mu difference|^2, same covariance
    wide = rng.normal(scale=2.0, size=(4000, 3))
    # trace(S1 + S2 - 2 sqrt(S1 S2)) = 3 * (1 + 4 - 4) = 3 for unit against scale-2 Gaussians
    assert frechet_distance(a, wide) == pytest.approx(3.0, rel=0.1)


def test_precision_and_recall_of_the_same_and_of_disjoint_sets() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(300, 4))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    far = real + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    # a generator collapsed onto one real image: faithful (precision 1) but covering nothing else (recall ~0)
    collapsed = real[:1] + rng.normal(scale=1e-3, size=(300, 4))
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall <= 2 / 300
