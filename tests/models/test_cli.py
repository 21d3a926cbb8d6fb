"""Output formats of ``python -m models.predict`` and ``python -m models.evaluate``, exactly."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.checkpoint import load_checkpoint
from models.config import REPO_ROOT
from models.evaluate import main as evaluate_main
from models.inference import SepsisPredictor, XrayPredictor
from models.metrics import BinaryEvaluation
from models.predict import main as predict_main
from models.sepsis_io import load_labelled_dir, load_series_file
from models.xray_io import load_xray_file
from tests.models.conftest import committed_weights

ROUNDING = 1e-6  # the CLIs print six decimals
SAME = 1e-5  # CLI vs in-process probabilities (six printed decimals, batch composition)


def _label_agrees(prob: float, label: int, threshold: float) -> bool:
    """The label is ``prob >= threshold`` (undecidable from six printed decimals right at the threshold)."""
    return abs(prob - threshold) <= ROUNDING or label == int(prob >= threshold)


# ----------------------------------------------------------------------------------------------------------
# python -m models.predict cnn
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture()
def image_tree(tmp_path: Path, xray_folder: Path) -> tuple[Path, list[Path]]:
    """Images in nested folders, plus a text file and a broken PNG that must not become rows."""
    root = tmp_path / "images"
    (root / "sub" / "deeper").mkdir(parents=True)
    normal = sorted((xray_folder / "NORMAL").glob("*.png"))
    pneumonia = sorted((xray_folder / "PNEUMONIA").glob("*.png"))
    images = [root / "a.png", root / "sub" / "b.png", root / "sub" / "deeper" / "c.jpeg", root / "sub" / "d.PNG"]
    shutil.copy(normal[0], images[0])
    shutil.copy(pneumonia[0], images[1])
    Image.open(pneumonia[1]).save(images[2], format="JPEG")
    shutil.copy(normal[1], images[3])
    (root / "sub" / "notes.txt").write_text("not an image")
    (root / "sub" / "deeper" / "broken.png").write_bytes(pneumonia[2].read_bytes()[:100])
    return root, sorted(images)


CNN_HEADER = "path,probability,label,calibrated_probability,prediction_set,in_distribution,ood_score,ensemble_std"


def test_predict_cnn_csv(
    image_tree: tuple[Path, list[Path]],
    tiny_cnn_calibrated: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, images = image_tree
    weights = tiny_cnn_calibrated
    out = tmp_path / "results" / "preds.csv"
    # 1: a file was left out (the broken PNG), the others predicted
    assert predict_main(["cnn", "--input", str(root), "--output", str(out), "--weights", str(weights)]) == 1
    text = out.read_text()
    assert text.splitlines()[0] == CNN_HEADER
    rows = list(csv.reader(text.splitlines()[1:]))
    assert sorted(Path(r[0]) for r in rows) == images  # one row per readable image, recursively
    assert all(len(r) == 8 for r in rows)
    meta, _ = load_checkpoint(weights, expected="cnn")
    predictor = XrayPredictor(weights)
    decoded = [load_xray_file(Path(r[0])) for r in rows]
    expected = predictor.predict([im.pixels for im in decoded])
    assessed = predictor.assess(decoded)
    for row, reference, a in zip(rows, expected, assessed, strict=True):
        path, prob_text, label_text, calibrated_text, set_text, in_dist_text, ood_text, std_text = row
        prob, label = float(prob_text), int(label_text)
        for number in (prob_text, calibrated_text, ood_text):
            assert len(number.split(".")[1]) == 6, number
        assert 0.0 <= prob <= 1.0 and label in (0, 1)
        assert prob == pytest.approx(float(reference), abs=SAME), path
        assert _label_agrees(prob, label, meta.threshold), (path, prob, label, meta.threshold)
        assert float(calibrated_text) == pytest.approx(a.calibrated_probability, abs=SAME)
        assert set_text in ("NORMAL", "PNEUMONIA", "NORMAL|PNEUMONIA") and set_text.split("|") == a.prediction_set
        assert in_dist_text == str(int(a.in_distribution))
        assert float(ood_text) == pytest.approx(a.ood_score, rel=1e-4, abs=SAME)
        assert float(std_text) == 0.0  # one network: no spread (tests/models/test_ensemble.py has two)
    err = capsys.readouterr().err
    assert "broken.png" in err and "skipped" in err and "1 of 5 file(s) left out" in err


def test_predict_cnn_single_file(
    image_tree: tuple[Path, list[Path]], tiny_cnn_calibrated: Path, tmp_path: Path
) -> None:
    _, images = image_tree
    out = tmp_path / "one.csv"
    argv = ["cnn", "--input", str(images[0]), "--output", str(out), "--weights", str(tiny_cnn_calibrated)]
    assert predict_main(argv) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == CNN_HEADER and len(lines) == 2 and lines[1].startswith(f"{images[0]},")


def test_predict_cnn_uncalibrated_is_a_usage_error(
    image_tree: tuple[Path, list[Path]], tiny_cnn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = image_tree
    with pytest.raises(SystemExit) as info:
        predict_main(["cnn", "--input", str(root), "--output", str(tmp_path / "p.csv"), "--weights", str(tiny_cnn)])
    assert info.value.code == 2 and "models.calibrate cnn" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["torch-fp32", "onnxruntime", "auto"])
def test_predict_cnn_backends_agree(
    image_tree: tuple[Path, list[Path]],
    tiny_cnn_calibrated: Path,
    tmp_path: Path,
    backend: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--backend` picks the execution path; every path gives the same labels and nearly the same numbers."""
    root, images = image_tree
    tiny_cnn = tiny_cnn_calibrated
    out = tmp_path / f"{backend}.csv"
    argv = ["cnn", "--input", str(root), "--output", str(out), "--weights", str(tiny_cnn), "--backend", backend]
    assert predict_main(argv) == 1  # the broken PNG left out
    err = capsys.readouterr().err
    if backend != "auto":
        assert f"predictions on {backend}" in err
    rows = {r[0]: (float(r[1]), float(r[6])) for r in csv.reader(out.read_text().splitlines()[1:])}
    fp32 = XrayPredictor(tiny_cnn, backend="torch-fp32")
    reference = fp32.assess([load_xray_file(p) for p in images])
    for path, want in zip(images, reference, strict=True):
        prob, ood = rows[str(path)]
        assert prob == pytest.approx(want.probability, abs=0.02)
        # bf16 moves the tiny model's small scores by a few hundredths: within a tenth of its threshold
        assert fp32.trust is not None
        assert ood == pytest.approx(want.ood_score, abs=0.1 * fp32.trust.ood_threshold)


