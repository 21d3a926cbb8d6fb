"""Unit tests of dashboard/charts/common.py: model titles and colours, layout, source line, PNG helpers."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from dashboard.charts import common
from models.catalogue import CATALOGUE
from tests.dashboard.helpers import gray_png, synthetic_metrics


def test_model_titles_and_colours_come_from_the_catalogue() -> None:
    for name, entry in CATALOGUE.items():
        assert common.model_title(name) == entry.short_title
        assert common.model_colour(name) == entry.colour
    assert common.model_title("lstm") == "LSTM" and common.model_title("transformer") == "Transformer"
    assert common.model_title("not-a-model") == "not-a-model"
    assert common.model_colour("not-a-model") == common.GREY


def test_decode_gray_png_round_trip() -> None:
    heat = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    decoded = common.decode_gray_png(gray_png(heat))
    assert decoded.shape == (48, 64)
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, heat, atol=1 / 255 + 1e-6)


def test_decode_gray_png_reads_a_preview_of_any_mode() -> None:
    """A preview saved as RGB (or with a palette) still decodes to one gray channel in [0, 1]."""
    gray = (np.arange(30 * 20).reshape(20, 30) % 256).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").convert("RGB").save(buffer, format="PNG")
    decoded = common.decode_gray_png(base64.b64encode(buffer.getvalue()).decode())
    assert decoded.shape == (20, 30)
    np.testing.assert_allclose(decoded * 255, gray, atol=1e-3)
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0


def test_resize_and_downsample() -> None:
    pixels = np.zeros((40, 60), dtype=np.float32)
    pixels[:20, :30] = 1.0  # top-left quarter
    small = common.resize(pixels, (4, 6))
    assert small.shape == (4, 6) and small.dtype == np.float32
    np.testing.assert_allclose(small[:2, :3], 1.0)  # area average keeps the quarter exact
    np.testing.assert_allclose(small[2:, :], 0.0)
    assert common.resize(pixels, (40, 60)) is not pixels  # same size: a float32 copy
    assert common.downsample(pixels, 30).shape == (20, 30)  # longer side 60 -> 30, aspect kept
    assert common.downsample(pixels, 100).shape == (40, 60)  # never upsampled


def test_image_data_uri_is_a_downsampled_png() -> None:
    uri = common.image_data_uri(np.random.default_rng(0).random((300, 200)), max_side=150)
    assert uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as image:
        assert image.size == (100, 150)


@pytest.mark.parametrize("legend", ["top", "right", "br", "bl", "tl", "bottom"])
def test_layout(legend: str) -> None:
    fig = common.layout(go.Figure(), title="t", subtitle="a<br>b", height=321, legend=legend)
    assert fig.layout.title.text == "t" and fig.layout.title.subtitle.text == "a<br>b"
    assert fig.layout.height == 321
    assert fig.layout.margin.t == 60 + 2 * 16  # room for a two-line subtitle
    assert (fig.layout.legend.bgcolor is not None) == (legend in ("br", "bl", "tl"))  # inside the plot: a box


def test_source_line_wraps_for_subtitles() -> None:
    metrics = synthetic_metrics()
    assert common.source_line(metrics) == (
        "synthetic validation set (tests) · computed 2026-01-01 00:00 UTC · cnn-synthetic"
    )
    wrapped = common.source_line(metrics, 30)
    assert "<br>" in wrapped
    assert all(len(line) <= 30 for line in wrapped.split("<br>"))
    # a data set too long for the subtitle is shortened; the date and the version always stay whole
    long = metrics.model_copy(update={"dataset": "out-of-fold predictions on all stays " * 6})
    lines = common.source_line(long, 80).split("<br>")
    assert len(lines) <= 4 and lines[1].endswith("… ·") and all(len(line) <= 80 for line in lines)
    assert lines[-1] == "computed 2026-01-01 00:00 UTC · cnn-synthetic"


def test_a_long_subtitle_is_wrapped_so_a_narrow_figure_shows_it_whole() -> None:
    """Plotly does not wrap a subtitle: it cuts what its figure is too narrow for."""
    long = "Each point: the score from the hours up to then (dotted: its calibrated risk); the stay's prediction is "
    fig = common.layout(go.Figure(), title="t", subtitle=long + "the 48th hour's<br>computed today")
    lines = fig.layout.title.subtitle.text.split("<br>")
    assert len(lines) == 3 and lines[-1] == "computed today"
    assert all(len(line) <= common.SUBTITLE_CHARS for line in lines)
    assert " ".join(lines[:2]) == long + "the 48th hour's"
    assert fig.layout.margin.t == 60 + 16 * 3
