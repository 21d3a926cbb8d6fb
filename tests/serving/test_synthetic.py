"""``POST /v1/synthetic/xray`` of a real Ray Serve application (CPU): a marked synthetic radiograph from a
deployment that scales from zero, the same image for the same seed, and a synthetic image flagged as such
wherever it goes next (a prediction, a case, the worklist, reader agreement)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image, PngImagePlugin

from models.synthetic import SyntheticMark
from serving.client import MedLensClient, ServingError
from serving.schemas import ReviewIn, WorklistQuery

pytestmark = [pytest.mark.serve, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def client(serving_url: str) -> Iterator[MedLensClient]:
    with MedLensClient(serving_url, timeout=120.0, retry_s=60.0) as c:
        yield c


def test_a_synthetic_radiograph_is_marked_and_reproducible(client: MedLensClient) -> None:
    # the deployment starts at zero replicas: the first request waits for one
    first = client.synthetic_xray("PNEUMONIA", seed=12)
    mark = first.mark
    assert (mark.seed, mark.label) == (12, "PNEUMONIA") and mark.version.startswith("gan-")
    image = Image.open(io.BytesIO(first.png))
    assert image.format == "PNG" and image.size == (256, 256)
    assert SyntheticMark.parse(image.info["MedLens-Synthetic"]) == mark  # the header says what the PNG says
    assert client.synthetic_xray("PNEUMONIA", seed=12).png == first.png  # same seed, same bytes
    assert client.synthetic_xray("PNEUMONIA", seed=13).png != first.png
    normal = client.synthetic_xray("NORMAL")  # no seed: a random one, said in the mark
    assert normal.mark.label == "NORMAL" and 0 <= normal.mark.seed < 2**31


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("label=EFFUSION&seed=1", "label"),
        ("seed=1", "label"),
        ("label=NORMAL&seed=-1", "seed"),
        ("label=NORMAL&seed=99999999999999999999", "seed"),
        ("label=NORMAL&seed=abc", "seed"),
    ],
)
def test_bad_requests_are_refused_with_what_to_fix(serving_url: str, query: str, problem: str) -> None:
    response = httpx.post(f"{serving_url}/v1/synthetic/xray?{query}", timeout=60)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request" and problem in body["detail"]


def test_a_synthetic_image_is_flagged_in_predictions_cases_and_agreement(client: MedLensClient) -> None:
    image = client.synthetic_xray("PNEUMONIA", seed=41)
    prediction = client.predict_xray(image.png, "s.png")
    assert prediction.synthetic and prediction.synthetic_mark == image.mark.text()
    made = client.upload_cases([("s.png", image.png)])
    case = made.cases[0]
    assert case.synthetic
    listed = {c.id: c for c in client.worklist(WorklistQuery(status="all", kind="xray", limit=5000)).cases}
    assert listed[case.id].synthetic
    before = client.agreement("xray")
    other = next(label for label in ("NORMAL", "PNEUMONIA") if label != case.label)
    review = ReviewIn(reviewer="demo-reader", label=other)  # a withheld label (out of distribution) takes no verdict
    if not case.label_withheld:
        review = review.model_copy(update={"verdict": "disagree"})
    client.review(case.id, review)
    after = client.agreement("xray")
    assert (after.cases, after.model_vs_reader.pairs) == (before.cases, before.model_vs_reader.pairs)


def test_a_forged_mark_is_flagged_but_never_echoed(client: MedLensClient) -> None:
    """Whoever writes the chunk, the image claims to be synthetic; what the chunk says is echoed only in
    MedLens's own form (it could carry anything: a name, markup)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("MedLens-Synthetic", "Doe^Jane MRN 4711 <script>")
    buffer = io.BytesIO()
    Image.new("L", (224, 224), 128).save(buffer, format="PNG", pnginfo=info)
    prediction = client.predict_xray(buffer.getvalue(), "x.png")
    assert prediction.synthetic and prediction.synthetic_mark is None
    assert "Doe" not in prediction.model_dump_json()


def test_the_route_is_in_the_one_api_document(serving_url: str) -> None:
    doc = httpx.get(f"{serving_url}/openapi.json", timeout=30).json()
    operation = doc["paths"]["/v1/synthetic/xray"]["post"]
    assert "image/png" in operation["responses"]["200"]["content"]
    assert {p["name"] for p in operation["parameters"]} == {"label", "seed"}


def test_an_unknown_generator_is_a_clear_error(client: MedLensClient) -> None:
    with pytest.raises(ServingError) as raised:
        client.synthetic_xray("NORMAL", generator="diffusion")
    assert raised.value.status == 404 and "gan" in raised.value.detail
