"""What a model replica does, without Ray: per-item errors inside a batch, padded sequence batches,
explanations. Real weights (the serving defaults), real files."""

from __future__ import annotations

import base64
import io
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from models.catalogue import entry
from models.inference import MortalityPredictor, SepsisPredictor, XrayPredictor
from models.mortality_io import GLOSSARY as MORTALITY_GLOSSARY
from models.sepsis_io import FEATURES, SepsisRecord, load_series_file
from models.sequence import forward_fill
from models.xray_io import load_xray_file
from serving._inference import EventsRunner, ImageRunner, SeriesRunner, top_features
from serving._model_servers import generate_each
from serving._protocol import ItemError, Upload
from serving._settings import ServingArgs
from serving.schemas import MortalityPrediction, SepsisPrediction, XrayPrediction

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def weights() -> dict[str, Path]:
    dirs = {str(name): path for name, path in ServingArgs().weights_dirs().items()}
    missing = [str(p) for p in dirs.values() if not (p / "model.pt").is_file()]
    if missing:
        pytest.fail(f"missing checkpoints {missing}: train them or set MEDLENS_WEIGHTS_DIR")
    return dirs


@pytest.fixture(scope="module")
def xray_runner(weights: dict[str, Path]) -> ImageRunner:
    torch.set_num_threads(1)
    return ImageRunner(entry("cnn"), weights["cnn"], CPU)


@pytest.fixture(scope="module")
def lstm_runner(weights: dict[str, Path]) -> SeriesRunner:
    return SeriesRunner(entry("lstm"), weights["lstm"], CPU, explain_max_hours=50)


