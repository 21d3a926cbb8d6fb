"""Synthetic (marked) images in labelled folders: training and calibration leave them out and say so, an
evaluation refuses them. Detection is serving's: the image carries the ``MedLens-Synthetic`` chunk, in any form."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from models.config import DataPaths
from models.errors import MedLensInputError
from models.synthetic import marked_png
from models.synthetic_mark import BAND_CORRELATION, MARK_KEY, SyntheticMark, band_correlation
from models.xray_io import BAND_ONLY, labelled_images, load_xray_bytes, load_xray_file, marked_synthetic
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


def _reencoded(png: bytes, how: str) -> bytes:
    """A marked PNG as it travels without MedLens: re-saved as JPEG, resized, or cropped below its band."""
    image = Image.open(io.BytesIO(png)).convert("L")
    if how == "resize128":
        image = image.resize((128, 128), Image.Resampling.BICUBIC)
    elif how == "resize1024":
        image = image.resize((1024, 1024), Image.Resampling.BICUBIC)
    elif how == "cropped":
        image = image.crop((0, 40, image.width, image.height))
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=40 if how == "jpeg40" else 85)
    return out.getvalue()


@pytest.mark.parametrize("how", ["jpeg40", "resize128", "resize1024"])
def test_a_copy_that_lost_its_chunk_is_known_by_its_band(how: str, tmp_path: Path) -> None:
    """A generated image re-saved as JPEG or resized (a chat app, a screenshot of the image) has no text chunk,
    but its pixels still carry the SYNTHETIC band: the loader, and so serving and the CLIs, flag it."""
    png = marked_png(np.full((128, 128), 90, dtype=np.uint8), SyntheticMark("gan-test", 3, "NORMAL"))
    copy = _reencoded(png, how)
    image = load_xray_bytes(copy, "copy.jpeg")
    assert image.source_format == "jpeg" and image.synthetic_mark == BAND_ONLY
    assert band_correlation(image.pixels) >= BAND_CORRELATION
    (tmp_path / "copy.jpeg").write_bytes(copy)
    assert marked_synthetic(tmp_path / "copy.jpeg")


def test_a_copy_cropped_below_the_band_is_not_known(tmp_path: Path) -> None:
    """What the band cannot do: an image cropped below it reads as a radiograph (docs/gan.md says so)."""
    png = marked_png(np.full((128, 128), 90, dtype=np.uint8), SyntheticMark("gan-test", 3, "NORMAL"))
    assert load_xray_bytes(_reencoded(png, "cropped"), "cropped.jpeg").synthetic_mark is None


@pytest.mark.data
def test_real_radiographs_are_far_from_the_band(real_data: DataPaths) -> None:
    """Real films of the shared data, both classes: none comes near the band (3,000 measured at most 0.36)."""
    files = sorted(real_data.xray_train.glob("*/*.jpeg"))[::50]
    assert len(files) >= 50
    worst = max(band_correlation(load_xray_file(path).pixels) for path in files)
    assert worst < 0.5 < BAND_CORRELATION + 0.01
