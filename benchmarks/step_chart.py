"""The chart of a recorded step-load run (``benchmarks/locust_step.py`` writes it to
``docs/load/autoscaling.html``): users and replicas per deployment, requests/s and latency over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# Okabe-Ito (colour-blind safe), one colour per deployment in turn.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
GREY = "#7F7F7F"
SKY, VERMILION, GREEN, ORANGE = "#56B4E9", "#D55E00", "#009E73", "#E69F00"


def step_load_figure(rows: pd.DataFrame | Sequence[Mapping[str, object]], *, subtitle: str | None = None) -> go.Figure:
    """A recorded step-load run over time: users and replicas per deployment, requests/s, latency.

    Schema-free: ``rows`` is a DataFrame or a list of dict rows (e.g. ``docs/load/step_timeline.csv``
    from ``benchmarks/locust_step.py``). Used columns, each optional except the time: ``t`` (seconds
    since start), ``users``, ``replicas:<deployment>`` (running replicas, one per deployment),
    ``starting:<deployment>`` (replicas still starting: drawn dashed as running + starting, so the
    gap between the two lines is the start-up), ``rps``, ``fail_per_s``, ``p50_ms``, ``p95_ms``.
    Missing or empty values leave gaps.
    """
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    time_col = "t" if "t" in frame.columns else None
    x = frame[time_col].to_numpy() if time_col else np.arange(len(frame))

    def col(name: str) -> list[float | None]:
        values = pd.to_numeric(frame[name], errors="coerce")
        return [None if pd.isna(v) else float(v) for v in values]

    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            "users and replicas per deployment"
            + (" (dashed: running + starting)" if any(str(c).startswith("starting:") for c in frame.columns) else ""),
            "requests / s",
            "latency",
        ),
        specs=[[{"secondary_y": True}], [{}], [{}]],
    )
    replica_cols = sorted(c for c in frame.columns if str(c).startswith("replicas:"))
    for i, name in enumerate(replica_cols):
        deployment, colour = str(name).split(":", 1)[1], PALETTE[i % len(PALETTE)]
        running = col(name)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=running,
                mode="lines",
                line={"shape": "hv", "width": 2, "color": colour},
                name=deployment,
                legendgroup=deployment,
                connectgaps=False,
            ),
            row=1,
            col=1,
            secondary_y=False,
        )
        starting = col(f"starting:{deployment}") if f"starting:{deployment}" in frame.columns else []
        if any(n for n in starting):  # only deployments that started a replica: the ingress never does
            added = [None if r is None or s is None else r + s for r, s in zip(running, starting, strict=True)]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=added,
                    mode="lines",
                    line={"shape": "hv", "width": 1.5, "dash": "dash", "color": colour},
                    name=f"{deployment} incl. starting",
                    legendgroup=deployment,  # the legend keeps one entry per deployment; it toggles both lines
                    showlegend=False,
                    connectgaps=False,
                ),
                row=1,
                col=1,
                secondary_y=False,
            )
    if "users" in frame.columns:
        fig.add_trace(
            go.Scatter(x=x, y=col("users"), mode="lines", line={"dash": "dot", "color": GREY}, name="users"),
            row=1,
            col=1,
            secondary_y=True,
        )
    for name, label, colour in (("rps", "requests/s", SKY), ("fail_per_s", "failures/s", VERMILION)):
        if name in frame.columns:
            fig.add_trace(go.Scatter(x=x, y=col(name), mode="lines", line={"color": colour}, name=label), row=2, col=1)
    for name, label, colour in (("p50_ms", "p50 ms", GREEN), ("p95_ms", "p95 ms", ORANGE)):
        if name in frame.columns:
            fig.add_trace(go.Scatter(x=x, y=col(name), mode="lines", line={"color": colour}, name=label), row=3, col=1)

    # Up to 4 deployments + 5 series: a legend row above the plot would run into the title; a column beside it.
    title: dict[str, object] = {
        "text": "Step load: users, replicas, throughput and latency",
        "x": 0.0,
        "xanchor": "left",
    }
    subtitle_lines = subtitle.count("<br>") + 1 if subtitle else 0
    if subtitle:
        title["subtitle"] = {"text": subtitle, "font": {"size": 11, "color": GREY}}
    fig.update_layout(
        title=title,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 60 + 16 * subtitle_lines, "b": 50},
        legend={"orientation": "v", "yanchor": "top", "y": 1.0, "xanchor": "left", "x": 1.02},
        height=760,
    )
    fig.update_yaxes(title_text="replicas", rangemode="tozero", dtick=1, row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="users", rangemode="tozero", row=1, col=1, secondary_y=True)
    fig.update_yaxes(title_text="req/s", rangemode="tozero", row=2, col=1)
    fig.update_yaxes(title_text="ms", rangemode="tozero", row=3, col=1)
    fig.update_xaxes(title_text="seconds since start" if time_col else "sample", row=3, col=1)
    return fig


__all__ = ["step_load_figure"]
