"""Out-of-distribution evidence of the CNN (models/ood.py), on real non-chest-radiograph DICOMs from
pydicom-data, generated images, real chest radiographs, and the DICOM header rules."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from models.cnn import CnnConfig, PneumoniaCNN, to_tensor
from models.config import DataPaths
from models.inference import XrayPredictor
from models.ood import (
    OodHead,
    TrustedCNN,
    fit_mahalanobis,
    header_reason,
    mahalanobis_score,
    pass_threshold,
)
from models.ood_probes import generated_images, pydicom_images
from models.train_cnn import VAL_FRACTION, patient_split
from models.xray_io import labelled_images, load_xray_file
from tests.models.conftest import committed_weights

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's odd test files


@pytest.fixture(scope="module")
def predictor() -> XrayPredictor:
    weights = committed_weights("cnn")
    if weights is None:
        pytest.skip("no committed CNN checkpoint in models/weights/cnn")
    p = XrayPredictor(weights, device="cpu")  # the execution path `auto` chooses here
    if p.trust is None:
        pytest.skip("the committed CNN checkpoint is not calibrated: run python -m models.calibrate cnn")
    return p


@pytest.fixture(scope="module")
def probes() -> tuple[list, list, list]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chest, dicoms = pydicom_images()
    return chest, dicoms, generated_images(0)


# -- header evidence --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"Modality": "CT"}, "Modality is CT"),
        ({"Modality": "mr", "BodyPartExamined": "CHEST"}, "Modality is MR"),
        ({"Modality": "CR", "BodyPartExamined": "EXTREMITY"}, "BodyPartExamined is EXTREMITY"),
        ({"BodyPartExamined": "HEAD"}, "BodyPartExamined is HEAD"),
        ({"Modality": "DX", "NumberOfFrames": "3"}, "3 frames"),
        ({"Modality": "CR", "BodyPartExamined": "CHEST"}, None),
        ({"Modality": "DX"}, None),  # no body part: no evidence either way
        ({"NumberOfFrames": "1"}, None),
        ({"NumberOfFrames": "\u00b3"}, None),  # '³' is a digit to str.isdigit, not to int(): no evidence, no crash
        ({}, None),  # PNG / JPEG: no header
    ],
)
def test_header_evidence(fields: dict[str, str], reason: str | None) -> None:
    got = header_reason(fields)
    assert (got is None) if reason is None else (got is not None and reason in got)


def test_header_evidence_of_real_dicoms(probes: tuple[list, list, list]) -> None:
    chest, dicoms, _ = probes
    assert chest and all(header_reason(p.image.dicom_fields) is None for p in chest)  # CR, CHEST
    flagged = [p.name for p in dicoms if header_reason(p.image.dicom_fields)]
    assert "RG3_UNCR.dcm" in flagged and "MR2_UNCR.dcm" in flagged and "US1_UNCR.dcm" in flagged
    # the loader keeps no identifier: the header evidence reads only the allow-listed fields
    assert all("PatientName" not in p.image.dicom_fields and "PatientID" not in p.image.dicom_fields for p in dicoms)


# -- the scores on synthetic features ---------------------------------------------------------------------------
def test_mahalanobis_is_about_one_in_distribution_and_large_outside() -> None:
    rng = np.random.default_rng(0)
    cov = np.diag(np.linspace(0.1, 3.0, 16))
    y = rng.integers(0, 2, 4000)
    means = np.stack([np.zeros(16), np.full(16, 2.0)])
    x = rng.multivariate_normal(np.zeros(16), cov, 4000) + means[y]
    fit = fit_mahalanobis(x, y)
    fresh = rng.multivariate_normal(np.zeros(16), cov, 1000) + means[rng.integers(0, 2, 1000)]
    assert 0.85 < float(np.median(mahalanobis_score(fresh, fit))) < 1.05  # chi2(16)/16 median ~ 0.96
    far = rng.multivariate_normal(np.full(16, -3.0), cov, 200)
    assert np.all(mahalanobis_score(far, fit) > pass_threshold(mahalanobis_score(fresh, fit), 0.97))
    # the graph's head computes the same numbers in float32
    head = OodHead.from_fit(fit)
    np.testing.assert_allclose(head(torch.from_numpy(far).float()).numpy(), mahalanobis_score(far, fit), rtol=1e-4)


def test_pass_threshold_lets_the_designed_share_pass() -> None:
    scores = np.random.default_rng(1).random(775)
    thr = pass_threshold(scores, 0.97)
    assert np.mean(scores <= thr) >= 0.97 and np.mean(scores < thr) < 0.97


def test_trusted_graph_outputs_the_logit_unchanged() -> None:
    torch.manual_seed(0)
    cnn = PneumoniaCNN(CnnConfig(image_size=64)).eval()
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        pooled = cnn.pooled(x).numpy()
        fit = fit_mahalanobis(np.random.default_rng(2).normal(size=(300, pooled.shape[1])))
        out = TrustedCNN(cnn, "mahalanobis", OodHead.from_fit(fit)).eval()(x).numpy()  # (3, 2)
        np.testing.assert_allclose(out[:, 0], cnn(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[:, 1], mahalanobis_score(pooled, fit), rtol=1e-4)


# -- the committed, calibrated CNN on real images ------------------------------------------------------------
def test_non_chest_radiograph_dicoms_are_flagged(predictor: XrayPredictor, probes: tuple[list, list, list]) -> None:
    """Every pydicom-data DICOM the loader decodes that is not a chest radiograph (CT, MR, US, NM, secondary
    captures, an extremity CR): >= 95 % flagged by the image score alone, and with the header."""
    _, dicoms, _ = probes
    assert len(dicoms) >= 50
    results = predictor.assess([p.image for p in dicoms])
    assert predictor.trust is not None
    by_pixels = np.mean([r.ood_score > predictor.trust.ood_threshold for r in results])
    assert by_pixels >= 0.95, by_pixels
    assert np.mean([not r.in_distribution for r in results]) >= 0.95
    assert all(r.ood_reason for r in results if not r.in_distribution)
    ct = next(r for p, r in zip(dicoms, results, strict=True) if p.name == "693_UNCR.dcm")
    assert not ct.in_distribution and ct.ood_reason is not None and "Modality is CT" in ct.ood_reason


def test_generated_non_radiographs_are_flagged(predictor: XrayPredictor, probes: tuple[list, list, list]) -> None:
    """Photo-like scenes and textures, noise (8 and 16 bit), gradients, text pages, blank and RGBA images."""
    _, _, generated = probes
    results = predictor.assess([p.image for p in generated])
    flagged = [p.kind for p, r in zip(generated, results, strict=True) if not r.in_distribution]
    passed = [p.name for p, r in zip(generated, results, strict=True) if r.in_distribution]
    assert len(flagged) >= 0.95 * len(generated), passed
    assert {"text page", "blank", "rgba", "noise"} <= set(flagged)


def test_training_and_validation_radiographs_pass_at_the_designed_rate(
    predictor: XrayPredictor, real_data: DataPaths
) -> None:
    """Validation patients (where the threshold was set: >= 97 % in fp32) and training radiographs, on the
    execution path `auto` chose; a sample of 300 each, so the bound allows sampling error."""
    items = labelled_images(real_data.xray_train)
    paths = [p for p, _ in items]
    val = patient_split(paths, np.array([y for _, y in items]), VAL_FRACTION, 0)
    for mask, floor in ((val, 0.94), (~val, 0.95)):
        chosen = np.flatnonzero(mask)[:: max(1, int(mask.sum()) // 300)]
        results = predictor.assess([load_xray_file(paths[i]) for i in chosen])
        rate = np.mean([r.in_distribution for r in results])
        assert rate >= floor, (rate, int(mask.sum()))


@pytest.mark.xfail(
    strict=True,
    reason="RG1_UNCR.dcm is an adult chest CR from another scanner (1955 x 1841, not squashed): its feature "
    "score is 2.9, twice the threshold set on the pediatric validation patients (1.42); the card lists adult "
    "films as out of distribution. Kept as a known result: this test starts passing (and fails as XPASS) when a "
    "detector lets it through.",
)
def test_the_pydicom_chest_radiograph_passes(predictor: XrayPredictor) -> None:
    from pydicom.data import get_testdata_file

    (result,) = predictor.assess([load_xray_file(Path(str(get_testdata_file("RG1_UNCR.dcm"))))])
    assert result.in_distribution


def test_the_pydicom_chest_radiograph_has_no_header_evidence_against_it(predictor: XrayPredictor) -> None:
    from pydicom.data import get_testdata_file

    image = load_xray_file(Path(str(get_testdata_file("RG1_UNCR.dcm"))))
    (result,) = predictor.assess([image])
    assert header_reason(image.dicom_fields) is None
    assert result.ood_reason is None or "DICOM" not in result.ood_reason
    # the bare pixels give the same score as the decoded image: header evidence is the only difference
    (bare,) = predictor.assess([image.pixels])
    assert bare.ood_score == pytest.approx(result.ood_score, rel=1e-5)
    assert to_tensor([image.pixels], predictor.config).shape == (1, 1, 192, 192)