def dicom_without_pixels() -> bytes:
    """A valid DICOM file (a structured-report-like header) that holds no image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.88.11")  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.PatientName = "Doe^Jane"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# -- X-ray ----------------------------------------------------------------------------------------------------
def test_bad_items_do_not_fail_the_batch(
    xray_runner: ImageRunner, xray_pneumonia_path: Path, xray_normal_path: Path
) -> None:
    good = xray_pneumonia_path.read_bytes()
    uploads = [
        Upload(good, "upload.jpeg"),
        Upload(b"just some text\n", "upload"),
        Upload(b"", "upload.png"),
        Upload(xray_normal_path.read_bytes(), "upload.jpeg"),
        Upload(good[: len(good) // 3], "upload.jpeg"),
        Upload(dicom_without_pixels(), "upload.dcm"),
    ]
    results = xray_runner.predict_batch(uploads)
    assert len(results) == len(uploads)
    assert isinstance(results[0], XrayPrediction) and isinstance(results[3], XrayPrediction)
    for i, (status, kind) in {1: (415, "invalid_image"), 2: (415, "invalid_image"), 4: (415, "invalid_image"),
                              5: (422, "unsupported_dicom")}.items():  # fmt: skip
        err = results[i]
        assert isinstance(err, ItemError) and (err.status, err.error) == (status, kind), (i, err)
        assert "Doe" not in err.detail
    backend: Any = xray_runner.predictor.execution.backend
    direct = XrayPredictor(xray_runner.predictor.weights_dir, "cpu", backend=backend)
    for i, path in ((0, xray_pneumonia_path), (3, xray_normal_path)):
        expected = float(direct.predict([load_xray_file(path).pixels])[0])
        result = results[i]
        assert isinstance(result, XrayPrediction)
        assert result.probability == pytest.approx(expected, abs=1e-5)
        assert result.label == ("PNEUMONIA" if expected >= direct.threshold else "NORMAL")
        assert (result.image_width, result.image_height, result.source_format) == (224, 224, "jpeg")
        assert result.dicom is None and result.heatmap_png is None


def test_explain_heatmap_matches_the_image(xray_runner: ImageRunner, xray_fullres_path: Path) -> None:
    result = xray_runner.explain_one(Upload(xray_fullres_path.read_bytes(), "upload.jpeg"))
    assert isinstance(result, XrayPrediction) and result.heatmap_png is not None
    heat = Image.open(io.BytesIO(base64.b64decode(result.heatmap_png)))
    assert heat.format == "PNG" and heat.mode == "L"
    # the image as the model read it: the upload's, area-reduced to at most 1024 px a side (the preview's size)
    assert heat.size == load_xray_file(xray_fullres_path).pixels.shape[::-1]
    assert max(heat.size) == min(1024, max(result.image_width, result.image_height)) > 224  # not the model's input
    ratio = (heat.size[0] / heat.size[1]) / (result.image_width / result.image_height)
    assert ratio == pytest.approx(1, abs=0.01)
    assert np.asarray(heat).max() == 255  # normalised to [0, 1] before 8-bit


def test_preview_is_the_image_the_model_read(xray_runner: ImageRunner, dicom_path: Path) -> None:
    """The dashboard draws ``preview_png`` instead of decoding uploads itself: it must be exactly serving's
    decode (DICOM windowing, MONOCHROME1 inverted), area-downsampled to at most 1024 px a side."""
    data = dicom_path.read_bytes()
    (plain, with_preview) = xray_runner.predict_batch(
        [Upload(data, "upload.dcm"), Upload(data, "upload.dcm", frozenset({"preview"}))]
    )
    assert isinstance(plain, XrayPrediction) and plain.preview_png is None
    assert isinstance(with_preview, XrayPrediction) and with_preview.preview_png is not None
    preview = np.asarray(Image.open(io.BytesIO(base64.b64decode(with_preview.preview_png))), dtype=np.float32) / 255
    pixels = load_xray_file(dicom_path).pixels  # (1955, 1841) MONOCHROME1, inverted to display
    assert max(preview.shape) == 1024
    assert preview.shape[0] / preview.shape[1] == pytest.approx(pixels.shape[0] / pixels.shape[1], abs=0.01)
    expected = np.asarray(
        Image.fromarray(pixels, mode="F").resize(preview.shape[::-1], Image.Resampling.BOX), dtype=np.float32
    )
    assert np.abs(preview - expected).max() <= 1 / 255 + 1e-6  # 8-bit rounding only
    assert with_preview.probability == pytest.approx(plain.probability)


def test_dicom_fields_are_deidentified(xray_runner: ImageRunner, dicom_path: Path) -> None:
    (result,) = xray_runner.predict_batch([Upload(dicom_path.read_bytes(), "upload.dcm")])
    assert isinstance(result, XrayPrediction) and result.source_format == "dicom"
    assert result.dicom is not None and result.dicom["Modality"] == "CR"
    assert not any(key.startswith(("Patient", "Institution", "Referring")) for key in result.dicom)


def _large_jpeg(side: int) -> bytes:
    """A smooth (side, side) grey JPEG with noise: decodes to side * side float32 pixels."""
    rows, cols = np.mgrid[0:side, 0:side].astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 8, (side, side))
    pixels = (127 + 60 * np.sin(cols / 300) * np.cos(rows / 200) + noise).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_a_batch_keeps_no_full_size_image_until_it_is_answered(xray_runner: ImageRunner) -> None:
    """Each upload's decoded pixels go as soon as its model input (the network's input size) and what its answer
    needs of it exist: a batch of six large images peaks near one image's cost, not six (measured by tracemalloc,
    which sees numpy's arrays). The decoded images were all kept until the batch was answered: six cost six."""
    data = _large_jpeg(2500)
    decoded = xray_runner.predictor.decode(data, "upload.jpeg").pixels.nbytes  # one image as the batch decodes it
    peaks = {}
    for n in (1, 6):
        uploads = [Upload(data, "upload.jpeg") for _ in range(n)]
        tracemalloc.start()
        try:
            results = xray_runner.predict_batch(uploads)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(results) == n and all(isinstance(r, XrayPrediction) for r in results)
    assert peaks[6] < peaks[1] + decoded, {n: f"{peak / 2**20:.1f} MiB" for n, peak in peaks.items()} | {
        "decoded": f"{decoded / 2**20:.1f} MiB"
    }


