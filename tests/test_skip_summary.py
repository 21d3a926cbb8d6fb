"""The closing lines of ``make test``: a run with skips says so, with the reasons, and ends on a count line."""

from __future__ import annotations

from collections import Counter

from tests.conftest import skip_summary


def test_skips_are_counted_with_their_reasons() -> None:
    text = skip_summary(280, 0, Counter({"real data not found at /x": 30, "no GPU": 2}))
    lines = text.splitlines()
    assert "32 TEST(S) SKIPPED: this was not a full run. Why:" in lines
    assert "    30 x real data not found at /x" in lines and "     2 x no GPU" in lines
    assert lines[-1] == "pytest: 280 passed, 0 failed, 32 skipped"


def test_a_full_run_says_so() -> None:
    lines = skip_summary(312, 1, Counter()).splitlines()
    assert "No test was skipped: a full run." in lines
    assert lines[-1] == "pytest: 312 passed, 1 failed, 0 skipped"
