"""The tree teacher of the sequence models: cross-fitted, so no stay's soft target comes from trees that saw it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from models.sepsis_io import FEATURES, SepsisRecord
from models.train_sequence import (
    TEACHER_COLUMNS,
    TEACHER_PARAMS,
    _batch_drawer,
    _teacher_groups,
    stay_folds,
    teacher_targets,
)

#: long enough that one stay fills more than a leaf of the teacher's trees (``min_samples_leaf``): trees that
#: saw a stay can then recall its label, which is what the cross-fitted teacher must not be able to do
HOURS = 2 * int(TEACHER_PARAMS.get("min_samples_leaf", 20))


def _stays(n: int, seed: int) -> tuple[list[SepsisRecord], list[np.ndarray], list[np.ndarray]]:
    """Stays whose only feature is a unique id and whose label (every hour alike) is a coin flip: trees can
    learn a stay's label only by having seen that stay."""
    rng = np.random.default_rng(seed)
    septic = rng.random(n) < 0.5
    records, features, labels = [], [], []
    for i in range(n):
        y = np.full(HOURS, int(septic[i]), dtype=np.int64)
        values = np.full((HOURS, len(FEATURES)), np.nan, dtype=np.float32)
        records.append(SepsisRecord(name=f"p{i}", values=values, labels=y))
        # (hours, channels): the id, and no other channel measured (the trees leave unmeasured channels out)
        x = np.full((HOURS, TEACHER_COLUMNS), np.nan, dtype=np.float32)
        x[:, 0] = i
        features.append(x)
        labels.append(y)
    return records, features, labels


def _assert_never_scores_a_stay_it_saw(
    out: list[list[np.ndarray]], fold_of: np.ndarray, features: list[np.ndarray], labels: list[np.ndarray]
) -> None:
    folds = int(fold_of.max()) + 1
    assert len(out) == folds
    for k in range(folds):
        for i in range(len(labels)):
            if fold_of[i] == k:  # member k's held-out stays get no soft target
                assert out[k][i].size == 0
            else:
                assert out[k][i].shape == (HOURS,) and np.all((out[k][i] >= 0) & (out[k][i] <= 1))
    # The same trees fitted on every stay recall the coin flips from the ids; the cross-fitted teacher cannot.
    y = np.concatenate(labels)
    ids = np.concatenate(features)[:, :1]  # (hours, 1): the one measured channel
    memorised = HistGradientBoostingClassifier(**TEACHER_PARAMS, random_state=0).fit(ids, y)
    assert roc_auc_score(y, memorised.predict_proba(ids)[:, 1]) > 0.9
    for k in range(folds):
        train = np.flatnonzero(fold_of != k)
        auroc = roc_auc_score(np.concatenate([labels[i] for i in train]), np.concatenate([out[k][i] for i in train]))
        assert auroc < 0.75, f"member {k}: the teacher's targets recall the labels of stays the trees saw"


@pytest.mark.parametrize("folds", [2, 5])
def test_teacher_never_scores_a_stay_it_saw(folds: int) -> None:
    records, features, labels = _stays(48, seed=folds)
    fold_of = stay_folds(records, folds, seed=0)
    groups = _teacher_groups(records, fold_of, seed=0)
    _assert_never_scores_a_stay_it_saw(
        teacher_targets(features, labels, fold_of, groups, seed=0), fold_of, features, labels
    )


@pytest.mark.parametrize(("folds", "groups"), [(2, 4), (5, 3)])
def test_teacher_in_groups_never_scores_a_stay_it_saw(folds: int, groups: int) -> None:
    """``--teacher-groups G`` (SequenceTask.teacher_groups): the same guarantee, through the task's own teacher."""
    from models.sequence_tasks import Stay, sequence_task
    from models.train_sequence import task_teacher

    records, features, labels = _stays(48, seed=10 * folds + groups)
    stays = [Stay(r.name, r.values, y) for r, y in zip(records, labels, strict=True)]
    fold_of = stay_folds(records, folds, seed=0)
    out = task_teacher(sequence_task("sepsis", teacher_groups=groups), stays, features, fold_of, seed=0)
    _assert_never_scores_a_stay_it_saw(out, fold_of, features, labels)
    with pytest.raises(ValueError, match="at least 2 groups"):
        sequence_task("sepsis", teacher_groups=1)