def test_the_model_reads_a_large_image_as_the_predictor_does(xray_runner: ImageRunner, xray_fullres_path: Path) -> None:
    """The batch hands the predictor each image already at the network's input size (models/cnn.py resize_gray,
    which leaves an image of that size as it is): the same answer as the predictor given the decoded image (kept at
    most 1024 px a side, models.xray_io.KEPT_SIDE) and resizing it itself."""
    (result,) = xray_runner.predict_batch([Upload(xray_fullres_path.read_bytes(), "upload.jpeg")])
    assert isinstance(result, XrayPrediction)
    image = load_xray_file(xray_fullres_path)
    assert max(image.size) > 224 and (result.image_height, result.image_width) == image.size
    predictor = xray_runner.predictor
    assert isinstance(predictor, XrayPredictor)
    (expected,) = predictor.assess([image])
    assert result.probability == pytest.approx(expected.probability, abs=1e-7)
    assert result.calibrated_probability == pytest.approx(expected.calibrated_probability, abs=1e-7)
    assert result.ood_score == pytest.approx(expected.ood_score, rel=1e-6)


# -- one item failing after it was decoded ---------------------------------------------------------------------
class _OneHourStaysFail(SeriesRunner):
    """The real LSTM runner, with a failure injected after decoding: a stay of exactly one hour fails in the step
    ``fails_in`` names (what a bug that one input trips would do). Everything else is the runner's own code."""

    fails_in = "_respond"

    def _model_input(self, item: SepsisRecord) -> np.ndarray:
        if self.fails_in == "_model_input" and item.hours == 1:
            raise RuntimeError("injected")
        return super()._model_input(item)

    def _respond(self, item: Any, output: Any, explanation: np.ndarray | None, include: frozenset[str]) -> Any:
        if self.fails_in == "_respond" and item.hours == 1:
            raise RuntimeError("injected")
        return super()._respond(item, output, explanation, include)


@pytest.fixture(scope="module")
def failing_runner(weights: dict[str, Path]) -> _OneHourStaysFail:
    return _OneHourStaysFail(entry("lstm"), weights["lstm"], CPU, explain_max_hours=50)


@pytest.mark.parametrize("fails_in", ["_model_input", "_respond"])
def test_an_item_failing_after_decoding_fails_alone(
    failing_runner: _OneHourStaysFail, psv_paths: list[Path], fails_in: str
) -> None:
    """Decoding and the forward pass were isolated per item, but taking the model input and making the answer
    were not: one item failing there failed every request of its batch."""
    failing_runner.fails_in = fails_in
    one_hour = Upload(b"HR|Temp\n80|37\n", "upload.psv")
    uploads = [Upload(p.read_bytes(), "upload.psv") for p in psv_paths[:3]]
    uploads.insert(1, one_hour)
    results = failing_runner.predict_batch(uploads)
    failed = results.pop(1)
    assert isinstance(failed, ItemError) and (failed.status, failed.error) == (500, "model_error")
    assert "RuntimeError" in failed.detail and "injected" not in failed.detail
    for path, result in zip(psv_paths[:3], results, strict=True):
        assert isinstance(result, SepsisPrediction) and result.n_hours == load_series_file(path, min_hours=2).hours
    assert failing_runner.healthy  # the model itself did not fail
    explained = failing_runner.explain_one(one_hour)  # the explanation's own path answers the same way
    assert isinstance(explained, ItemError) and (explained.status, explained.error) == (500, "model_error")


def test_a_generated_image_failing_fails_alone(weights: dict[str, Path]) -> None:
    """The synthetic-image replica's batch (``SyntheticImageServer.generate``) with the real generator: a request
    it refuses is that request's error, the others get their images (the same bytes as alone)."""
    from models.catalogue import generator_entry

    gan = generator_entry("gan")
    generator = gan.load(ServingArgs().weights_dir(gan.name))
    out = generate_each(generator, [("NORMAL", 1), ("EFFUSION", 2), ("PNEUMONIA", 3)], gan.name)
    assert len(out) == 3
    refused = out[1]
    assert isinstance(refused, ItemError) and refused.status == 422 and "EFFUSION" in refused.detail
    assert out[0] == generator.png("NORMAL", 1) and out[2] == generator.png("PNEUMONIA", 3)