def test_predict_unknown_backend_is_a_usage_error(tmp_path: Path, tiny_cnn: Path) -> None:
    with pytest.raises(SystemExit) as info:
        predict_main(["cnn", "--input", str(tmp_path), "--output", str(tmp_path / "p.csv"), "--backend", "tensorrt"])
    assert info.value.code == 2


def test_predict_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        predict_main(["cnn", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "p.csv")])
    assert info.value.code == 2


# ----------------------------------------------------------------------------------------------------------
# python -m models.predict lstm (a real subprocess: proves the module entry point)
# ----------------------------------------------------------------------------------------------------------
def test_predict_sequence_dir_subprocess(psv_folder: Path, lstm_weights: Path, tmp_path: Path) -> None:
    source = tmp_path / "stays"
    source.mkdir()
    names = ["p0000.psv", "p0001.psv", "p0002.psv"]
    for name in names:
        shutil.copy(psv_folder / name, source / name)
    # an unlabelled stay with an impossible value: predicted (value dropped), warning on stderr
    lines = (psv_folder / "p0004.psv").read_text().splitlines()
    header = lines[0].split("|")[:-1]
    body = ["|".join(line.split("|")[:-1]) for line in lines[1:]]
    body[2] = "999" + body[2][body[2].index("|") :]  # HR = 999
    (source / "unlabelled.psv").write_text("\n".join(["|".join(header), *body]) + "\n")
    # a stay as a comma-separated file: predicted, its answer named as the challenge's files are
    (source / "as_csv.csv").write_text((psv_folder / "p0003.psv").read_text().replace("|", ","))
    names += ["unlabelled.psv", "as_csv.psv"]

    out = tmp_path / "out"
    command = [sys.executable, "-m", "models.predict", "lstm", "--input", str(source), "--output", str(out)]
    command += ["--threads", "1"]
    if committed_weights("lstm") is None:
        command += ["--weights", str(lstm_weights)]  # else: the committed default, as a user runs it
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "unlabelled.psv" in result.stderr and "HR = 999" in result.stderr

    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    predictor = SepsisPredictor("lstm", lstm_weights, device="cpu")
    header = ["PredictedProbability", "PredictedLabel"]  # the challenge's columns first (read by name)
    header += ["CalibratedProbability"] if predictor.trust is not None else []
    header += ["Spread", "MemberMin", "MemberMax"]  # every checkpoint here holds fold members
    for name in names:
        written = (out / name).read_text().splitlines()
        assert written[0] == "|".join(header)
        record = load_series_file(next(source.glob(f"{Path(name).stem}.*")), on_impossible="drop")
        assert len(written) - 1 == record.hours  # one row per input hour
        (expected,) = predictor.predict([record.values])
        (assessed,) = predictor.assess([record.values])
        for t, (line, reference) in enumerate(zip(written[1:], expected, strict=True)):
            row = dict(zip(header, line.split("|"), strict=True))
            prob, label = float(row["PredictedProbability"]), int(row["PredictedLabel"])
            assert 0.0 < prob < 1.0, line
            assert label in (0, 1) and _label_agrees(prob, label, predictor.threshold), line
            assert prob == pytest.approx(float(reference), abs=SAME)
            low, high, std = float(row["MemberMin"]), float(row["MemberMax"]), float(row["Spread"])
            assert low - 1e-6 <= prob <= high + 1e-6 and std >= 0, line
            assert assessed.member_std is not None and std == pytest.approx(float(assessed.member_std[t]), abs=SAME)
            if assessed.calibrated_probability is not None:
                calibrated = float(row["CalibratedProbability"])
                assert 0 <= calibrated <= 1 and calibrated == pytest.approx(
                    float(assessed.calibrated_probability[t]), abs=SAME
                )