def test_teacher_groups_split_two_folds_into_halves() -> None:
    records, _, _ = _stays(40, seed=0)
    fold_of = stay_folds(records, 2, seed=0)
    groups = _teacher_groups(records, fold_of, seed=0)
    assert sorted(np.unique(groups)) == [0, 1, 2, 3]
    assert np.array_equal(groups // 2, fold_of)  # each half stays inside its fold
    five = stay_folds(records, 5, seed=0)
    assert np.array_equal(_teacher_groups(records, five, seed=0), five)


def test_teacher_row_weights_decide_which_hours_the_trees_learn() -> None:
    """The last hour says the label; every earlier hour says its opposite. Unweighted trees follow the many
    earlier hours; trees whose rows are weighted onto the last hour follow it there."""
    from models.sequence_tasks import sequence_task

    rng = np.random.default_rng(0)
    records, features, labels = _stays(80, seed=3)
    for x, y in zip(features, labels, strict=True):
        x[:, 0] = 1 - y[0] + rng.normal(0, 0.1, HOURS)  # (hours,) the opposite of the label ...
        x[-1, 0] = y[0] + rng.normal(0, 0.1)  # ... except at the last hour
    fold_of = stay_folds(records, 2, seed=0)
    groups = _teacher_groups(records, fold_of, seed=0)
    last_only = [np.r_[np.zeros(HOURS - 1), 1.0].astype(np.float32) for _ in labels]

    def last_hour_auroc(hour_weights: list[np.ndarray] | None) -> float:
        out = teacher_targets(features, labels, fold_of, groups, seed=0, members=[0], hour_weights=hour_weights)[0]
        train = np.flatnonzero(fold_of != 0)
        return float(roc_auc_score([labels[i][-1] for i in train], [out[i][-1] for i in train]))

    assert last_hour_auroc(None) < 0.1
    assert last_hour_auroc(last_only) > 0.9
    mortality = sequence_task("mortality", teacher_hours="task")
    weights = mortality.teacher_rows(labels)
    assert weights is not None and weights[0][-1] == pytest.approx(HOURS / 2)  # half the stay's weight
    assert sequence_task("mortality").teacher_rows(labels) is None


def test_a_network_mask_restricts_the_members_not_the_teacher(psv_folder: Path) -> None:
    """``network_mask``: without a teacher, members trained on the flagged stays are the members trained on a
    set holding only those stays; with a teacher, they differ, because the teacher still fits on every stay."""
    from models.sequence import NormStats, engineer
    from models.sequence_tasks import SEPSIS_TASK
    from models.train_sequence import fit_fold_members

    stays = SEPSIS_TASK.load(psv_folder)
    stats = NormStats.fit_records([s.values for s in stays])
    features = [engineer(s.values, stats) for s in stays]
    fold_of = stay_folds(stays, 2, 0)
    mask = np.zeros(len(stays), dtype=bool)
    mask[::2] = True
    keep = mask | (fold_of == 0)  # member 0 trains on fold 1: its flagged stays, and it scores fold 0
    kept = np.flatnonzero(keep)
    common = {"epochs": 3, "batch_size": 4, "lr": 1e-2, "seed": 0, "label": "t", "members": [0], "score_held": False}

    def held_probs(teacher_weight: float, masked: bool) -> np.ndarray:
        if masked:
            _, oof, _ = fit_fold_members(
                SEPSIS_TASK, "lstm", stays, features, fold_of, teacher_weight=teacher_weight, network_mask=mask,
                **common,  # type: ignore[arg-type]
            )  # fmt: skip
            return np.concatenate([oof[i] for i in kept if fold_of[i] == 0])
        _, oof, _ = fit_fold_members(
            SEPSIS_TASK, "lstm", [stays[i] for i in kept], [features[i] for i in kept], fold_of[kept],
            teacher_weight=teacher_weight, **common,  # type: ignore[arg-type]
        )  # fmt: skip
        return np.concatenate([oof[j] for j, i in enumerate(kept) if fold_of[i] == 0])

    np.testing.assert_array_equal(held_probs(0.0, True), held_probs(0.0, False))
    with_teacher = held_probs(0.5, True), held_probs(0.5, False)
    assert np.abs(with_teacher[0] - with_teacher[1]).max() > 1e-3


def test_stay_aggregates_of_a_mortality_grid() -> None:
    """First, last, min, max, mean and count of each measured variable (NaN and 0 unmeasured), the urine's total,
    and the descriptors without the hour."""
    from models.mortality_features import MORTALITY_V1, stay_aggregates

    schema = MORTALITY_V1
    values = np.full((4, len(schema.columns)), np.nan)
    values[:, schema.columns.index("HR")] = [90, np.nan, 70, 80]
    values[[1, 3], schema.columns.index("Urine")] = [100, 50]
    values[:, schema.columns.index("Age")] = 66
    values[:, schema.columns.index("Hour")] = [1, 2, 3, 4]
    out = stay_aggregates(values, schema)
    assert len(out) == 6 * schema.n_measured + 1 + len(schema.static) - 1
    hr = 6 * schema.measured.index("HR")
    np.testing.assert_array_equal(out[hr : hr + 6], [90, 80, 70, 90, 80, 3])
    urine = 6 * schema.measured.index("Urine")
    np.testing.assert_array_equal(out[urine : urine + 7], [100, 50, 50, 100, 75, 2, 150])
    gcs = 6 * schema.measured.index("GCS")
    assert np.isnan(out[gcs : gcs + 5]).all() and out[gcs + 5] == 0
    assert out[-(len(schema.static) - 1)] == 66 and 4 not in out[-(len(schema.static) - 1) :]


def test_the_stay_level_teacher_changes_only_the_last_hour(mortality_folder: Path) -> None:
    """``--teacher hourly+stay``: every hour but the last is the hourly trees' probability; the last is the mean
    logit of theirs and of stay-level trees cross-fitted in the same groups. Sepsis does not define it."""
    from models.mortality_features import stay_aggregates
    from models.sequence import NormStats, engineer
    from models.sequence_tasks import sequence_task
    from models.train_sequence import AGGREGATE_PARAMS, _teacher_groups, task_teacher

    hourly, both = sequence_task("mortality", teacher="hourly"), sequence_task("mortality", teacher="hourly+stay")
    assert sequence_task("mortality") == both  # the shipped recipe (rule 23) is the default
    stays = hourly.load(mortality_folder)
    stats = NormStats.fit_records([s.values for s in stays], hourly.schema)
    features = [engineer(s.values, stats, hourly.schema) for s in stays]
    fold_of = stay_folds(stays, 3, 0)
    plain, mixed = (task_teacher(t, stays, features, fold_of, 0) for t in (hourly, both))
    rows = [stay_aggregates(s.values, hourly.schema)[None, :] for s in stays]
    stay_level = teacher_targets(
        rows, [s.labels[-1:] for s in stays], fold_of, _teacher_groups(stays, fold_of, 0), 0,
        columns=rows[0].shape[1], params=AGGREGATE_PARAMS,
    )  # fmt: skip
    changed = 0
    for k in range(3):
        for i in np.flatnonzero(fold_of != k):
            np.testing.assert_array_equal(mixed[k][i][:-1], plain[k][i][:-1])
            a, b = (np.log(p / (1 - p)) for p in (float(plain[k][i][-1]), float(stay_level[k][i][0])))
            assert mixed[k][i][-1] == pytest.approx(1 / (1 + np.exp(-(a + b) / 2)), rel=1e-5)
            changed += int(abs(mixed[k][i][-1] - plain[k][i][-1]) > 1e-4)
        assert all(len(mixed[k][i]) == 0 for i in np.flatnonzero(fold_of == k))
    assert changed > 0
    with pytest.raises(ValueError, match="not defined for sepsis"):
        sequence_task("sepsis", teacher="hourly+stay")


def test_thin_leaves_out_measured_values_only() -> None:
    """A thinned copy drops about THIN_DROP of the measured values of the time-varying columns, never adds one,
    keeps the static columns and leaves the original as it was."""
    from models.sequence_tasks import THIN_DROP
    from models.train_sequence import thin

    rng = np.random.default_rng(0)
    values = rng.normal(size=(400, 10)).astype(np.float32)  # (hours, columns): 7 measured, 3 static
    values[::3, 2] = np.nan  # a variable measured every third hour
    before = values.copy()
    out = thin(values, 7, rng)
    np.testing.assert_array_equal(values, before)
    np.testing.assert_array_equal(out[:, 7:], values[:, 7:])
    measured = ~np.isnan(values[:, :7])
    assert not (np.isnan(values[:, :7]) & ~np.isnan(out[:, :7])).any()  # nothing unmeasured becomes measured
    kept = ~np.isnan(out[:, :7])
    np.testing.assert_array_equal(out[:, :7][kept], values[:, :7][kept])
    assert abs((measured & ~kept).sum() / measured.sum() - THIN_DROP) < 0.02


def test_thinned_copies_are_scored_by_their_stays_trees_and_never_fitted_on() -> None:
    """``SequenceTask.thinned_copies``: a copy (here with its stay's very features) gets the probabilities of the
    trees that score its stay, trees fitted on the original stays only: the originals' targets are those without
    copies, copies with inverted labels change nothing, and no target recalls its stay's label."""
    from models.sequence_tasks import Stay, sequence_task
    from models.train_sequence import task_teacher

    n, folds = 40, 2  # two folds: the teacher's groups are random halves of each, drawn on the originals
    records, features, labels = _stays(n, seed=folds)
    stays = [Stay(r.name, r.values, y) for r, y in zip(records, labels, strict=True)]
    fold_of = stay_folds(records, folds, seed=0)
    task = sequence_task("sepsis", thinned_copies=2)
    plain = task_teacher(task, stays, features, fold_of, seed=0, members=[0])[0]
    source = np.r_[np.arange(n), np.arange(n), np.arange(n)]  # two copies of every stay, after the originals

    def copied(flip: bool) -> list[np.ndarray]:
        extra = [Stay(s.name, s.values, 1 - s.labels if flip else s.labels) for s in stays + stays]
        return task_teacher(task, stays + extra, features * 3, fold_of[source], 0, members=[0], source=source)[0]

    same, flipped = copied(False), copied(True)
    for i, j in enumerate(source):
        np.testing.assert_array_equal(same[i], plain[j])
        np.testing.assert_array_equal(flipped[i], plain[j])
    train = np.flatnonzero(fold_of[source] != 0)
    assert all(same[i].size == 0 for i in np.flatnonzero(fold_of[source] == 0))
    auroc = roc_auc_score(np.concatenate([labels[source[i]] for i in train]), np.concatenate([same[i] for i in train]))
    assert auroc < 0.75, "the teacher's targets recall the labels of stays the trees saw"
    with pytest.raises(ValueError, match="must come first"):
        wrong = np.r_[5, np.arange(1, n), np.arange(n)]  # a copy of stay 5 where stay 0 belongs
        task_teacher(task, stays + stays, features * 2, fold_of[wrong], seed=0, source=wrong)


def test_members_train_on_thinned_copies_and_score_the_original_stays(psv_folder: Path) -> None:
    """With thinned copies a member's held-out predictions cover the original stays only, and differ from the
    member trained without them; the copies need the features' normalisation."""
    from models.sequence import NormStats, engineer
    from models.sequence_tasks import SEPSIS_TASK, sequence_task
    from models.train_sequence import fit_fold_members, with_thinned_copies

    stays = SEPSIS_TASK.load(psv_folder)
    stats = NormStats.fit_records([s.values for s in stays])
    features = [engineer(s.values, stats) for s in stays]
    fold_of = stay_folds(stays, 2, 0)
    thinned = sequence_task("sepsis", thinned_copies=1)
    copies, copy_features, source = with_thinned_copies(thinned, stays, features, fold_of, [0], stats, seed=0)
    trained_on = np.flatnonzero(fold_of == 1)  # member 0 trains on fold 1: only its stays are copied
    np.testing.assert_array_equal(source, np.r_[np.arange(len(stays)), trained_on])
    assert len(copies) == len(copy_features) == len(stays) + len(trained_on)
    for i, j in zip(range(len(stays), len(copies)), trained_on, strict=True):
        assert copies[i].name == stays[j].name and copies[i].labels is stays[j].labels
        assert np.isnan(copies[i].values).sum() > np.isnan(stays[j].values).sum()
    common = {"epochs": 2, "batch_size": 4, "lr": 1e-2, "seed": 0, "label": "t", "members": [0], "score_held": False}

    def held(task: object) -> list[np.ndarray]:
        _, oof, _ = fit_fold_members(
            task, "lstm", stays, features, fold_of, teacher_weight=0.5, stats=stats,  # type: ignore[arg-type]
            **common,  # type: ignore[arg-type]
        )  # fmt: skip
        assert len(oof) == len(stays)
        return [oof[i] for i in np.flatnonzero(fold_of == 0)]

    plain, with_copies = held(SEPSIS_TASK), held(thinned)
    assert all(a.shape == b.shape == (len(stays[i].labels),) for a, b, i in zip(
        plain, with_copies, np.flatnonzero(fold_of == 0), strict=True))  # fmt: skip
    assert max(np.abs(a - b).max() for a, b in zip(plain, with_copies, strict=True)) > 1e-3
    with pytest.raises(ValueError, match="pass stats"):
        fit_fold_members(thinned, "lstm", stays, features, fold_of, teacher_weight=0.5, **common)  # type: ignore[arg-type]


def test_weight_average_keeps_the_moving_average_of_every_step(psv_folder: Path) -> None:
    """``SequenceTask.weight_average``: "ema" returns the exponential moving average of the weights after every
    optimizer step, decay 1 - 1 / steps per epoch; "none" returns the last step's weights."""
    import math

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from models.sequence import NormStats, SequenceConfig, engineer
    from models.sequence_tasks import SEPSIS_TASK, sequence_task
    from models.train_sequence import _fit_member

    stays = SEPSIS_TASK.load(psv_folder)
    stats = NormStats.fit_records([s.values for s in stays])
    features = [engineer(s.values, stats) for s in stays]
    labels = [s.labels.astype(np.float32) for s in stays]
    config = SequenceConfig(arch="lstm", members=1, encoder="mlp", n_input=SEPSIS_TASK.schema.n_input)
    batch_size, epochs = 4, 3

    def trained(weight_average: str) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        steps: list[list[torch.Tensor]] = []

        def record(optimizer: torch.optim.Optimizer, *_: object) -> None:
            steps.append([p.detach().clone() for group in optimizer.param_groups for p in group["params"]])

        handle = register_optimizer_step_post_hook(record)
        try:
            model, _ = _fit_member(
                config, features, labels, [], [], epochs=epochs, batch_size=batch_size, lr=1e-2, seed=0, label="t",
                task=sequence_task("sepsis", weight_average=weight_average),
            )  # fmt: skip
        finally:
            handle.remove()
        return [p.detach() for p in model.parameters()], steps

    last, steps = trained("none")
    per_epoch = math.ceil(len(stays) / batch_size)
    assert len(steps) == epochs * per_epoch > 2
    for kept, final in zip(last, steps[-1], strict=True):
        torch.testing.assert_close(kept, final, rtol=0, atol=0)

    averaged, ema_steps = trained("ema")
    for a, b in zip(steps[-1], ema_steps[-1], strict=True):  # the average does not change the training itself
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    decay = 1.0 - 1.0 / per_epoch
    expected = [p.clone() for p in steps[0]]
    for step in steps[1:]:
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, step, strict=True)]
    for kept, want in zip(averaged, expected, strict=True):
        torch.testing.assert_close(kept, want, rtol=1e-5, atol=1e-6)
    assert max(float((a - b).abs().max()) for a, b in zip(averaged, last, strict=True)) > 1e-4
    with pytest.raises(ValueError, match="choose none or ema"):
        sequence_task("sepsis", weight_average="swa")