# -- sepsis sequences -------------------------------------------------------------------------------------------
def test_padded_batch_matches_single_records(lstm_runner: SeriesRunner, psv_paths: list[Path]) -> None:
    uploads = [Upload(p.read_bytes(), "upload.psv") for p in psv_paths]
    uploads.insert(3, Upload(b"HR|Temp\n", "upload.psv"))  # no row at all: refused, alone
    uploads.insert(5, Upload(b"HR|Temp\n80|37\n", "upload.psv"))  # one row: scored in the same batch
    results = lstm_runner.predict_batch(uploads)
    one = results.pop(5)
    bad = results.pop(3)
    assert isinstance(bad, ItemError) and bad.status == 422 and "at least 1" in bad.detail
    assert isinstance(one, SepsisPrediction) and one.n_hours == 1 and 0 < one.hours[0].probability < 1
    lengths = set()
    runs_on = lstm_runner.predictor.execution
    direct = SepsisPredictor("lstm", lstm_runner.predictor.weights_dir, "cpu", backend=runs_on.backend)  # type: ignore[arg-type]
    atol = 1e-4 if runs_on.precision == "fp32" else 5e-3  # bf16 rounds differently with the batch's shape
    for path, result in zip(psv_paths, results, strict=True):
        assert isinstance(result, SepsisPrediction)
        record = load_series_file(path, min_hours=2)
        (expected,) = direct.predict([record.values])
        got = np.array([h.probability for h in result.hours])
        assert result.n_hours == record.hours == len(got)
        np.testing.assert_allclose(got, expected, atol=atol)
        alerts = np.flatnonzero(expected >= direct.threshold)
        assert result.first_alert_hour == (int(alerts[0]) if alerts.size else None)
        assert [h.label for h in result.hours] == [int(p >= direct.threshold) for p in expected]
        lengths.add(record.hours)
    assert len(lengths) > 1, "the batch should mix stays of different lengths"


def test_each_hour_carries_its_calibrated_risk_and_the_members_spread(
    lstm_runner: SeriesRunner, psv_paths: list[Path]
) -> None:
    """Calibrated risk and spread from the same batched pass, as the predictor's own assessment says."""
    results = lstm_runner.predict_batch([Upload(p.read_bytes(), "upload.psv") for p in psv_paths])
    predictor = lstm_runner.predictor
    assert isinstance(predictor, SepsisPredictor)
    for path, result in zip(psv_paths, results, strict=True):
        assert isinstance(result, SepsisPrediction) and result.ensemble_members == predictor.members
        (expected,) = predictor.assess([load_series_file(path, min_hours=2).values])
        for t, hour in enumerate(result.hours):
            assert hour.ensemble_std is not None and hour.member_min is not None and hour.member_max is not None
            assert hour.ensemble_std >= 0 and hour.member_min <= hour.probability <= hour.member_max
            assert hour.calibrated_probability is not None and 0 <= hour.calibrated_probability <= 1
            assert expected.member_std is not None and expected.calibrated_probability is not None
            assert hour.ensemble_std == pytest.approx(float(expected.member_std[t]), abs=1e-3)
            assert hour.calibrated_probability == pytest.approx(float(expected.calibrated_probability[t]), abs=1e-3)


def test_vitals_are_the_values_the_model_read(lstm_runner: SeriesRunner, psv_path: Path) -> None:
    """The dashboard plots ``vitals`` instead of parsing uploads itself: they are serving's parse."""
    (result,) = lstm_runner.predict_batch([Upload(psv_path.read_bytes(), "upload.psv", frozenset({"vitals"}))])
    assert isinstance(result, SepsisPrediction) and result.vitals is not None
    record = load_series_file(psv_path, min_hours=2)
    assert list(result.vitals) == ["HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2"]
    for name, values in result.vitals.items():
        column = record.values[:, FEATURES.index(name)]
        assert len(values) == record.hours
        assert [v is None for v in values] == list(np.isnan(column))
        np.testing.assert_allclose([v for v in values if v is not None], column[~np.isnan(column)], rtol=1e-6)
    assert record.labels is not None and result.sepsis_label == [int(v) for v in record.labels]
    (plain,) = lstm_runner.predict_batch([Upload(psv_path.read_bytes(), "upload.psv")])
    assert isinstance(plain, SepsisPrediction) and plain.vitals is None and plain.sepsis_label is None


