"""benchmarks/step_chart.py: the chart of a recorded step-load run (rows as locust_step.py samples them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from benchmarks.step_chart import step_load_figure

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _trace(fig: go.Figure, name_start: str) -> go.Scatter:
    matches = [t for t in fig.data if (t.name or "").startswith(name_start)]
    assert matches, f"no trace named {name_start!r} in {[t.name for t in fig.data]}"
    return matches[0]


def _step_rows() -> list[dict[str, object]]:
    return [
        {"t": 0.0, "users": 1, "replicas:pneumonia-cnn": 1, "replicas:sepsis-lstm": 1, "rps": 0.5, "p95_ms": 120.0},
        {"t": 2.0, "users": 16, "replicas:pneumonia-cnn": 1, "replicas:sepsis-lstm": 1, "rps": 6.0, "p95_ms": 300.0},
        {"t": 4.0, "users": 64, "replicas:pneumonia-cnn": 2, "rps": 20.0, "p95_ms": None, "service_error": 1},
    ]


def _step_rows_with_starting() -> list[dict[str, object]]:
    return [
        {"t": 0.0, "replicas:pneumonia-cnn": 1, "starting:pneumonia-cnn": 0},
        {"t": 2.0, "replicas:pneumonia-cnn": 1, "starting:pneumonia-cnn": 1},  # autoscaling added one
        {"t": 4.0, "replicas:pneumonia-cnn": 2, "starting:pneumonia-cnn": 0},  # it is serving
        {"t": 6.0, "replicas:pneumonia-cnn": 2},  # no starting count in this sample: a gap
    ]


@pytest.mark.parametrize("as_frame", [False, True])
def test_step_load_figure(as_frame: bool) -> None:
    rows = _step_rows()
    fig = step_load_figure(pd.DataFrame(rows) if as_frame else rows, subtitle="docs/load/step_timeline.csv")
    assert {t.name for t in fig.data} == {"pneumonia-cnn", "sepsis-lstm", "users", "requests/s", "p95 ms"}
    xray = _trace(fig, "pneumonia-cnn")
    assert list(xray.x) == [0.0, 2.0, 4.0]
    assert list(xray.y) == [1.0, 1.0, 2.0]
    assert xray.line.shape == "hv"
    lstm = _trace(fig, "sepsis-lstm")
    assert lstm.y[2] is None  # a missing sample is a gap, not a zero
    assert list(_trace(fig, "users").y) == [1.0, 16.0, 64.0]
    assert _trace(fig, "users").yaxis != xray.yaxis  # users on their own axis
    assert list(_trace(fig, "requests/s").y) == [0.5, 6.0, 20.0]
    assert _trace(fig, "p95 ms").y[2] is None
    # Up to 4 deployments + 5 series: one row above the plot would run into the title; a column beside it.
    assert fig.layout.legend.orientation == "v" and fig.layout.legend.x > 1
    assert fig.layout.title.subtitle.text == "docs/load/step_timeline.csv"
    assert fig.layout.title.text.startswith("Step load")


def test_step_load_figure_draws_starting_replicas() -> None:
    fig = step_load_figure(_step_rows_with_starting())
    running = _trace(fig, "pneumonia-cnn")
    added = _trace(fig, "pneumonia-cnn incl. starting")
    assert list(running.y) == [1.0, 1.0, 2.0, 2.0]
    assert list(added.y) == [1.0, 2.0, 2.0, None]  # the rise shows when the replica is added
    assert added.line.dash == "dash"
    assert added.line.color == running.line.color
    assert added.showlegend is False and added.legendgroup == running.legendgroup == "pneumonia-cnn"
    assert "dashed: running + starting" in fig.layout.annotations[0].text


def test_step_load_figure_skips_deployments_that_never_started_a_replica() -> None:
    rows = [{"t": float(t), "replicas:MedLensIngress": 1, "starting:MedLensIngress": 0} for t in range(3)]
    fig = step_load_figure(rows)
    assert [t.name for t in fig.data] == ["MedLensIngress"]


def test_step_load_figure_minimal_rows() -> None:
    fig = step_load_figure([{"users": 3}, {"users": 5}])
    assert [t.name for t in fig.data] == ["users"]
    assert list(fig.data[0].x) == [0, 1]


def test_benchmarks_do_not_import_the_dashboard() -> None:
    for path in sorted(BENCHMARKS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not [n for n in names if n == "dashboard" or n.startswith("dashboard.")], path
