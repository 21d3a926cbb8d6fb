"""Unit tests of dashboard/charts/xray.py on serving's XrayPrediction (no Streamlit, no serving)."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from dashboard.charts import xray
from dashboard.charts.common import BLUE, VERMILION
from serving.schemas import XrayPrediction
from tests.dashboard.helpers import gray_png


def _prediction(
    probability: float,
    threshold: float = 0.62,
    *,
    heatmap: str | None = None,
    preview: str | None = None,
    size: tuple[int, int] = (300, 200),
) -> XrayPrediction:
    return XrayPrediction(
        model="cnn",
        version="cnn-test",
        probability=probability,
        label="PNEUMONIA" if probability >= threshold else "NORMAL",
        threshold=threshold,
        image_width=size[0],
        image_height=size[1],
        source_format="png",
        heatmap_png=heatmap,
        preview_png=preview,
    )


@pytest.mark.parametrize(("probability", "threshold"), [(0.91, 0.62), (0.12, 0.62), (0.5, 0.3)])
def test_gauge_shows_the_score_against_threshold(probability: float, threshold: float) -> None:
    fig = xray.score_gauge(_prediction(probability, threshold))
    indicator = fig.data[0]
    assert isinstance(indicator, go.Indicator)
    assert indicator.value == pytest.approx(probability)
    assert indicator.gauge.threshold.value == pytest.approx(threshold)
    assert tuple(indicator.gauge.axis.range) == (0.0, 1.0)
    # the two coloured steps meet at the threshold
    assert indicator.gauge.steps[0].range[1] == pytest.approx(threshold)
    assert indicator.gauge.steps[1].range[0] == pytest.approx(threshold)
    flagged = probability >= threshold
    assert indicator.gauge.bar.color == (VERMILION if flagged else BLUE)
    assert ("PNEUMONIA" if flagged else "NORMAL") in indicator.title.text
    # the score is written as its threshold is, a decimal: it is not a probability
    assert indicator.title.text.startswith("Pneumonia score") and indicator.number.valueformat == ".3f"


def test_display_decodes_the_preview_and_fits_the_heatmap_to_it() -> None:
    """The heatmap comes at the image's full size (2000 x 1500 here), the preview at <= 1024 px: the
    heatmap is resized to the preview's pixels, so both overlay exactly."""
    preview = np.tile(np.linspace(0, 1, 1024, dtype=np.float32), (768, 1))  # (768, 1024)
    heat = np.zeros((1500, 2000), dtype=np.float32)
    heat[:750, 1000:] = 1.0  # top-right quarter
    display = xray.XrayDisplay.from_prediction(
        _prediction(0.8, heatmap=gray_png(heat), preview=gray_png(preview), size=(2000, 1500))
    )
    assert display.pixels is not None and display.heatmap is not None
    assert display.pixels.shape == (768, 1024)
    np.testing.assert_allclose(display.pixels, preview, atol=1 / 255 + 1e-6)
    assert display.heatmap.shape == display.pixels.shape
    np.testing.assert_allclose(display.heatmap[:384, 512:], 1.0, atol=1e-6)
    np.testing.assert_allclose(display.heatmap[384:, :], 0.0, atol=1e-6)
    np.testing.assert_allclose(display.heatmap[:, :512], 0.0, atol=1e-6)


def test_display_without_preview_or_heatmap() -> None:
    heat = np.full((20, 30), 0.5, dtype=np.float32)
    no_preview = xray.XrayDisplay.from_prediction(_prediction(0.3, heatmap=gray_png(heat)))
    assert no_preview.pixels is None
    assert no_preview.heatmap is not None and no_preview.heatmap.shape == (20, 30)  # kept as sent
    bare = xray.XrayDisplay.from_prediction(_prediction(0.3, preview=gray_png(heat)))
    assert bare.heatmap is None and bare.pixels is not None and bare.pixels.shape == (20, 30)


def test_xray_figure_overlays_heatmap_with_opacity() -> None:
    pixels = np.tile(np.linspace(0, 1, 300, dtype=np.float32), (200, 1))  # (200, 300)
    heat = np.zeros((200, 300), dtype=np.float32)
    heat[50:100, 100:200] = 1.0
    fig = xray.xray_figure(pixels, heat, opacity=0.35)
    image, overlay = fig.data
    assert isinstance(image, go.Image)
    assert image.source.startswith("data:image/png;base64,")
    assert isinstance(overlay, go.Heatmap)
    assert overlay.opacity == pytest.approx(0.35)
    assert overlay.visible is True
    z = np.asarray(overlay.z)
    assert z.max() == pytest.approx(1.0) and z.min() == pytest.approx(0.0)
    # heatmap cells span the image's pixel coordinates; y axis points down like an image
    assert min(overlay.x) > 0 and max(overlay.x) < 300
    assert min(overlay.y) > 0 and max(overlay.y) < 200
    assert tuple(fig.layout.yaxis.range) == (200, 0)

    hidden = xray.xray_figure(pixels, heat, opacity=0.0)
    assert hidden.data[1].visible is False
    bare = xray.xray_figure(pixels, None)
    assert len(bare.data) == 1


