"""What each sequence task scores and how it weights its hours."""

from __future__ import annotations

import numpy as np
import pytest

from models.sequence_tasks import SEPSIS_TASK, best_event1_threshold, event1, sequence_task
from tests.models.conftest import float32_steps


def _event1_by_brute_force(y: np.ndarray, p: np.ndarray) -> float:
    return max(event1(y, (p >= t).astype(np.int64)) for t in np.unique(p))


@pytest.mark.parametrize("seed", range(5))
def test_best_event1_threshold_is_the_best_cut(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(200) < 0.15).astype(np.int64)
    p = np.round(np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1), 2)  # ties included
    threshold, score = best_event1_threshold(y, p)
    assert score == pytest.approx(_event1_by_brute_force(y, p))
    assert event1(y, (p >= threshold).astype(np.int64)) == pytest.approx(score)


def test_tied_cuts_keep_the_fewest_stays_flagged() -> None:
    """Flagging the top 1, 2 or 4 stays all score 0.5: the largest threshold is kept (1 stay flagged), midway
    between the flagged stay's score and the next."""
    y, p = np.array([1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6])
    threshold, score = best_event1_threshold(y, p)
    assert score == 0.5 and list(p >= threshold) == [True, False, False, False]
    assert threshold == pytest.approx(0.85)