def test_explain_top_features(lstm_runner: SeriesRunner, psv_path: Path) -> None:
    data = psv_path.read_bytes()
    record = load_series_file(psv_path, min_hours=2)
    if record.hours > 50:  # the fixture's explain limit
        pytest.skip("first stay longer than this test's explain limit")
    result = lstm_runner.explain_one(Upload(data, "upload.psv"))
    assert isinstance(result, SepsisPrediction) and result.n_hours == record.hours
    filled = forward_fill(record.values)
    for hour in result.hours:
        assert hour.top_features is not None and len(hour.top_features) == 5
        magnitudes = [abs(f.attribution) for f in hour.top_features]
        assert magnitudes == sorted(magnitudes, reverse=True)
        for f in hour.top_features:
            expected = filled[hour.hour, FEATURES.index(f.feature)]
            assert (f.value is None) == bool(np.isnan(expected))
            if f.value is not None:
                assert f.value == pytest.approx(float(expected))


def test_explain_refuses_very_long_stays(lstm_runner: SeriesRunner) -> None:
    rows = "\n".join(f"{80 + i % 5}|37" for i in range(60))
    upload = Upload(f"HR|Temp\n{rows}\n".encode(), "upload.psv")
    result = lstm_runner.explain_one(upload)
    assert isinstance(result, ItemError) and result.status == 413
    assert "60 hourly rows" in result.detail and "without explain" in result.detail and "explain_hour" in result.detail
    assert isinstance(lstm_runner.predict_batch([upload])[0], SepsisPrediction)  # no limit without explain


def test_one_hour_is_explained_as_the_whole_stay_explains_it(lstm_runner: SeriesRunner, psv_path: Path) -> None:
    """``explain_hour`` attributes that hour alone, from the rows up to it (the models are causal): the same top
    features as when every hour is explained, the other hours none, and the same risks as without explain."""
    data = psv_path.read_bytes()
    record = load_series_file(psv_path, min_hours=2)
    if record.hours > 50:  # the fixture's explain limit, for the whole stay's explanation
        pytest.skip("first stay longer than this test's explain limit")
    whole = lstm_runner.explain_one(Upload(data, "upload.psv"))
    assert isinstance(whole, SepsisPrediction)
    for hour in (0, record.hours // 2, record.hours - 1):
        one = lstm_runner.explain_one(Upload(data, "upload.psv", explain_hour=hour))
        assert isinstance(one, SepsisPrediction)
        assert [h.hour for h in one.hours if h.top_features] == [hour]
        expected, got = whole.hours[hour].top_features or [], one.hours[hour].top_features or []
        assert [f.feature for f in got] == [f.feature for f in expected]
        np.testing.assert_allclose(
            [f.attribution for f in got], [f.attribution for f in expected], rtol=1e-3, atol=1e-5
        )
        assert [h.probability for h in one.hours] == [h.probability for h in whole.hours]


def test_one_hour_of_a_stay_too_long_to_explain_whole(lstm_runner: SeriesRunner) -> None:
    """A stay past explain_max_hours is explained an hour at a time; an hour it does not have is a 422."""
    rows = "\n".join(f"{80 + i % 5}|37" for i in range(60))
    upload = f"HR|Temp\n{rows}\n".encode()
    last = lstm_runner.explain_one(Upload(upload, "upload.psv", explain_hour=59))
    assert isinstance(last, SepsisPrediction) and last.hours[59].top_features and not last.hours[58].top_features
    beyond = lstm_runner.explain_one(Upload(upload, "upload.psv", explain_hour=60))
    assert isinstance(beyond, ItemError) and beyond.status == 422
    assert "60 hourly rows (0 to 59)" in beyond.detail


def test_forward_fill_and_top_features() -> None:
    values = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, np.nan]])  # (hours=3, F=2)
    np.testing.assert_array_equal(forward_fill(values), [[np.nan, 1.0], [2.0, 1.0], [2.0, 1.0]])
    attribution = np.zeros(len(FEATURES))
    attribution[[0, 1, 2]] = [0.1, -0.5, 0.3]
    last = np.full(len(FEATURES), np.nan)
    last[1] = 98.0
    top = top_features(attribution, last, k=3)
    assert [f.feature for f in top] == [FEATURES[1], FEATURES[2], FEATURES[0]]
    assert top[0].value == 98.0 and top[1].value is None
    # each in a reader's words (the sepsis glossary by default): O2Sat 98 %, Temp never measured
    assert [(f.name, f.unit, f.value_text) for f in top[:2]] == [("O2Sat", "%", "98 %"), ("Temp", "°C", "not measured")]