def test_tempered_teacher_matches_the_teachers_log_odds() -> None:
    """``SequenceTask.teacher_temperature``: at 1 the targets are today's blend and no tempered share; above 1
    the labels stay hard, the teacher's share is minimised at logit(teacher) + log POS_WEIGHT (the label term's
    offset) at every temperature, and at a high temperature it pulls a logit towards that point in proportion to
    the distance, which is what ranks low-risk hours as the teacher does."""
    import torch

    from models.sequence_tasks import sequence_task
    from models.train_sequence import POS_WEIGHT, hour_loss, member_targets

    teacher = [np.array([0.002, 0.02, 0.3, 0.9], dtype=np.float32)]  # (hours,)
    labels = [np.array([0, 0, 1, 1])]
    idx = np.array([0])
    blend, none = member_targets(labels, teacher, idx, 0.9)
    assert none is None
    np.testing.assert_allclose(blend[0], 0.1 * labels[0] + 0.9 * teacher[0], rtol=1e-6)
    assert member_targets(labels, None, idx, 0.9, 4.0)[1] is None  # no teacher, nothing to temper

    optimum = np.log(teacher[0] / (1 - teacher[0])) + np.log(POS_WEIGHT)  # (hours,)
    for temperature in (2.0, 4.0, 50.0):
        hard, tempered = member_targets(labels, teacher, idx, 1.0, temperature)  # the teacher's share alone
        assert tempered is not None and tempered.temperature == temperature
        np.testing.assert_array_equal(hard[0], labels[0])
        soft = torch.from_numpy(tempered.targets[0])[None]  # (1, hours)
        y = torch.from_numpy(hard[0])[None]

        def grad(
            at: np.ndarray, soft: torch.Tensor = soft, y: torch.Tensor = y, tempered: object = tempered
        ) -> np.ndarray:
            z = torch.tensor(at[None], dtype=torch.float32, requires_grad=True)  # (1, hours)
            hour_loss(z, y, tempered, soft).sum().backward()  # type: ignore[arg-type]
            assert z.grad is not None
            return z.grad[0].numpy()

        np.testing.assert_allclose(grad(optimum), 0.0, atol=1e-5)
        assert np.all(grad(optimum + 1) > 0) and np.all(grad(optimum - 1) < 0)
        if temperature == 50.0:  # T^2 x BCE(z / T, .) -> (z - optimum)^2 / 8: the gradient is the distance / 4
            np.testing.assert_allclose(grad(optimum + 2), 0.5, rtol=0.02)
    # a weight between: (1 - w) of the labels' BCE, w of the teacher's share
    _, tempered = member_targets(labels, teacher, idx, 0.9, 4.0)
    assert tempered is not None
    z = torch.zeros(1, 4)
    soft = torch.from_numpy(tempered.targets[0])[None]
    y = torch.from_numpy(labels[0].astype(np.float32))[None]
    labelled = torch.nn.functional.binary_cross_entropy_with_logits(
        z, y, pos_weight=torch.tensor(POS_WEIGHT), reduction="none"
    )
    taught = 16 * torch.nn.functional.binary_cross_entropy_with_logits(z / 4, soft, reduction="none")
    torch.testing.assert_close(hour_loss(z, y, tempered, soft), 0.1 * labelled + 0.9 * taught)
    assert sequence_task("sepsis", teacher_temperature=4).teacher_temperature == 4.0
    assert sequence_task("sepsis", teacher_temperature=1) is sequence_task("sepsis")
    with pytest.raises(ValueError, match="at least 1"):
        sequence_task("sepsis", teacher_temperature=0.5)


