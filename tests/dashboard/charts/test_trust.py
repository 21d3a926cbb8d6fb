"""The "when not to trust it" charts and tables, from the committed CNN card's trust report."""

from __future__ import annotations

import pytest

from dashboard.charts.trust import (
    alert_words,
    calibrated_risk_words,
    calibration_table,
    conformal_table,
    ood_table,
    out_of_fold_table,
    reliability_figure,
)
from models.cards import read_card
from models.catalogue import entry
from models.trust_report import SepsisTrustReport, TrustReport


@pytest.fixture(scope="module")
def trust() -> TrustReport:
    report = read_card(entry("cnn").default_weights).trust
    assert report is not None, "the committed CNN card has no trust report: run python -m models.calibrate cnn"
    return report


def test_reliability_figure_draws_every_method_and_marks_the_adopted_one(trust: TrustReport) -> None:
    fig = reliability_figure(trust)
    names = [t.name for t in fig.data]
    assert names[0] == "perfectly calibrated" and len(names) == 1 + len(trust.reliability) == 4
    adopted = next(r.method for r in trust.calibration if r.adopted)
    bold = [t for t in fig.data[1:] if t.line.width == 3]
    assert len(bold) == 1 and bold[0].name.startswith(f"{adopted} (adopted)")
    for trace in fig.data[1:]:
        curve = trust.reliability[trace.name.split(" ")[0]]
        assert list(trace.x) == curve.x and list(trace.y) == curve.y
        assert sum(trace.customdata) == trust.n_validation  # every validation radiograph in some bin


def test_tables_show_coverage_per_class_and_each_ood_score(trust: TrustReport) -> None:
    table = conformal_table(trust)
    assert list(table["true label"]) == ["NORMAL", "PNEUMONIA"]
    assert table["radiographs"].sum() == trust.n_validation
    coverage = next(c for c in table.columns if c.startswith("coverage (target ≥"))
    assert all(v.endswith("%") for v in table[coverage])  # a percentage, as its target is written
    ood = ood_table(trust)
    assert len(ood) == len(trust.ood) and ood["score"].str.contains("adopted").sum() == 1
    # the adult chest CR of another scanner (refused by the adopted score on the committed card) is on the page
    adopted = next(r for r in trust.ood if r.adopted)
    shown = ood.set_index("score").loc[f"{adopted.method} (adopted)", "adult chest CR (another scanner) passed"]
    assert shown == round(adopted.chest_dicom_pass, 2)


def test_the_ensemble_table_has_one_row_per_size_and_marks_the_served_one() -> None:
    from dashboard.charts.trust import ensemble_table
    from models.trust_report import EnsembleReport, EnsembleRow

    def row(size: int, adopted: bool) -> EnsembleRow:
        return EnsembleRow(size=size, subsets=4 - size, auroc=(0.99, 0.001), brier=(0.05, 0.002), ece=(0.04, 0.01),
                           specificity=(0.95, 0.01), drift=(0.06 - 0.01 * size, 0.005),
                           worst_specificity=(0.9, 0.02), adopted=adopted)  # fmt: skip

    report = EnsembleReport(measured="now", command="python -m models.ensemble", machine="cpu", members=["a", "b", "c"],
                            n_validation=775, rule="rule", rows=[row(1, False), row(2, True), row(3, False)],
                            spread=0.02)  # fmt: skip
    table = ensemble_table(report)
    assert list(table["members"]) == ["1", "2 (served)", "3"]
    assert table.loc[1, "operating-point drift under shift"] == "0.040 ± 0.005"
    assert table.loc[0, "AUROC"] == "0.9900 ± 0.0010"


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_sepsis_reliability_before_and_after_with_ece_and_brier(name: str) -> None:
    """The committed sepsis cards: one line per calibrator over every out-of-fold hour, the adopted one bold;
    the tables of ECE / Brier and of the out-of-fold check against the training card."""
    report = read_card(entry(name).default_weights).trust
    assert isinstance(report, SepsisTrustReport), f"run python -m models.calibrate {name}"
    fig = reliability_figure(report)
    assert len(fig.data) == 1 + len(report.reliability) == 5  # diagonal, uncalibrated, temperature, platt, isotonic
    bold = [t for t in fig.data[1:] if t.line.width == 3]
    adopted = next(r for r in report.calibration if r.adopted)
    assert len(bold) == 1 and bold[0].name.startswith(f"{adopted.method} (adopted) · ECE {adopted.ece:.3f}")
    for trace in fig.data[1:]:
        assert sum(trace.customdata) == report.out_of_fold.n_hours  # every hour in some bin
    assert f"{report.out_of_fold.n_stays:,} stays" in fig.layout.title.subtitle.text
    table = calibration_table(report)
    assert list(table["calibrator"].str.split(" ").str[0]) == ["uncalibrated", "temperature", "platt", "isotonic"]
    assert table["calibrator"].str.contains("adopted").sum() == 1
    check = out_of_fold_table(report).set_index("figure")
    assert check.loc["AUROC", "recomputed"] == check.loc["AUROC", "training card"]


@pytest.mark.parametrize("name", ["mortality-lstm", "mortality-transformer"])
def test_the_mortality_calibration_is_told_as_one_risk_per_stay(name: str) -> None:
    """The mortality cards calibrate the 48th hour's risk, one per stay: not called hourly, and no utility row
    (the task has none)."""
    report = read_card(entry(name).default_weights).trust
    assert isinstance(report, SepsisTrustReport) and report.out_of_fold.n_hours == report.out_of_fold.n_stays
    assert calibrated_risk_words(report) == "risk after 48 hours (one per stay)"
    subtitle = reliability_figure(report).layout.title.subtitle.text
    assert "hourly" not in subtitle and "hours)" not in subtitle
    assert list(out_of_fold_table(report)["figure"]) == ["AUROC", "Brier"]
    sepsis = read_card(entry("lstm").default_weights).trust
    assert isinstance(sepsis, SepsisTrustReport) and calibrated_risk_words(sepsis) == "hourly risk"
    assert list(out_of_fold_table(sepsis)["figure"]) == ["AUROC", "normalised utility", "Brier"]


@pytest.mark.parametrize("name", ["lstm", "transformer", "mortality-lstm", "mortality-transformer"])
def test_the_calibration_at_alerts_is_beside_the_ece(name: str) -> None:
    """The committed sequence cards measure the alerting predictions (raw risk at the threshold or above): each
    method's mean probability there, in the table, beside the fraction labelled 1, in words. The adopted one
    reads within two points of it; the uncalibrated score reads far above."""
    report = read_card(entry(name).default_weights).trust
    assert isinstance(report, SepsisTrustReport) and report.alert_observed is not None, (
        f"run python -m models.calibrate {name}"
    )
    table = calibration_table(report).set_index("calibrator")
    adopted = next(r for r in report.calibration if r.adopted)
    assert table.loc[f"{adopted.method} (adopted)", "mean at alerts"] == f"{adopted.alert_mean:.1%}"
    assert adopted.alert_mean is not None and abs(adopted.alert_mean - report.alert_observed) < 0.02
    raw = next(r for r in report.calibration if r.method == "uncalibrated")
    assert raw.alert_mean is not None and raw.alert_mean > report.alert_observed + 0.1
    words = alert_words(report)
    assert words is not None and f"{report.alert_observed:.1%}" in words and f"{report.alert_hours:,}" in words
    assert ("hours of" in words) == (name in ("lstm", "transformer"))
