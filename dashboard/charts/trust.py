"""Charts and tables of "how far to trust it" on the performance page: calibration before and after,
conformal coverage per class and the out-of-distribution scores compared (CNN), the hourly calibration and
its out-of-fold check (sepsis models). Pure functions of the ``TrustReport`` / ``SepsisTrustReport`` serving
returns with a model's metrics (its card's ``trust``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.charts.common import BLUE, GREEN, GREY, PURPLE, VERMILION, layout
from dashboard.charts.performance import reliability_axes
from models.trust_report import EnsembleReport, SepsisTrustReport, TrustReport

_COLOURS = {"uncalibrated": GREY, "temperature": BLUE, "platt": GREEN, "isotonic": VERMILION}


def reliability_figure(trust: TrustReport | SepsisTrustReport) -> go.Figure:
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
    if isinstance(trust, SepsisTrustReport):
        c = trust.out_of_fold
        subtitle = f"{calibrated_risk_words(trust)}, cross-fitted over {trust.folds} folds of {c.n_stays:,} stays" + (
            "" if one_per_stay(trust) else f" ({c.n_hours:,} hours)"
        )
    else:
        subtitle = f"cross-fitted over {trust.folds} folds of the {trust.n_validation} validation radiographs"
    layout(fig, title="Calibration before and after", subtitle=subtitle, height=460, legend="bottom")
    return fig


def calibration_table(trust: TrustReport | SepsisTrustReport) -> pd.DataFrame:
    """One row per method: cross-fitted ECE and Brier, the adopted one marked; for a sequence model whose card
    measured it, the mean probability over the alerting predictions beside the fraction of them labelled 1."""
    at_alerts = isinstance(trust, SepsisTrustReport) and trust.alert_observed is not None
    rows = []
    for row in trust.calibration:
        cells: dict[str, object] = {
            "calibrator": row.method + (" (adopted)" if row.adopted else ""),
            "ECE": round(row.ece, 4),
            "Brier": round(row.brier, 5),
        }
        if at_alerts:
            cells["mean at alerts"] = None if row.alert_mean is None else f"{row.alert_mean:.1%}"
        rows.append(cells)
    return pd.DataFrame(rows)


def alert_words(trust: SepsisTrustReport) -> str | None:
    """The alerting predictions' observed rate, to read beside the table's "mean at alerts" (None: the card did not
    measure it)."""
    if trust.alert_observed is None:
        return None
    unit = "stays" if one_per_stay(trust) else f"hours of {trust.alert_stays:,} stays"
    return (
        f"At alerts (the {trust.alert_hours:,} {unit} whose score reaches the threshold), the label was 1 in "
        f"{trust.alert_observed:.1%}: a calibrated risk should read about that there. The ECE is dominated by the "
        "many low-risk predictions."
    )


def one_per_stay(trust: SepsisTrustReport) -> bool:
    """The report scores one prediction per stay (mortality: the 48th hour's), not one per hour (sepsis)."""
    return trust.out_of_fold.n_hours == trust.out_of_fold.n_stays


def calibrated_risk_words(trust: SepsisTrustReport) -> str:
    """What a sequence model's calibration report calibrates, in words."""
    return "risk after 48 hours (one per stay)" if one_per_stay(trust) else "hourly risk"


def out_of_fold_table(trust: SepsisTrustReport) -> pd.DataFrame:
    """The out-of-fold predictions recomputed from the checkpoint beside the training card's figures (the
    utility only for a task that has one: sepsis)."""
    c = trust.out_of_fold
    rows: list[dict[str, object]] = [
        {"figure": "AUROC", "recomputed": round(c.auroc, 4), "training card": round(c.card_auroc, 4)}
    ]
    if c.utility is not None or c.card_utility is not None:
        rows.append(
            {
                "figure": "normalised utility",
                "recomputed": None if c.utility is None else round(c.utility, 4),
                "training card": None if c.card_utility is None else round(c.card_utility, 4),
            }
        )
    rows.append({"figure": "Brier", "recomputed": round(c.brier, 5), "training card": round(c.card_brier, 5)})
    return pd.DataFrame(rows)


def conformal_table(trust: TrustReport) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "true label": row.label,
                "radiographs": row.n,
                f"coverage (target ≥ {1 - trust.alpha:.0%})": f"{row.coverage:.1%}",  # as its target reads
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
                # the threshold is set so that this share passes: true by construction, not a test
                "validation radiographs passed (by construction)": round(row.validation_pass, 3),
                "non-chest-radiograph images flagged": round(row.non_cxr_flag, 3),
                "AUROC in vs out": round(row.auroc_in_vs_out, 4),
                "full-resolution radiographs passed": None if row.fullres_pass is None else round(row.fullres_pass, 3),
                "adult chest CR (another scanner) passed": round(row.chest_dicom_pass, 2),
            }
            for row in trust.ood
        ]
    )


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


__all__ = [
    "calibration_table",
    "conformal_table",
    "ensemble_table",
    "ood_table",
    "out_of_fold_table",
    "reliability_figure",
]
