"""Fixtures of the models tests: generated inputs and tiny checkpoints trained through the real CLI.

Everything here is session-scoped and written under ``tmp_path_factory``, so each tiny model is
trained once per session:

* ``xray_folder``: ``NORMAL/`` and ``PNEUMONIA/`` with 24 generated 64x64 PNGs each (a pneumonia
  image carries a bright blob in a lung field);
* ``psv_folder``: 30 generated PhysioNet-style stays (41 columns, a third of them septic);
* ``mortality_folder``: a PhysioNet 2012 layout (set-a/, set-b/, Outcomes-a.txt, Outcomes-b.txt) of 48
  generated stays, a quarter of them dying (higher heart rate and lactate, lower GCS and pressure);
* ``tiny_cnn`` / ``tiny_lstm`` / ``tiny_transformer`` / ``tiny_mortality_lstm``: ``python -m models.train``
  run in-process (``models.train.main``) on those folders: one epoch (2 folds) for the sequence models, six short
  epochs on 40 images for the CNN (seconds; after one epoch its Grad-CAM is still empty);
* ``cnn_weights`` / ``lstm_weights`` / ``transformer_weights``: the committed checkpoint at
  ``models/weights/<name>`` when one is there, else the tiny one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.catalogue import entry
from models.checkpoint import CHECKPOINT_FILE
from models.config import DataPaths, data_paths
from models.sepsis_io import FEATURES, LABEL

N_IMAGES_PER_CLASS = 24
IMAGE_SIDE = 64
N_STAYS = 30
#: CPU threads for every torch computation of these tests: the machine is shared, and several
#: OpenMP threads per process on oversubscribed cores spin instead of working.
TORCH_THREADS = 1


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    yield
    torch.set_num_threads(previous)


# ----------------------------------------------------------------------------------------------------------
# real data (skipped with a reason when absent)
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def real_data() -> DataPaths:
    paths = data_paths()
    if not paths.root.is_dir():
        pytest.skip(f"real data not found at {paths.root}: set MEDLENS_DATA_DIR (default ../shared/data)")
    return paths


# ----------------------------------------------------------------------------------------------------------
# generated chest X-rays
# ----------------------------------------------------------------------------------------------------------
def synthetic_xray(rng: np.random.Generator, pneumonia: bool, side: int = IMAGE_SIDE) -> np.ndarray:
    """(side, side) uint8: bright body with two dark lung fields; pneumonia adds a bright blob in a lung."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    img = 0.75 + 0.04 * rng.standard_normal((side, side))
    for cx in (0.3, 0.7):
        lung = ((xx - cx) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1.0
        img[lung] = 0.25 + 0.04 * rng.standard_normal(int(lung.sum()))
    if pneumonia:
        cx = rng.choice([0.3, 0.7]) + rng.uniform(-0.04, 0.04)
        cy = rng.uniform(0.4, 0.6)
        blob = ((xx - cx) / 0.1) ** 2 + ((yy - cy) / 0.12) ** 2 < 1.0
        img[blob] = 0.95
    return np.clip(img * 255.0, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def xray_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/NORMAL`` (IM-NNNN-0001.png) and ``<root>/PNEUMONIA`` (personN_bacteria_M.png), 24 each."""
    root = tmp_path_factory.mktemp("xray")
    rng = np.random.default_rng(7)
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir()
        for i in range(N_IMAGES_PER_CLASS):
            name = f"IM-{i:04d}-0001.png" if cls == "NORMAL" else f"person{i}_bacteria_{100 + i}.png"
            Image.fromarray(synthetic_xray(rng, cls == "PNEUMONIA")).save(root / cls / name)
    return root


# ----------------------------------------------------------------------------------------------------------
# generated ICU stays
# ----------------------------------------------------------------------------------------------------------
def float32_steps(prob: np.ndarray, steps: int) -> np.ndarray:
    """``prob`` rounded to float32, then ``steps`` float32 units in the last place up (> 0) or down (< 0): what a
    float32 forward pass may return for a score computed in float64 at training."""
    out = prob.astype(np.float32)
    for _ in range(abs(steps)):
        out = np.nextafter(out, np.float32(np.sign(steps) * np.inf))
    return out


def synthetic_stay(rng: np.random.Generator, hours: int, septic: bool) -> tuple[np.ndarray, np.ndarray]:
    """(hours, 40) raw values in FEATURES order (NaN = not measured) and (hours,) SepsisLabel."""
    values = np.full((hours, len(FEATURES)), np.nan)
    col = {name: i for i, name in enumerate(FEATURES)}
    t = np.arange(hours)
    onset = hours - 8 if septic else hours + 100
    ramp = np.clip((t - onset + 12) / 12.0, 0.0, 1.0)  # deteriorates over the 12 h before onset
    vitals = {
        "HR": (80 + 35 * ramp, 5),
        "O2Sat": (97 - 5 * ramp, 1),
        "Temp": (36.9 + 1.8 * ramp, 0.2),
        "SBP": (125 - 30 * ramp, 6),
        "MAP": (85 - 20 * ramp, 5),
        "DBP": (65 - 12 * ramp, 4),
        "Resp": (16 + 10 * ramp, 2),
    }
    for name, (mean, sd) in vitals.items():
        series = mean + sd * rng.standard_normal(hours)
        series[rng.random(hours) < 0.15] = np.nan  # some hours unmeasured
        values[:, col[name]] = series
    for name, level, spread in (("Lactate", 1.2, 0.3), ("WBC", 9.0, 2.0), ("Creatinine", 1.0, 0.2)):
        rows = t[:: int(rng.integers(6, 12))]  # a lab every 6 to 11 hours
        values[rows, col[name]] = level * (1 + ramp[rows]) + spread * rng.standard_normal(len(rows))
    values[:, col["Age"]] = rng.integers(25, 90)
    values[:, col["Gender"]] = rng.integers(0, 2)
    values[:, col["Unit1"]] = 1.0
    values[:, col["Unit2"]] = 0.0
    values[:, col["HospAdmTime"]] = -rng.uniform(0, 50)
    values[:, col["ICULOS"]] = t + 1
    labels = (t >= onset - 6).astype(np.int64)  # PhysioNet 2019: label shifted 6 h earlier
    return values, labels


def write_psv(path: Path, values: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Write a PhysioNet 2019 ``.psv`` (``|`` separated, ``NaN`` for missing)."""
    header = [*FEATURES, *([LABEL] if labels is not None else [])]
    lines = ["|".join(header)]
    for h in range(values.shape[0]):
        cells = ["NaN" if np.isnan(v) else f"{v:.4g}" for v in values[h]]
        if labels is not None:
            cells.append(str(int(labels[h])))
        lines.append("|".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def psv_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 labelled stays ``p0000.psv`` ... (12 to 40 hours; every third stay becomes septic)."""
    root = tmp_path_factory.mktemp("psv")
    rng = np.random.default_rng(11)
    for i in range(N_STAYS):
        values, labels = synthetic_stay(rng, int(rng.integers(12, 41)), septic=i % 3 == 0)
        write_psv(root / f"p{i:04d}.psv", values, labels)
    return root


N_MORTALITY_STAYS = 48


def mortality_record_text(rng: np.random.Generator, record_id: int, died: bool) -> str:
    """A PhysioNet 2012 record: descriptors at 00:00, then hourly vitals and a few labs over 48 hours."""
    rows = [
        "Time,Parameter,Value",
        f"00:00,RecordID,{record_id}",
        f"00:00,Age,{int(rng.integers(30, 90))}",
        f"00:00,Gender,{int(rng.integers(0, 2))}",
        "00:00,Height,-1",
        f"00:00,ICUType,{int(rng.integers(1, 5))}",
        f"00:00,Weight,{rng.uniform(50, 110):.1f}",
    ]
    shift = 1.0 if died else 0.0
    for hour in range(48):
        t = f"{hour:02d}:{int(rng.integers(0, 60)):02d}"
        rows += [
            f"{t},HR,{rng.normal(85 + 20 * shift, 8):.0f}",
            f"{t},MAP,{rng.normal(80 - 12 * shift, 6):.0f}",
            f"{t},SysABP,{rng.normal(120 - 15 * shift, 8):.0f}",
        ]
        if hour % 4 == 0:
            rows.append(f"{t},GCS,{int(np.clip(rng.normal(13 - 4 * shift, 1.5), 3, 15))}")
        if hour % 12 == 3:
            rows += [f"{t},Lactate,{rng.gamma(2.0, 0.8 + 1.2 * shift):.1f}", f"{t},BUN,{rng.normal(25, 6):.0f}"]
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="session")
def mortality_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sets a (36 stays) and b (12 stays) with their outcome files; every fourth stay dies in hospital."""
    root = tmp_path_factory.mktemp("mortality2012")
    rng = np.random.default_rng(12)
    outcomes = {"a": ["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"], "b": []}
    outcomes["b"].append(outcomes["a"][0])
    for i in range(N_MORTALITY_STAYS):
        part = "a" if i < 36 else "b"
        folder = root / f"set-{part}"
        folder.mkdir(exist_ok=True)
        record_id, died = 140000 + i, i % 4 == 0
        (folder / f"{record_id}.txt").write_text(mortality_record_text(rng, record_id, died))
        outcomes[part].append(f"{record_id},10,5,9,-1,{int(died)}")
    for part, lines in outcomes.items():
        (root / f"Outcomes-{part}.txt").write_text("\n".join(lines) + "\n")
    return root


# ----------------------------------------------------------------------------------------------------------
# tiny checkpoints, trained once per session through the real CLI
# ----------------------------------------------------------------------------------------------------------
def _train(model: str, data: Path, out: Path, *extra: str, epochs: int = 1) -> Path:
    from models.train import main

    argv = [model, "--data", str(data), "--out", str(out), "--epochs", str(epochs), "--threads", str(TORCH_THREADS)]
    code = main([*argv, *extra])
    assert code == 0, f"models.train {model} exited with {code}"
    return out


@pytest.fixture(scope="session")
def tiny_cnn(tmp_path_factory: pytest.TempPathFactory, xray_folder: Path) -> Path:
    out = tmp_path_factory.mktemp("weights") / "cnn"
    # Six short epochs (a few seconds): one epoch leaves a near-constant network whose Grad-CAM is empty.
    return _train("cnn", xray_folder, out, "--limit", "40", "--batch-size", "12", epochs=6)


@pytest.fixture(scope="session")
def tiny_lstm(tmp_path_factory: pytest.TempPathFactory, psv_folder: Path) -> Path:
    out = tmp_path_factory.mktemp("weights") / "lstm"
    return _train("lstm", psv_folder, out, "--folds", "2", "--batch-size", "8")


@pytest.fixture(scope="session")
def tiny_transformer(tmp_path_factory: pytest.TempPathFactory, psv_folder: Path) -> Path:
    out = tmp_path_factory.mktemp("weights") / "transformer"
    return _train("transformer", psv_folder, out, "--folds", "2", "--batch-size", "8")


@pytest.fixture(scope="session")
def tiny_mortality_lstm(tmp_path_factory: pytest.TempPathFactory, mortality_folder: Path) -> Path:
    out = tmp_path_factory.mktemp("weights") / "mortality-lstm"
    return _train("mortality-lstm", mortality_folder, out, "--folds", "2", "--batch-size", "8", epochs=3)


@pytest.fixture(scope="session")
def tiny_gan(tmp_path_factory: pytest.TempPathFactory, xray_folder: Path) -> Path:
    """``python -m models.train gan`` for 3 steps of 4 images (a second): a generator of noise, with a card."""
    out = tmp_path_factory.mktemp("weights") / "gan"
    return _train("gan", xray_folder, out, "--steps", "3", "--batch-size", "4", "--standing-batches", "1")


def committed_weights(name: str) -> Path | None:
    """``models/weights/<name>`` when it holds a checkpoint, else None."""
    directory = entry(name).default_weights
    return directory if (directory / CHECKPOINT_FILE).is_file() else None


@pytest.fixture(scope="session")
def cnn_weights(request: pytest.FixtureRequest) -> Path:
    return committed_weights("cnn") or request.getfixturevalue("tiny_cnn")


@pytest.fixture(scope="session")
def lstm_weights(request: pytest.FixtureRequest) -> Path:
    return committed_weights("lstm") or request.getfixturevalue("tiny_lstm")


@pytest.fixture(scope="session")
def transformer_weights(request: pytest.FixtureRequest) -> Path:
    return committed_weights("transformer") or request.getfixturevalue("tiny_transformer")


@pytest.fixture(scope="session")
def tiny_cnn_calibrated(tmp_path_factory: pytest.TempPathFactory, tiny_cnn: Path, xray_folder: Path) -> Path:
    """A copy of ``tiny_cnn`` after ``python -m models.calibrate cnn`` (run in-process) on ``xray_folder``."""
    import shutil

    from models.calibrate import main

    out = tmp_path_factory.mktemp("weights") / "cnn-calibrated"
    shutil.copytree(tiny_cnn, out)
    argv = ["cnn", "--weights", str(out), "--data", str(xray_folder), "--threads", str(TORCH_THREADS)]
    assert main(argv) == 0
    return out