def test_members_learn_the_tempered_teacher(psv_folder: Path) -> None:
    """``fit_fold_members`` hands the tempered teacher's share to each member: at temperature 4 the members differ
    from those at 1 and from those trained on the labels alone (what a member dropping the share would be);
    without a teacher the temperature changes nothing."""
    from models.sequence import NormStats, engineer
    from models.sequence_tasks import SEPSIS_TASK, sequence_task
    from models.train_sequence import fit_fold_members

    stays = SEPSIS_TASK.load(psv_folder)
    stats = NormStats.fit_records([s.values for s in stays])
    features = [engineer(s.values, stats) for s in stays]
    fold_of = stay_folds(stays, 2, 0)
    common = {"epochs": 2, "batch_size": 4, "lr": 1e-2, "seed": 0, "label": "t", "members": [0], "score_held": False}
    tempered = sequence_task("sepsis", teacher_temperature=4)

    def held(task: object, teacher_weight: float) -> np.ndarray:
        _, oof, _ = fit_fold_members(
            task, "lstm", stays, features, fold_of, teacher_weight=teacher_weight, stats=stats,  # type: ignore[arg-type]
            **common,  # type: ignore[arg-type]
        )  # fmt: skip
        return np.concatenate([oof[i] for i in np.flatnonzero(fold_of == 0)])  # (held-out hours,)

    at_four, at_one, labels_only = held(tempered, 0.9), held(SEPSIS_TASK, 0.9), held(SEPSIS_TASK, 0.0)
    assert np.abs(at_four - at_one).max() > 1e-3
    assert np.abs(at_four - labels_only).max() > 1e-3
    np.testing.assert_array_equal(held(tempered, 0.0), labels_only)