# -- trust: calibrated probability, prediction set, out-of-distribution evidence ------------------------------
def test_every_xray_answer_says_how_far_to_trust_it(xray_runner: ImageRunner, xray_pneumonia_path: Path) -> None:
    from pydicom.data import get_testdata_file

    ct = Path(str(get_testdata_file("CT_small.dcm")))  # a CT slice: not a chest radiograph
    radiograph, other = xray_runner.predict_batch(
        [Upload(xray_pneumonia_path.read_bytes(), "upload.jpeg"), Upload(ct.read_bytes(), "upload.dcm")]
    )
    assert isinstance(radiograph, XrayPrediction) and isinstance(other, XrayPrediction)
    assert radiograph.in_distribution is True and radiograph.ood_reason is None
    assert radiograph.prediction_set and set(radiograph.prediction_set) <= {"NORMAL", "PNEUMONIA"}
    assert radiograph.calibrated_probability is not None and 0.0 <= radiograph.calibrated_probability <= 1.0
    assert other.in_distribution is False and other.ood_reason and "CT" in other.ood_reason
    assert other.ood_score is not None and radiograph.ood_score is not None
    # the explanation path (torch fp32 copy) answers with the same evidence
    explained = xray_runner.explain_one(Upload(ct.read_bytes(), "upload.dcm"))
    assert isinstance(explained, XrayPrediction) and explained.in_distribution is False
    assert explained.heatmap_png is not None


# -- ICU records (mortality) ---------------------------------------------------------------------------------
_RECORD = (
    "Time,Parameter,Value\n00:00,RecordID,555111\n00:00,Age,58\n00:00,Gender,1\n00:00,ICUType,3\n"
    "00:20,HR,{hr}\n00:20,MAP,70\n05:00,Lactate,{lactate}\n30:00,HR,99\n47:30,GCS,{gcs}\n"
)


def _record(hr: int, lactate: float, gcs: int) -> bytes:
    return _RECORD.format(hr=hr, lactate=lactate, gcs=gcs).encode()


@pytest.fixture(scope="module")
def mortality_runner(weights: dict[str, Path]) -> EventsRunner:
    return EventsRunner(entry("mortality-lstm"), weights["mortality-lstm"], CPU)


def test_a_batch_of_records_matches_each_record_alone(mortality_runner: EventsRunner) -> None:
    """Bad records become their own errors; the others get what the predictor gives each alone (the 48th hour's
    risk is the stay's), in upload order."""
    records = [_record(80, 1.2, 15), _record(130, 6.5, 6), _record(95, 2.0, 12)]
    uploads = [Upload(r, "upload.txt") for r in records]
    uploads.insert(1, Upload(b"Time,Parameter,Value\n00:10,HR,900\n", "upload.txt"))
    results = mortality_runner.predict_batch(uploads)
    bad = results.pop(1)
    assert isinstance(bad, ItemError) and bad.status == 422 and "HR = 900" in bad.detail
    predictor = mortality_runner.predictor
    assert isinstance(predictor, MortalityPredictor)
    direct = MortalityPredictor("mortality-lstm", predictor.weights_dir, "cpu", backend=predictor.execution.backend)  # type: ignore[arg-type]
    atol = 1e-4 if predictor.execution.precision == "fp32" else 5e-3
    for data, result in zip(records, results, strict=True):
        assert isinstance(result, MortalityPrediction)
        values = direct.model_values(direct.decode(data, "upload.txt"))
        hourly = direct.predict([values])[0]
        assert result.probability == pytest.approx(hourly[-1], abs=atol)  # the stay's: the 48th hour
        np.testing.assert_allclose([h.probability for h in result.hours], hourly, atol=atol)
        assert (result.age, result.gender, result.icu_type, result.hours_observed) == (58.0, "male", "Medical", 4)
        assert "555111" not in result.model_dump_json()
    assert len({round(r.probability, 4) for r in results if isinstance(r, MortalityPrediction)}) == 3


