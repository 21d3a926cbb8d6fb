"""The "when not to trust it" charts and tables, from the committed CNN card's trust report."""

from __future__ import annotations

import pytest

from dashboard.charts.trust import conformal_table, ood_table, reliability_figure
from models.cards import read_card
from models.catalogue import entry
from models.trust_report import TrustReport


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
    ood = ood_table(trust)
    assert len(ood) == len(trust.ood) and ood["score"].str.contains("adopted").sum() == 1
