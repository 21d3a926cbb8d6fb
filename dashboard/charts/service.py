"""Charts and tables of the service page, drawn from ``GET /v1/service`` (``ServiceStatus``) and
``GET /v1/models`` (``ModelList``) only: deployment names are whatever serving reports."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.charts.common import GREEN, ORANGE, SKY, VERMILION, layout
from serving.schemas import DeploymentState, ModelInfo, ModelList, ServiceStatus


def _when(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def replica_history_figure(status: ServiceStatus) -> go.Figure:
    """Running replicas of each deployment over the sampled history, now at the right: one row per deployment
    (lines of equal counts would hide one another), in the order of "Replicas now" beside it; blank where a
    deployment was not there yet."""
    current = [d.name for d in status.deployments]
    names = current + sorted({name for sample in status.history for name in sample.replicas} - set(current))
    z = [[s.replicas.get(name) for s in status.history] for name in names]  # (deployments, samples)
    most = max((n for row in z for n in row if n is not None), default=0)
    fig = go.Figure(
        go.Heatmap(
            x=[_when(s.t) for s in status.history],
            y=names,
            z=z,
            zmin=0,
            zmax=max(most, 1),
            colorscale=[[0.0, "#EEEEEE"], [1.0, GREEN]],  # zero replicas light grey, the most full green
            ygap=3,
            colorbar={"title": {"text": "replicas"}, "dtick": 1, "thickness": 12},
            hovertemplate="%{y}<br>%{x|%H:%M:%S} UTC<br>%{z} running replica(s)<extra></extra>",
            name="running replicas",
        )
    )
    span = (status.history[-1].t - status.history[0].t) / 60.0 if len(status.history) > 1 else 0.0
    layout(
        fig,
        title="Replicas per deployment",
        subtitle=f"last {span:.1f} min (UTC)" if span > 0 else "one sample so far (UTC): the history fills as it runs",
        height=max(220, 80 + 40 * len(names)),
    )
    return fig


def _replicas_text(d: DeploymentState) -> str:
    if not d.replicas and not d.starting and not d.stopping and d.status == "HEALTHY":
        return "0 · scaled to zero (starts on the next request)"
    return (
        f"{d.replicas}"
        + (f" (+{d.starting} starting)" if d.starting else "")
        + (f" (+{d.stopping} stopping)" if d.stopping else "")
        + f" · {d.status}"
        + (f" · {d.device}" if d.device else "")
    )


def replicas_now_figure(status: ServiceStatus) -> go.Figure:
    deployments = status.deployments
    fig = go.Figure(
        go.Bar(
            x=[d.replicas for d in deployments],
            y=[d.name for d in deployments],
            orientation="h",
            text=[_replicas_text(d) for d in deployments],
            # a bar of zero length has no inside: its words go beside it
            textposition=["auto" if d.replicas else "outside" for d in deployments],
            marker={"color": [GREEN if d.status == "HEALTHY" else ORANGE for d in deployments]},
            name="replicas now",
        )
    )
    layout(fig, title="Replicas now", height=max(220, 80 + 40 * len(deployments)))
    fig.update_xaxes(title_text="running replicas", rangemode="tozero", dtick=1)
    return fig


def endpoint_figure(status: ServiceStatus) -> go.Figure:
    """Request rate (left) and p50 / p95 / p99 latency (right) per endpoint."""
    endpoints = status.endpoints
    names = [e.endpoint for e in endpoints]
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(f"request rate (last {status.window_s:g} s)", "latency percentiles"),
        horizontal_spacing=0.28,
    )
    fig.add_trace(
        go.Bar(x=[e.rate_per_s for e in endpoints], y=names, orientation="h", marker={"color": SKY}, name="req/s"),
        row=1,
        col=1,
    )
    for label, attr, colour in (("p50", "p50_ms", GREEN), ("p95", "p95_ms", ORANGE), ("p99", "p99_ms", VERMILION)):
        fig.add_trace(
            go.Bar(
                x=[getattr(e, attr) for e in endpoints],
                y=names,
                orientation="h",
                marker={"color": colour},
                name=f"{label} ms",
            ),
            row=1,
            col=2,
        )
    layout(
        fig, title="Request rate and latency per endpoint", height=max(340, 160 + 60 * len(endpoints)), legend="bottom"
    )
    # the legend at the figure's foot, under the axis titles, however many endpoints make the figure tall (a
    # legend placed in plot fractions drifted further below the axes the taller the figure)
    fig.update_layout(margin={"b": 100}, legend={"yref": "container", "y": 0.0, "yanchor": "bottom"})
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="requests / s", row=1, col=1, rangemode="tozero")
    fig.update_xaxes(title_text="ms", row=1, col=2, rangemode="tozero")
    return fig


# ----------------------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------------------
def deployments_table(status: ServiceStatus) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "deployment": d.name,
                "model": d.model or "—",
                "status": d.status,
                "replicas": d.replicas,
                "starting": d.starting,
                "stopping": d.stopping,
                "device": d.device or "—",
            }
            for d in status.deployments
        ]
    )


def endpoints_table(status: ServiceStatus) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "endpoint": e.endpoint,
                "requests": e.requests,
                "5xx": e.errors,
                "4xx": e.rejected,
                "req/s": round(e.rate_per_s, 3),
                "p50 ms": None if e.p50_ms is None else round(e.p50_ms, 1),
                "p95 ms": None if e.p95_ms is None else round(e.p95_ms, 1),
                "p99 ms": None if e.p99_ms is None else round(e.p99_ms, 1),
            }
            for e in status.endpoints
        ]
    )


def _model_now(model: ModelInfo, stopping: int) -> str:
    """``model``'s state in words; ``stopping``: its deployment's replicas being stopped."""
    if not model.scaled_to_zero:
        return "serving"
    # its last replica drains (at least 30 s behind Ray's direct ingress) and may still answer meanwhile
    return "scaling to zero (a replica is finishing)" if stopping else "scaled to zero"


def models_table(listing: ModelList, status: ServiceStatus | None = None) -> pd.DataFrame:
    """One row per model; ``status`` (the same moment's ``GET /v1/service``) tells a model scaling to zero, whose
    last replica still drains, from one at zero."""
    stopping = {d.model: d.stopping for d in status.deployments if d.model} if status else {}
    return pd.DataFrame(
        [
            {
                "model": m.name,
                "title": m.title,
                "version": m.version,
                # a model at zero keeps its last replica's device and backend (none: not run since serving started)
                "now": _model_now(m, stopping.get(m.name, 0)),
                "device": m.device or "—",
                "backend": m.backend or "—",
                "threshold": round(m.threshold, 4),
                "task": m.task,
            }
            for m in listing.models
        ]
    )


__all__ = [
    "deployments_table",
    "endpoint_figure",
    "endpoints_table",
    "models_table",
    "replica_history_figure",
    "replicas_now_figure",
]