def test_batching_fixed_repeats_its_batches_and_shuffled_draws_new_ones() -> None:
    """``SequenceTask.batching``: "fixed" cuts the pool sorted by length once and trains the same batches every
    epoch (in a new order); "shuffled" draws new batches every epoch, each of alike lengths within its random pool
    of ``BATCH_POOL`` batches. Both give every stay of the pool (a repeated stay as often as it is repeated) once an
    epoch, in as many batches."""
    lengths = np.random.default_rng(1).integers(8, 300, size=700)  # (stays,) hours
    pool = np.concatenate([np.arange(700), np.arange(0, 700, 7)])  # every 7th stay oversampled twice
    batch_size = 16
    steps = -(-len(pool) // batch_size)

    def epochs(batching: str) -> list[list[np.ndarray]]:
        draw = _batch_drawer(pool, lengths, batch_size, batching, np.random.default_rng(0))
        return [draw() for _ in range(3)]

    def as_sets(batches: list[np.ndarray]) -> set[tuple[int, ...]]:
        return {tuple(sorted(b.tolist())) for b in batches}

    fixed, shuffled = epochs("fixed"), epochs("shuffled")
    for epoch in fixed + shuffled:
        assert len(epoch) == steps and max(len(b) for b in epoch) == batch_size
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.sort(pool))
    # fixed: today's batches, the pool sorted by length and cut, the same every epoch in another order
    order = pool[np.argsort(lengths[pool], kind="stable")]
    today = as_sets([order[i : i + batch_size] for i in range(0, len(order), batch_size)])
    assert all(as_sets(epoch) == today for epoch in fixed)
    assert [b.tolist() for b in fixed[0]] != [b.tolist() for b in fixed[1]]
    # shuffled: other batches every epoch, hardly any shared; each of lengths adjacent within a pool of stays
    assert len(as_sets(shuffled[0]) & as_sets(shuffled[1])) < steps // 10
    assert len(as_sets(shuffled[0]) & today) < steps // 10
    spread = [np.ptp(lengths[b]) for b in shuffled[0]]
    fully_random = [np.ptp(lengths[b]) for b in np.array_split(np.random.default_rng(2).permutation(pool), steps)]
    assert np.mean(spread) < np.mean(fully_random) / 3