# ----------------------------------------------------------------------------------------------------------
# python -m models.evaluate
# ----------------------------------------------------------------------------------------------------------
def test_evaluate_sequence_json(
    psv_folder: Path, tiny_lstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval" / "m.json"
    argv = ["lstm", "--data", str(psv_folder), "--weights", str(tiny_lstm), "--output", str(out)]
    assert evaluate_main(argv) == 0
    ev = BinaryEvaluation.model_validate_json(out.read_text())
    labels = np.concatenate([r.labels for r in load_labelled_dir(psv_folder) if r.labels is not None])
    assert ev.n == len(labels) and ev.n_positive == int(labels.sum())
    assert ev.utility is not None and np.isfinite(ev.utility) and ev.utility <= 1.0
    assert ev.threshold == load_checkpoint(tiny_lstm, expected="lstm")[0].threshold
    c = ev.confusion
    assert c.tp + c.fp + c.tn + c.fn == ev.n
    stdout = capsys.readouterr().out
    assert stdout.startswith("model lstm:") and f"normalised utility {ev.utility:.4f}" in stdout


def test_evaluate_cnn_json(
    xray_folder: Path, tiny_cnn_calibrated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cnn.json"
    argv = ["cnn", "--data", str(xray_folder), "--weights", str(tiny_cnn_calibrated), "--output", str(out)]
    assert evaluate_main(argv) == 0
    stdout = capsys.readouterr().out
    for text in ("conformal sets (alpha 0.1): coverage NORMAL", "mean set size NORMAL", "out of distribution"):
        assert text in stdout
    ev = BinaryEvaluation.model_validate_json(out.read_text())
    assert ev.n == 48 and ev.n_positive == 24 and ev.utility is None
    assert 0.0 <= ev.auroc <= 1.0


# ----------------------------------------------------------------------------------------------------------
# a run with files that cannot be read, or arguments that cannot work
# ----------------------------------------------------------------------------------------------------------
def test_predict_sequence_leaves_out_what_it_cannot_read_and_says_so(
    psv_folder: Path, tiny_lstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stay that cannot be read (a word where a number belongs, a folder named .psv) is named and left out;
    the others are predicted; exit status 1. Nothing readable: 2, and nothing written."""
    source = tmp_path / "stays"
    source.mkdir()
    shutil.copy(psv_folder / "p0000.psv", source / "a.psv")
    (source / "b.psv").write_text("HR|O2Sat\n80|abc\n")
    (source / "c.psv").mkdir()
    shutil.copy(psv_folder / "p0001.psv", source / "d.psv")
    out = tmp_path / "out"
    argv = ["lstm", "--input", str(source), "--output", str(out), "--weights", str(tiny_lstm)]
    assert predict_main(argv) == 1
    err = capsys.readouterr().err
    assert "skipped: b.psv: column O2Sat row 1 holds 'abc'" in err and "1 of 3 file(s) left out" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.psv", "d.psv"]
    for name in ("a.psv", "d.psv"):
        (source / name).unlink()
    empty_out = tmp_path / "none"
    assert predict_main([*argv[:3], "--output", str(empty_out), *argv[5:]]) == 2
    assert "none of the 1 input file(s) could be read" in capsys.readouterr().err and not empty_out.exists()


def test_predict_mortality_quotes_formulas_and_keeps_an_older_csv_when_nothing_is_read(
    mortality_folder: Path, tiny_mortality_lstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "records"
    source.mkdir()
    good = next(iter(sorted((mortality_folder / "set-a").glob("*.txt"))))
    lines = [line for line in good.read_text().splitlines() if ",RecordID," not in line]
    (source / '=HYPERLINK("http:x").txt').write_text("\n".join(lines) + "\n")  # named by its file: no RecordID
    (source / "bad.txt").write_text("Time,Parameter,Value\n00:00,HR,abc\n")
    out = tmp_path / "preds.csv"
    argv = ["mortality-lstm", "--input", str(source), "--output", str(out), "--weights", str(tiny_mortality_lstm)]
    assert predict_main(argv) == 1
    (row,) = list(csv.reader(out.read_text().splitlines()[1:]))
    assert row[0] == '\'=HYPERLINK("http:x")'  # a spreadsheet shows it as text, never runs it
    assert "bad.txt" in capsys.readouterr().err
    (source / '=HYPERLINK("http:x").txt').unlink()
    before = out.read_text()
    assert predict_main(argv) == 2
    assert out.read_text() == before  # nothing read: the older answers stay


def test_predict_refuses_outputs_that_cannot_work_before_predicting(
    psv_folder: Path, tiny_lstm: Path, tiny_cnn_calibrated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "stays"
    source.mkdir()
    shutil.copy(psv_folder / "p0000.psv", source / "a.psv")
    kept = (source / "a.psv").read_text()
    lstm = ["lstm", "--input", str(source), "--weights", str(tiny_lstm)]
    cases = [
        ([*lstm, "--output", str(source)], "is the input folder"),  # the answers would overwrite the records
        ([*lstm, "--output", str(source / "a.psv")], "is a file"),
        (
            ["cnn", "--input", str(source), "--output", str(tmp_path), "--weights", str(tiny_cnn_calibrated)],
            "is a folder",
        ),
        ([*lstm, "--output", str(tmp_path / "o"), "--batch-size", "0"], "must be 1 or more"),
        ([*lstm[:3], "--output", str(tmp_path / "o"), "--weights", str(tmp_path / "empty")], "No checkpoint at"),
        ([*lstm[:3], "--output", str(tmp_path / "o"), "--weights", str(tiny_cnn_calibrated)], "holds a cnn model"),
    ]
    for argv, said in cases:
        with pytest.raises(SystemExit) as info:
            predict_main(argv)
        assert info.value.code == 2 and said in capsys.readouterr().err, argv
    assert (source / "a.psv").read_text() == kept and not (tmp_path / "o").exists()


def test_predict_an_empty_folder_is_exit_status_2(
    tiny_lstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    argv = ["lstm", "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o"), "--weights", str(tiny_lstm)]
    assert predict_main(argv) == 2
    assert "no input file to predict" in capsys.readouterr().err


def test_evaluate_refuses_a_set_it_cannot_score_whole(
    xray_folder: Path, tiny_cnn_calibrated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One class only, or a file that cannot be read: no figure at all (error, status 2), never one of a set
    quietly smaller than asked."""
    one_class = tmp_path / "normal_only"
    shutil.copytree(xray_folder / "NORMAL", one_class / "NORMAL")
    argv = ["cnn", "--data", str(one_class), "--weights", str(tiny_cnn_calibrated)]
    assert evaluate_main(argv) == 2
    assert "none of them PNEUMONIA" in capsys.readouterr().err
    (one_class / "PNEUMONIA").mkdir()
    shutil.copy(next(iter(sorted((xray_folder / "PNEUMONIA").glob("*.png")))), one_class / "PNEUMONIA" / "a.png")
    (one_class / "PNEUMONIA" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nshort")
    assert evaluate_main(argv) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "every labelled file counts" in err