def test_an_explained_record_names_the_variables_of_the_48th_hour(mortality_runner: EventsRunner) -> None:
    result = mortality_runner.explain_one(Upload(_record(130, 6.5, 6), "upload.txt"))
    assert isinstance(result, MortalityPrediction) and result.top_features
    predictor = mortality_runner.predictor
    assert isinstance(predictor, MortalityPredictor)
    values = predictor.model_values(predictor.decode(_record(130, 6.5, 6), "upload.txt"))
    attribution = mortality_runner.explainer.explain(values)[-1]  # the 48th hour's, summed over the hours
    expected = top_features(
        attribution,
        predictor.explained_values(values)[-1],
        names=predictor.schema.explained_columns,
        glossary=MORTALITY_GLOSSARY,
    )
    assert [f.feature for f in result.top_features] == [f.feature for f in expected]
    assert [f.value for f in result.top_features] == [f.value for f in expected]
    assert [(f.name, f.value_text) for f in result.top_features] == [(f.name, f.value_text) for f in expected]
    hr = next((f for f in result.top_features if f.feature == "HR"), None)
    assert hr is None or hr.value == 99.0  # the last HR of the 48 hours, not the first


@pytest.mark.filterwarnings("ignore:.*bf16 is not native:RuntimeWarning")
def test_the_explain_toggle_does_not_change_the_risk_shown() -> None:
    """An explained answer carries the predictor's risk, not the fp32 explainer's: on a bf16 predictor the two
    differ (by about 1e-3), which once moved a shown risk across a display boundary and could flip a label."""
    weights = ServingArgs().weights_dirs()
    runner = EventsRunner(entry("mortality-transformer"), weights["mortality-transformer"], CPU, backend="torch-bf16")
    assert runner.predictor.execution.precision == "bf16"
    upload = Upload(_record(130, 6.5, 6), "upload.txt")
    (plain,) = runner.predict_batch([upload])
    explained = runner.explain_one(upload)
    assert isinstance(plain, MortalityPrediction) and isinstance(explained, MortalityPrediction)
    assert explained.top_features and plain.top_features is None
    assert explained.probability == plain.probability and explained.label == plain.label
    assert [h.probability for h in explained.hours] == [h.probability for h in plain.hours]


def test_a_sepsis_record_sent_to_a_mortality_model_is_pointed_to_the_sepsis_routes(
    mortality_runner: EventsRunner,
) -> None:
    psv = b"HR|O2Sat|Temp|ICULOS|SepsisLabel\n80|97|37|1|0\n"
    result = mortality_runner.decode(Upload(psv, "upload"))
    assert isinstance(result, ItemError) and result.status == 422
    assert "PhysioNet 2019" in result.detail and "/v1/sepsis/lstm/predict" in result.detail


def test_a_checkpoint_with_derived_ratios_names_each_attributed_variable(tmp_path: Path) -> None:
    """A sepsis-v2 checkpoint (shock index, BUN/creatinine and SpO2/FiO2 beside the 40 columns) is explained by
    name: every attributed variable, the ratios included, with its own last value. The runner allocated the 40
    columns alone and named them from the record's 40, which a ratio's attribution overran."""
    from models.train import main
    from tests.models.conftest import synthetic_stay, write_psv

    rng = np.random.default_rng(5)
    data = tmp_path / "psv"
    data.mkdir()
    for i in range(18):
        values, labels = synthetic_stay(rng, int(rng.integers(14, 30)), septic=i % 3 == 0)
        write_psv(data / f"p{i:04d}.psv", values, labels)
    out = tmp_path / "lstm-v2"
    argv = ["lstm", "--data", str(data), "--out", str(out), "--epochs", "1", "--threads", "1", "--folds", "2"]
    assert main([*argv, "--batch-size", "8", "--schema", "sepsis-v2"]) == 0
    runner = SeriesRunner(entry("lstm"), out, CPU)
    predictor = runner.predictor
    assert isinstance(predictor, SepsisPredictor)
    explained = predictor.schema.explained_columns
    assert len(explained) > len(FEATURES)  # the schema's ratios are attributed as variables of their own
    stay = (data / "p0000.psv").read_bytes()
    result = runner.explain_one(Upload(stay, "a.psv"))
    assert isinstance(result, SepsisPrediction)
    shown = {f.feature for h in result.hours for f in h.top_features or []}
    assert shown and shown <= set(explained)
    hour = runner.explain_one(Upload(stay, "a.psv", explain_hour=3))
    assert isinstance(hour, SepsisPrediction) and hour.hours[3].top_features
