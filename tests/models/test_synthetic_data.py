"""Synthetic (marked) images in labelled folders: training and calibration leave them out and say so, an
evaluation refuses them. Detection is serving's: the image carries the ``MedLens-Synthetic`` chunk, in any form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from models.errors import MedLensInputError
from models.synthetic import marked_png
from models.synthetic_mark import MARK_KEY, SyntheticMark
from models.xray_io import labelled_images, load_xray_file, marked_synthetic
from tests.models.conftest import synthetic_xray


def write_marked_png(path: Path, mark: str | None = None) -> Path:
    """A generated image as ``models.generate`` writes it (band and ``MedLens-Synthetic`` chunk); ``mark``: a chunk
    in another form instead, as an upload could carry (serving flags both as synthetic)."""
    pixels = np.full((64, 64), 90, dtype=np.uint8)
    if mark is None:
        path.write_bytes(marked_png(pixels, SyntheticMark("gan-test", 7, "PNEUMONIA")))
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text(MARK_KEY, mark)
        Image.fromarray(pixels).save(path, format="PNG", pnginfo=info)
    return path


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> tuple[Path, list[Path], list[Path]]:
    """(root, its real images, its marked ones) in the ``<root>/<CLASS>/*`` layout."""
    rng = np.random.default_rng(11)
    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_path / cls).mkdir()
    real = [tmp_path / "NORMAL" / "IM-0001-0001.png", tmp_path / "NORMAL" / "IM-0002-0001.jpeg"]
    real.append(tmp_path / "PNEUMONIA" / "person1_bacteria_1.png")
    for path in real:
        Image.fromarray(synthetic_xray(rng, "PNEUMONIA" in str(path))).save(path)
    # a PNG with another text chunk is not marked
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "a scanner")
    real.append(tmp_path / "PNEUMONIA" / "person2_virus_2.png")
    Image.fromarray(synthetic_xray(rng, True)).save(real[-1], pnginfo=info)
    marked = [
        write_marked_png(tmp_path / "NORMAL" / "synthetic-NORMAL-seed0.png"),
        write_marked_png(tmp_path / "PNEUMONIA" / "upload.png", mark="not in MedLens's form"),
        write_marked_png(tmp_path / "PNEUMONIA" / "named-as.jpeg"),  # PNG bytes: read by content, as serving does
    ]
    return tmp_path, sorted(real), sorted(marked)


def test_detection_is_servings(mixed_folder: tuple[Path, list[Path], list[Path]]) -> None:
    _, real, marked = mixed_folder
    for path in [*real, *marked]:
        assert marked_synthetic(path) == (path in marked) == (load_xray_file(path).synthetic_mark is not None), path


def test_training_and_calibration_leave_synthetic_images_out_and_say_so(
    mixed_folder: tuple[Path, list[Path], list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, real, marked = mixed_folder
    items = labelled_images(root)
    assert sorted(path for path, _ in items) == real
    assert all(label == int(path.parent.name == "PNEUMONIA") for path, label in items)
    err = capsys.readouterr().err
    assert f"left out {len(marked)} synthetic image(s) under {root}" in err
    assert all(str(path) in err for path in marked), err
    for path in real:  # nothing but synthetic images: no labelled set at all
        path.unlink()
    with pytest.raises(FileNotFoundError, match="No images found"):
        labelled_images(root)


def test_an_evaluation_refuses_synthetic_images_and_names_them(
    mixed_folder: tuple[Path, list[Path], list[Path]],
) -> None:
    root, _, marked = mixed_folder
    with pytest.raises(MedLensInputError, match=f"{len(marked)} synthetic image") as info:
        labelled_images(root, refuse_synthetic=True)
    assert all(str(path) in info.value.message for path in marked)
    for path in marked:
        path.unlink()
    assert len(labelled_images(root, refuse_synthetic=True)) == 4