def test_the_tasks_output_head_builds_the_members(psv_folder: Path) -> None:
    """``SequenceTask.head`` "mlp" reaches the members' config (which rebuilds them) and gives each a hidden layer
    of twice the width before its logit; "linear", the default, keeps the committed checkpoints' layout (one
    layer, the same parameter names), so they load as before."""
    from models.checkpoint import load_checkpoint
    from models.sequence import NormStats, SequenceConfig, build_sequence_model, engineer
    from models.sequence_tasks import SEPSIS_TASK, sequence_task
    from models.train_sequence import fit_fold_members

    stays = SEPSIS_TASK.load(psv_folder)
    stats = NormStats.fit_records([s.values for s in stays])
    features = [engineer(s.values, stats) for s in stays]
    fold_of = stay_folds(stays, 2, 0)
    model, oof, _ = fit_fold_members(
        sequence_task("sepsis", head="mlp"), "lstm", stays, features, fold_of, epochs=1, batch_size=4, lr=1e-2,
        seed=0, teacher_weight=0.0, label="t", members=[0], score_held=False,
    )  # fmt: skip
    assert model.config.head == "mlp"
    shapes = [tuple(p.shape) for name, p in model.named_parameters() if name.startswith("head.")]
    width = model.config.d_model
    assert shapes == [(2 * width, 2 * width), (2 * width,), (1, 2 * width), (1,)]
    assert all(np.isfinite(oof[i]).all() and len(oof[i]) for i in np.flatnonzero(fold_of == 0))
    rebuilt = build_sequence_model(SequenceConfig.model_validate(model.config.model_dump()))
    rebuilt.load_state_dict(model.state_dict())  # the config alone rebuilds the member
    for name in ("lstm", "transformer"):
        meta, state = load_checkpoint(Path(__file__).resolve().parents[2] / "models" / "weights" / name)
        assert SequenceConfig.model_validate(meta.config).head == "linear"
        build_sequence_model(SequenceConfig.model_validate(meta.config)).load_state_dict(state)


