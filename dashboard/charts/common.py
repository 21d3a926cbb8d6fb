"""What every page's charts share: palette, model titles and colours, layout, source line, PNG helpers."""

from __future__ import annotations

import base64
import io
import re
import textwrap

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go
from PIL import Image

from models.catalogue import CATALOGUE
from serving.images import FloatImage, decode_gray_png, downsample, resize
from serving.schemas import FeatureContribution, ModelMetrics

# Colour-blind-safe palette (Okabe-Ito).
BLUE = "#0072B2"
ORANGE = "#E69F00"
GREEN = "#009E73"
VERMILION = "#D55E00"
PURPLE = "#CC79A7"
SKY = "#56B4E9"
GREY = "#7F7F7F"


def model_title(name: str) -> str:
    """Short title of a catalogue model (``LSTM``); the name itself when the catalogue lacks it."""
    known = CATALOGUE.get(name)
    return known.short_title if known is not None else name


#: A model's label where its code would read as the stay's outcome: a mortality model predicts.
_LABEL_WORDS = {"DIED_IN_HOSPITAL": "DEATH IN HOSPITAL", "SURVIVED": "SURVIVAL"}


def label_words(label: str) -> str:
    """A model's label as every page writes it: ``SEPSIS ALERT``, ``PNEUMONIA``, ``DEATH IN HOSPITAL`` (what the
    model predicts, never worded as what happened)."""
    return _LABEL_WORDS.get(label, label.replace("_", " "))


def model_colour(name: str) -> str:
    """Display colour of a catalogue model; grey when the catalogue lacks it."""
    known = CATALOGUE.get(name)
    return known.colour if known is not None else GREY


def translucent(colour: str, alpha: float) -> str:
    """``#RRGGBB`` -> ``rgba(r,g,b,alpha)`` (fills and bands in a model's colour)."""
    r, g, b = (int(colour.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:g})"


#: the longest subtitle line, in characters: what a chart in half the page's width shows whole at a 1280 px wide
#: window with the sidebar open (11 px type)
SUBTITLE_CHARS = 80


def layout(
    fig: go.Figure,
    *,
    title: str,
    subtitle: str | None = None,
    height: int | None = None,
    legend: str = "top",
) -> go.Figure:
    """Common look. ``legend``: ``top`` (above the plot), ``right`` (a column beside it, for figures whose
    legend is too long for one row above), ``bottom`` (below it), or inside it at ``br`` / ``bl`` / ``tl``.
    The subtitle's lines are wrapped at :data:`SUBTITLE_CHARS` (plotly cuts a line its figure is too narrow for)."""
    title_spec: dict[str, object] = {"text": title, "x": 0.0, "xanchor": "left"}
    if subtitle:
        subtitle = "<br>".join(
            wrapped for line in subtitle.split("<br>") for wrapped in textwrap.wrap(line, SUBTITLE_CHARS) or [""]
        )
    lines = subtitle.count("<br>") + 1 if subtitle else 0
    if subtitle:
        title_spec["subtitle"] = {"text": subtitle, "font": {"size": 11, "color": GREY}}
    legends: dict[str, dict[str, object]] = {
        "top": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1.0},
        "right": {"orientation": "v", "yanchor": "top", "y": 1.0, "xanchor": "left", "x": 1.02},
        "br": {"yanchor": "bottom", "y": 0.03, "xanchor": "right", "x": 0.98},
        "bl": {"yanchor": "bottom", "y": 0.03, "xanchor": "left", "x": 0.02},
        "tl": {"yanchor": "top", "y": 0.97, "xanchor": "left", "x": 0.02},
        "bottom": {"orientation": "h", "yanchor": "top", "y": -0.3, "xanchor": "left", "x": 0.0},
    }
    spec = {**legends[legend]}
    if legend in ("br", "bl", "tl"):
        spec.update(bgcolor="rgba(255,255,255,0.8)", bordercolor="#DDDDDD", borderwidth=1)
    fig.update_layout(
        title=title_spec,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 60 + 16 * lines, "b": 50},
        legend=spec,
    )
    if height is not None:
        fig.update_layout(height=height)
    return fig


def source_line(metrics: ModelMetrics, width: int | None = None) -> str:
    """``dataset · computed <created> · <version>`` — printed beside every performance figure.

    With ``width``, for plotly subtitles: wrapped with ``<br>`` at about that many characters, the data set in at
    most two lines (shortened with "…" where it does not fit), then the date and version, always whole."""
    stamp = f"computed {metrics.created} · {metrics.version}"
    if width is None:
        return f"{metrics.dataset} · {stamp}"
    lines = textwrap.wrap(f"{metrics.dataset} ·", width=width)
    if len(lines) > 2:
        lines = [*lines[:1], textwrap.shorten(" ".join(lines[1:]), width=width, placeholder=" … ·")]
    return "<br>".join([*lines, *textwrap.wrap(stamp, width=width)])