@pytest.mark.parametrize("seed", range(5))
def test_the_event1_threshold_keeps_its_labels_in_float32(seed: int) -> None:
    """The threshold is no score: the stays it flags in float64 are flagged when a predictor returns their scores in
    float32, a few units in the last place off either way (a threshold equal to a score unflags that stay)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.15).astype(np.int64)
    p = np.clip(0.3 * y + 0.7 * rng.random(300), 0, 1)  # float64, distinct
    threshold, score = best_event1_threshold(y, p)
    flagged = p >= threshold
    for steps in (-3, -1, 0, 1, 3):
        np.testing.assert_array_equal(float32_steps(p, steps) >= threshold, flagged)
    assert event1(y, flagged.astype(np.int64)) == pytest.approx(score) == pytest.approx(_event1_by_brute_force(y, p))
    assert threshold not in set(p.tolist()) and p[flagged].min() > threshold > p[~flagged].max()


def test_event1_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 0])
    assert event1(y, np.array([1, 0, 1, 0, 0])) == 0.5  # Se 1/2, +P 1/2
    assert event1(y, np.array([1, 1, 1, 1, 0])) == 0.5  # Se 1, +P 2/4
    assert event1(y, np.zeros(5, dtype=np.int64)) == 0.0


def test_hour_weights() -> None:
    labels = np.zeros(48, dtype=np.int64)
    np.testing.assert_array_equal(SEPSIS_TASK.hour_weights(labels), np.ones(48))
    labels[30:] = 1
    uniform = sequence_task("sepsis", weighting="uniform")
    np.testing.assert_array_equal(uniform.hour_weights(labels), np.ones(48))
    assert SEPSIS_TASK.weighting == "utility" and SEPSIS_TASK.hour_weights(labels).max() > 1  # the shipped recipe
    labels[:] = 0
    w = sequence_task("mortality").hour_weights(labels)
    assert w.sum() == pytest.approx(48) and w[-1] == pytest.approx(24)  # half the weight on the 48th hour
    assert np.allclose(w[:-1], w[0])


def test_mortality_figures_score_the_last_hour() -> None:
    task = sequence_task("mortality")
    labels = [np.full(48, k, dtype=np.int64) for k in (0, 0, 1, 1)]
    probs = [np.r_[np.full(47, 0.9), last] for last in (0.1, 0.2, 0.8, 0.7)]  # only the last hour separates
    figures = task.figures(labels, probs, threshold=0.5)
    assert figures == {"auroc": 1.0, "event1": 1.0}
    threshold, best = task.choose_threshold(labels, probs)
    assert best == 1.0 and 0.2 < threshold <= 0.7


def test_unknown_schema_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"'sepsis-v9' is not one of sepsis's: choose one of sepsis-v1, sepsis-v2, sepsis-v3"
    ):
        sequence_task("sepsis", "sepsis-v9")
    assert sequence_task("sepsis", "sepsis-v2").schema.summaries


def test_utility_weighting() -> None:
    """Septic stays: 1 + the utility's stake of each hour (largest around onset, 1 after onset + 3 h); other
    stays: 1 everywhere."""
    task = sequence_task("sepsis", weighting="utility")
    labels = np.zeros(40, dtype=np.int64)
    np.testing.assert_array_equal(task.hour_weights(labels), np.ones(40))
    labels[20:] = 1  # t_sepsis = 26
    w = task.hour_weights(labels)
    assert w[26] == pytest.approx(1 + 1 / 3 + 4 / 3)  # at onset: U(alarm) = 1/3, U(no alarm) = -4/3
    assert w[30:].max() == pytest.approx(1.0) and w[:13].min() == pytest.approx(1.05)
    assert w.argmax() == 29  # onset + 3 h: the largest penalty for a miss
    with pytest.raises(ValueError, match="not defined"):
        sequence_task("mortality", weighting="utility")


def test_window_target() -> None:
    """The 'window' target adds the utility's rewarded alarm hours before SepsisLabel (from t_sepsis - 12 h,
    6 h before the label turns 1); the default trains on SepsisLabel itself; scoring never changes."""
    window = sequence_task("sepsis", target="window")
    labels = np.zeros(40, dtype=np.int64)
    np.testing.assert_array_equal(window.training_labels(labels), labels)  # a stay that never becomes septic
    labels[20:] = 1  # SepsisLabel from hour 20: t_sepsis = 26, the rewarded window starts at 14
    target = window.training_labels(labels)
    np.testing.assert_array_equal(np.flatnonzero(target), np.arange(14, 40))
    assert target.dtype == labels.dtype and labels[:20].sum() == 0  # the stay's own labels are untouched
    early = np.zeros(10, dtype=np.int64)
    early[3:] = 1  # septic from hour 3: the window starts before the stay does
    np.testing.assert_array_equal(window.training_labels(early), np.ones(10))
    np.testing.assert_array_equal(SEPSIS_TASK.training_labels(labels), labels)
    assert window.figures([labels], [labels.astype(float)], 0.5)["utility"] < 1.0  # scored against SepsisLabel
    with pytest.raises(ValueError, match="not defined"):
        sequence_task("mortality", target="window")


def test_auxiliary_horizon_targets() -> None:
    """SepsisLabel turns 1 at t_sepsis - 6 h (hour 20 here): onset within 12 h from hour 14, within 24 h from
    hour 2, and the whole stay is a septic one; a stay that never becomes septic has no positive target."""
    task = sequence_task("sepsis", auxiliary="horizons")
    labels = np.zeros(40, dtype=np.int64)
    labels[20:] = 1
    targets = task.auxiliary_targets(labels)  # (hours, 3)
    assert targets.shape == (40, 3)
    assert np.flatnonzero(targets[:, 0])[0] == 14 and targets[14:, 0].all()
    assert np.flatnonzero(targets[:, 1])[0] == 2 and targets[2:, 1].all()
    assert targets[:, 2].all()
    early = np.zeros(30, dtype=np.int64)
    early[5:] = 1  # onset within 24 h from before the stay began: every hour
    assert task.auxiliary_targets(early)[:, 1].all() and task.auxiliary_targets(early)[0, 0] == 1
    assert not task.auxiliary_targets(np.zeros(30, dtype=np.int64)).any()
    with pytest.raises(ValueError, match="auxiliary head 'horizons' is not defined for mortality"):
        sequence_task("mortality", auxiliary="horizons")


def test_the_named_choices_change_the_task_for_either_task_and_refuse_other_names() -> None:
    """The settings that are one of a few names (teacher row weights, weight averaging, batching, output head):
    each known name changes the task, the default gives back the shipped task itself, another name is refused
    with the choices."""
    for task in ("sepsis", "mortality"):
        shipped = sequence_task(task)
        other = "uniform" if shipped.teacher_hours == "task" else "task"
        changed = sequence_task(task, teacher_hours=other, weight_average="ema", batching="shuffled", head="mlp")
        assert (changed.teacher_hours, changed.weight_average, changed.batching, changed.head) == (
            other,
            "ema",
            "shuffled",
            "mlp",
        )
        keys = ("teacher_hours", "weight_average", "batching", "head")
        assert sequence_task(task, **{key: getattr(shipped, key) for key in keys}) == shipped
    for key, name, message in (
        ("teacher_hours", "last", "teacher row weights 'last': choose uniform or task"),
        ("weight_average", "swa", "weight averaging 'swa': choose none or ema"),
        ("batching", "random", "batching 'random': choose fixed or shuffled"),
        ("head", "deep", "output head 'deep': choose linear or mlp"),
    ):
        with pytest.raises(ValueError, match=message):
            sequence_task("sepsis", **{key: name})