def test_stays_that_cannot_fill_every_fold_are_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A whole --data folder (no --limit) with fewer stays of an outcome than folds trained every fold, then had no
    septic stay to choose a threshold on (a traceback), or silently made fewer folds. It is now refused as soon as
    the stays are read: ``TrainingDataError`` from ``train_sequence``, status 2 from ``python -m models.train``."""
    from models.protocol import is_reserved
    from models.sequence_tasks import SEPSIS_TASK
    from models.train import main as train_main
    from tests.models.conftest import synthetic_stay, write_psv

    data = tmp_path / "stays"
    data.mkdir()
    rng = np.random.default_rng(3)
    names = [f"s{i}" for i in range(8)]
    for name in names:  # none septic
        write_psv(data / f"{name}.psv", *synthetic_stay(rng, 20, septic=False))
    others = sum(not is_reserved(name) for name in names)
    out = tmp_path / "out"
    argv = ["lstm", "--data", str(data), "--out", str(out), "--folds", "2", "--epochs", "1", "--threads", "1"]
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    said = (
        f"python -m models.train: error: {data} holds {others} stay(s) outside the protocol's reserve (0 septic, "
        f"{others} the others): each of the 2 folds needs one of each outcome, so at least 2 of each"
    )
    assert err.startswith(said), err
    assert not out.exists()

    from models.train_sequence import TrainingDataError, train_sequence

    write_psv(data / "s9.psv", *synthetic_stay(rng, 20, septic=True))  # one septic stay: not one per fold
    assert not is_reserved("s9")
    kwargs = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "seed": 0, "folds": 2, "task": SEPSIS_TASK}
    with pytest.raises(TrainingDataError, match=r"holds 9 stay\(s\) \(1 septic, 8 the others\): each of the 2 folds"):
        train_sequence("lstm", data, out, **kwargs)  # type: ignore[arg-type]
    assert not out.exists()