# ----------------------------------------------------------------------------------------------------------
# free text in Markdown: a reader's name and comment, a DICOM header value, shown as typed
# ----------------------------------------------------------------------------------------------------------
#: ASCII punctuation, every character of which Markdown can give a meaning (GitHub-flavoured Markdown lets a
#: backslash escape each); Streamlit's directives (``:red[...]``, ``:material/...:``) start with a colon.
_MARKDOWN_PUNCTUATION = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")


def literal(text: str) -> str:
    """``text`` written so that Markdown shows it as typed: for free text a reader or an uploaded file chose (a
    reviewer's name and comment, a DICOM header value) in a table or caption that Streamlit renders as Markdown.
    Unescaped, ``![](https://...)`` loaded an image from anywhere in every reader's browser (telling that host
    who looked at which case), and ``[sign in](https://...)`` drew a link. Line breaks become spaces."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(text.splitlines()))


# ----------------------------------------------------------------------------------------------------------
# images: serving sends 8-bit gray PNGs (Grad-CAM heatmap, preview); the browser gets downsampled ones
# ----------------------------------------------------------------------------------------------------------
def image_data_uri(pixels: npt.NDArray[np.floating], max_side: int = 1024) -> str:
    """(H, W) [0, 1] grayscale -> ``data:image/png;base64,...`` (downsampled for the browser)."""
    small = downsample(pixels, max_side)
    gray = (np.clip(small, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").convert("RGB").save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


__all__ = [
    "BLUE",
    "GREEN",
    "GREY",
    "ORANGE",
    "PURPLE",
    "SKY",
    "VERMILION",
    "FloatImage",
    "contribution_bars",
    "decode_gray_png",
    "downsample",
    "image_data_uri",
    "label_words",
    "layout",
    "literal",
    "model_colour",
    "model_title",
    "resize",
    "source_line",
    "threshold_gauge",
]


def threshold_gauge(score: float, threshold: float, title: str, bar_colour: str, version: str) -> go.Figure:
    """A model's score in [0, 1] as a gauge: the model's operating threshold is the black line between a blue and
    an orange band, and is written under the dial with the model version. The score is not a probability: it is
    written as a decimal (0.839), as its threshold is, never as a percentage."""
    fig = go.Figure(
        go.Indicator(
            mode="gauge+number",
            value=score,
            number={"valueformat": ".3f"},  # plotly sizes it to fit inside the arc, however narrow the column
            title={"text": title, "font": {"size": 14}},  # fixed: plotly's own size outgrows a narrow column
            gauge={
                "axis": {"range": [0.0, 1.0], "tickformat": ".1f"},
                "bar": {"color": bar_colour, "thickness": 0.35},
                "steps": [
                    {"range": [0.0, threshold], "color": "#E8F1FA"},
                    {"range": [threshold, 1.0], "color": "#FBE9DF"},
                ],
                "threshold": {"line": {"color": "black", "width": 4}, "thickness": 0.9, "value": threshold},
            },
        )
    )
    fig.add_annotation(
        text=f"operating threshold {threshold:.3f}<br>{version}",  # two short lines: a narrow column shows both
        x=0.5,
        y=-0.08,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": 12, "color": GREY},
    )
    fig.update_layout(height=300, margin={"l": 45, "r": 45, "t": 60, "b": 40}, template="plotly_white")
    return fig


def contribution_bars(features: list[FeatureContribution], title: str, subtitle: str) -> go.Figure:
    """Horizontal bars of integrated-gradients attributions, largest |attribution| on top: red raises the score's
    log-odds (the logit of the uncalibrated score), blue lowers them; each bar is named as serving names the
    input and labelled with its last value as serving words it (with its unit, a code in words, or ``not measured``)."""
    shown = features[::-1]  # plotly draws the first bar at the bottom
    values = [f.attribution for f in shown]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=[f.name for f in shown],
            orientation="h",
            marker={"color": [VERMILION if v > 0 else BLUE for v in values]},
            text=[f.value_text for f in shown],
            textposition="auto",
            textangle=0,  # plotly turns a short label in a long bar sideways otherwise
            name="attribution",
            hovertemplate="%{y}: %{x:+.3f}<br>%{text}<extra></extra>",
        )
    )
    fig.add_vline(x=0.0, line={"color": GREY, "width": 1})
    layout(fig, title=title, subtitle=subtitle, height=max(260, 60 + 32 * len(shown)))
    fig.update_xaxes(title_text="contribution to the score's log-odds", zeroline=True)
    fig.update_layout(showlegend=False)
    return fig
