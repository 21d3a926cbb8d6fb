"""Charts of the chest X-ray page: score gauge, radiograph with Grad-CAM.

The Grad-CAM heatmap shows the regions that raised the pneumonia score, scaled within each image to its own
peak: a film the model calls normal can look as hot as one it calls pneumonia, so the heatmap says where,
never how much. Serving sends an all-zero heatmap when no region raised the score.

The network's output is a *score* compared with the threshold: training weighs the classes to balance them, so
it is not the probability of pneumonia (cross-fitted ECE 0.065 against 0.015 calibrated, the card's). It is
written as a decimal; only the calibrated probability is a percentage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go

from dashboard.charts.common import (
    BLUE,
    GREY,
    VERMILION,
    FloatImage,
    decode_gray_png,
    downsample,
    image_data_uri,
    resize,
    threshold_gauge,
)
from serving.schemas import XrayPrediction, label_withheld

#: what the heatmap shows, in the colour bar's title and the page's caption
HEATMAP_TITLE = "Raised the score<br>(1 = this image's peak)"
HEATMAP_CAPTION = (
    "Grad-CAM heatmap: the regions that raised the pneumonia score, scaled within this image (its strongest "
    "region is red). It says where, not how much: a normal film's heatmap can look as hot as a pneumonia film's."
)
NO_REGION = "No region raised the pneumonia score: the Grad-CAM heatmap is empty."

#: Grad-CAM colour scale: transparent where a region did not raise the score, then yellow -> red.
HEATMAP_COLOURSCALE: list[list[float | str]] = [
    [0.0, "rgba(255,255,0,0)"],
    [0.3, "rgba(255,255,0,0)"],
    [0.5, "rgba(255,220,0,0.45)"],
    [0.75, "rgba(255,120,0,0.75)"],
    [1.0, "rgba(220,0,0,0.95)"],
]


@dataclass(frozen=True)
class XrayDisplay:
    """What the page draws of one answer: serving's prediction, its preview (the image as the model read
    it, longer side <= 1024 px) and the Grad-CAM heatmap resized to the preview's size, both (h, w) in
    [0, 1]; None when serving sent none."""

    prediction: XrayPrediction
    pixels: FloatImage | None
    heatmap: FloatImage | None

    @classmethod
    def from_prediction(cls, prediction: XrayPrediction) -> XrayDisplay:
        pixels = decode_gray_png(prediction.preview_png) if prediction.preview_png else None
        heatmap = decode_gray_png(prediction.heatmap_png) if prediction.heatmap_png else None
        if heatmap is not None and pixels is not None:
            heatmap = resize(heatmap, (pixels.shape[0], pixels.shape[1]))  # the preview's size, should they differ
        return cls(prediction=prediction, pixels=pixels, heatmap=heatmap)


def heatmap_is_empty(heatmap: npt.NDArray[np.floating] | None) -> bool:
    """Whether serving's heatmap is all zero: no region raised the score (a map with any region that did is
    scaled to a peak of 1)."""
    return heatmap is not None and not bool(np.any(heatmap > 0))


def shown_label(prediction: XrayPrediction) -> str | None:
    """The label a reader may see: none when serving says the input is out of distribution."""
    return None if label_withheld(prediction.in_distribution) else prediction.label


def trust_line(prediction: XrayPrediction) -> str | None:
    """Calibrated probability and the conformal prediction set, in words (None: uncalibrated checkpoint). Not
    for an out-of-distribution input: both hold only on radiographs like the validation patients, and the set
    would name the withheld label."""
    if prediction.prediction_set is None or prediction.calibrated_probability is None:
        return None
    if shown_label(prediction) is None:
        return (
            "Calibrated probability and prediction set not shown: they hold only on radiographs like the "
            "validation patients, and this input is not one."
        )
    labels = " or ".join(prediction.prediction_set)
    if len(prediction.prediction_set) > 1:
        labels += " — uncertain: needs a reader"
    return f"Calibrated probability **{prediction.calibrated_probability:.1%}** · prediction set **{{{labels}}}** " + (
        f"(holds the true label at least {prediction.set_coverage:.0%} of the time on radiographs like the "
        "validation patients; no guarantee for other populations)"
        if prediction.set_coverage is not None
        else ""
    )


def burned_in_words(prediction: XrayPrediction) -> str:
    """Why an image may carry text that identifies the patient, as its DICOM header says it (the X-ray page and
    the worklist's case view each add what follows for them)."""
    said = (prediction.dicom or {}).get("BurnedInAnnotation")
    return (
        "The DICOM does not say its pixels are free of burned-in text that may identify the patient "
        f"(BurnedInAnnotation: {said})"
    )


def ensemble_line(prediction: XrayPrediction) -> str | None:
    """How far the deep ensemble's members agree, in words (None: a single network)."""
    members = prediction.member_probabilities
    if not members or len(members) < 2 or prediction.ensemble_std is None:
        return None
    low, high = min(members), max(members)
    straddles = low < prediction.threshold <= high
    return (
        f"{len(members)} networks trained with different seeds: their scores run from {low:.3f} to "
        f"{high:.3f} (spread ±{prediction.ensemble_std:.3f})"
        + (" — they fall on both sides of the threshold" if straddles else "")
    )


def score_gauge(prediction: XrayPrediction) -> go.Figure:
    """The pneumonia score as a gauge (a decimal: it is not a probability); the model's operating threshold is
    the black line."""
    flagged = prediction.probability >= prediction.threshold
    shown = shown_label(prediction)
    title = f"Pneumonia score — label {shown}" if shown else "Pneumonia score — label withheld: out of distribution"
    colour = GREY if not shown else VERMILION if flagged else BLUE
    return threshold_gauge(prediction.probability, prediction.threshold, title, colour, prediction.version)


def xray_figure(
    pixels: npt.NDArray[np.floating],
    heatmap: npt.NDArray[np.floating] | None = None,
    opacity: float = 0.5,
    *,
    max_side: int = 1024,
    heatmap_side: int = 160,
) -> go.Figure:
    """The windowed radiograph, with the Grad-CAM heatmap overlaid at ``opacity`` (0 hides it).

    ``pixels`` is the display-ready (H, W) image in [0, 1] (serving's preview); ``heatmap`` the (H', W')
    Grad-CAM in [0, 1], scaled to this image's peak (any size: it is stretched over the image). Both are
    downsampled for the browser. An all-zero heatmap is drawn as a note on the image: no region raised the score.
    """
    height, width = pixels.shape
    small = downsample(pixels, max_side)
    scale_x = width / small.shape[1]
    scale_y = height / small.shape[0]
    fig = go.Figure(
        go.Image(
            source=image_data_uri(small, max_side),
            dx=scale_x,
            dy=scale_y,
            name="radiograph",
            hoverinfo="skip",
        )
    )
    if heatmap_is_empty(heatmap) and opacity > 0:
        fig.add_annotation(
            text=NO_REGION,
            x=0.5,
            y=0.98,
            xref="paper",
            yref="paper",
            yanchor="top",
            showarrow=False,
            bgcolor="rgba(255,255,255,0.85)",
            font={"size": 13, "color": "black"},
        )
    elif heatmap is not None:
        heat = np.clip(downsample(heatmap, heatmap_side), 0.0, 1.0)
        rows, cols = heat.shape
        fig.add_trace(
            go.Heatmap(
                z=heat,
                x=(np.arange(cols) + 0.5) * width / cols,
                y=(np.arange(rows) + 0.5) * height / rows,
                zmin=0.0,
                zmax=1.0,
                colorscale=HEATMAP_COLOURSCALE,
                opacity=float(opacity),
                visible=opacity > 0,
                name="Grad-CAM",
                colorbar={"title": {"text": HEATMAP_TITLE}, "len": 0.6, "thickness": 12},
                hovertemplate="raised the score: %{z:.2f} of this image's peak<extra></extra>",
            )
        )
    fig.update_xaxes(visible=False, range=[0, width], constrain="domain")
    fig.update_yaxes(visible=False, range=[height, 0], scaleanchor="x", constrain="domain", constraintoward="top")
    aspect = height / width
    fig.update_layout(
        height=int(min(760, max(360, 620 * aspect))),
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
        template="plotly_white",
        dragmode="pan",
    )
    return fig


__all__ = [
    "HEATMAP_CAPTION",
    "HEATMAP_COLOURSCALE",
    "HEATMAP_TITLE",
    "NO_REGION",
    "XrayDisplay",
    "heatmap_is_empty",
    "score_gauge",
    "shown_label",
    "trust_line",
    "xray_figure",
]