def test_xray_figure_downsamples_large_images_for_the_browser() -> None:
    pixels = np.random.default_rng(0).random((1955, 1841)).astype(np.float32)
    fig = xray.xray_figure(pixels, None, max_side=512)
    raw = base64.b64decode(fig.data[0].source.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as image:
        assert max(image.size) == 512
    # axes stay in the given pixels' coordinates
    assert tuple(fig.layout.xaxis.range) == (0, 1841)


def test_xray_figure_from_a_display() -> None:
    """What the page draws: the preview's pixels, the heatmap on the same grid."""
    preview = np.random.default_rng(1).random((600, 500)).astype(np.float32)
    heat = np.random.default_rng(2).random((1200, 1000)).astype(np.float32)
    display = xray.XrayDisplay.from_prediction(_prediction(0.7, heatmap=gray_png(heat), preview=gray_png(preview)))
    assert display.pixels is not None
    fig = xray.xray_figure(display.pixels, display.heatmap, 0.5)
    assert tuple(fig.layout.xaxis.range) == (0, 500) and tuple(fig.layout.yaxis.range) == (600, 0)
    overlay = fig.data[1]
    assert max(overlay.x) < 500 and max(overlay.y) < 600


def test_an_out_of_distribution_answer_withholds_the_label() -> None:
    inside = _prediction(0.91).model_copy(
        update={"in_distribution": True, "prediction_set": ["PNEUMONIA"], "calibrated_probability": 0.8,
                "set_coverage": 0.9}
    )  # fmt: skip
    outside = inside.model_copy(update={"in_distribution": False, "ood_reason": "Modality CT"})
    assert xray.shown_label(inside) == "PNEUMONIA" and xray.shown_label(outside) is None
    assert "label PNEUMONIA" in xray.score_gauge(inside).data[0].title.text
    assert "withheld" in xray.score_gauge(outside).data[0].title.text
    line = xray.trust_line(inside)
    assert line is not None and "{PNEUMONIA}" in line and "90%" in line and "80.0%" in line
    both = inside.model_copy(update={"prediction_set": ["NORMAL", "PNEUMONIA"]})
    assert "needs a reader" in (xray.trust_line(both) or "")
    assert xray.trust_line(_prediction(0.5)) is None  # an uncalibrated checkpoint says nothing more
    withheld = xray.trust_line(outside)  # its set would name the withheld label, and its guarantee does not hold
    assert withheld is not None and "not shown" in withheld and "PNEUMONIA" not in withheld and "80.0%" not in withheld


def test_the_ensemble_line_gives_the_members_range_and_says_when_they_straddle_the_threshold() -> None:
    agree = _prediction(0.9).model_copy(update={"member_probabilities": [0.85, 0.9, 0.94], "ensemble_std": 0.037})
    line = xray.ensemble_line(agree)
    assert line is not None and "3 networks" in line and "0.850 to 0.940" in line and "%" not in line
    assert "both sides" not in line
    split = agree.model_copy(update={"member_probabilities": [0.4, 0.7, 0.8], "ensemble_std": 0.17})
    assert "both sides of the threshold" in (xray.ensemble_line(split) or "")
    assert xray.ensemble_line(_prediction(0.9)) is None  # a single network: nothing to add


def test_the_heatmap_says_what_it_shows_and_when_no_region_raised_the_score() -> None:
    """The heatmap shows the regions that raised the pneumonia score, scaled within the image; serving's
    all-zero heatmap (no region raised it) is said in words, never drawn as a transparent overlay."""
    pixels = np.full((20, 30), 0.5, dtype=np.float32)
    heat = np.zeros((20, 30), dtype=np.float32)
    heat[5:10, 5:10] = 1.0
    fig = xray.xray_figure(pixels, heat, 0.5)
    overlay = fig.data[1]
    assert overlay.colorbar.title.text == xray.HEATMAP_TITLE and "this image" in xray.HEATMAP_TITLE
    assert "raised the score" in overlay.hovertemplate
    assert not fig.layout.annotations

    display = xray.XrayDisplay.from_prediction(
        _prediction(0.1, heatmap=gray_png(np.zeros((20, 30))), preview=gray_png(pixels))
    )
    assert xray.heatmap_is_empty(display.heatmap)
    assert not xray.heatmap_is_empty(heat) and not xray.heatmap_is_empty(None)
    empty = xray.xray_figure(pixels, display.heatmap, 0.5)
    assert len(empty.data) == 1  # the radiograph alone
    assert [a.text for a in empty.layout.annotations] == [xray.NO_REGION]
    assert "No region raised the pneumonia score" in xray.NO_REGION
