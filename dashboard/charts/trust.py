"""Charts and tables of "how far to trust it" on the performance page: calibration before and after,
conformal coverage per class and the out-of-distribution scores compared. Pure functions of the
``TrustReport`` serving returns with a model's metrics (its card's ``trust``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.charts.common import BLUE, GREY, PURPLE, VERMILION, layout
from dashboard.charts.performance import reliability_axes
from models.trust_report import EnsembleReport, TrustReport

_COLOURS = {"uncalibrated": GREY, "temperature": BLUE, "isotonic": VERMILION}


def reliability_figure(trust: TrustReport) -> go.Figure:
    """Reliability diagrams of the cross-fitted probabilities, one line per calibration method; the adopted
    one drawn solid and thick."""
    fig = reliability_axes()
    figures = {row.method: row for row in trust.calibration}
    for method, curve in trust.reliability.items():
        row = figures.get(method)
        adopted = bool(row and row.adopted)
        label = method + (" (adopted)" if adopted else "")
        if row is not None:
            label += f" · ECE {row.ece:.3f}, Brier {row.brier:.3f}"
        counts = np.asarray(curve.thresholds, dtype=float)
        fig.add_trace(
            go.Scatter(
                x=curve.x,
                y=curve.y,
                customdata=counts,
                mode="lines+markers",
                line={
                    "color": _COLOURS.get(method, PURPLE),
                    "width": 3 if adopted else 1.5,
                    "dash": "solid" if adopted or method == "uncalibrated" else "dot",
                },
                name=label,
                hovertemplate="predicted %{x:.3f}<br>observed %{y:.3f}<br>%{customdata:.0f} cases<extra></extra>",
            )
        )
    layout(
        fig,
        title="Calibration before and after",
        subtitle=f"cross-fitted over {trust.folds} folds of the {trust.n_validation} validation radiographs",
        height=460,
        legend="tl",
    )
    return fig


def conformal_table(trust: TrustReport) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "true label": row.label,
                "radiographs": row.n,
                f"coverage (target ≥ {1 - trust.alpha:.0%})": round(row.coverage, 3),
                "mean set size": round(row.mean_set_size, 3),
            }
            for row in trust.conformal
        ]
    )


def ood_table(trust: TrustReport) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "score": row.method + (" (adopted)" if row.adopted else ""),
                "validation radiographs passed": round(row.validation_pass, 3),
                "non-chest-radiograph images flagged": round(row.non_cxr_flag, 3),
                "AUROC in vs out": round(row.auroc_in_vs_out, 4),
                "full-resolution radiographs passed": None if row.fullres_pass is None else round(row.fullres_pass, 3),
            }
            for row in trust.ood
        ]
    )


__all__ = ["conformal_table", "ood_table", "reliability_figure"]


def ensemble_table(report: EnsembleReport) -> pd.DataFrame:
    """One row per ensemble size: mean ± standard deviation over every subset of that many members."""

    def ms(value: tuple[float, float], digits: int = 3) -> str:
        return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"

    return pd.DataFrame(
        [
            {
                "members": f"{row.size}{' (served)' if row.adopted else ''}",
                "AUROC": ms(row.auroc, 4),
                "Brier": ms(row.brier),
                "ECE": ms(row.ece),
                "specificity": ms(row.specificity),
                "operating-point drift under shift": ms(row.drift),
                "worst specificity under shift": ms(row.worst_specificity),
            }
            for row in report.rows
        ]
    )
