"""The evaluation protocol: a reserve fixed by name, thresholds never chosen on the stays they score, paired
comparisons, and a run end to end on generated stays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.protocol import (
    RESERVE_FRACTION,
    Comparison,
    ProtocolReport,
    _Held,
    compare,
    ensemble_runs,
    is_reserved,
    main,
    run_protocol,
    score_repeats,
    split_masks,
)
from models.sequence_tasks import SEPSIS_TASK, Stay


def test_reserve_is_a_fixed_share_chosen_by_name() -> None:
    names = [f"p{i:06d}.psv" for i in range(20000)]
    reserved = [is_reserved(n) for n in names]
    assert abs(np.mean(reserved) - RESERVE_FRACTION) < 0.01
    assert [is_reserved(n) for n in reversed(names)] == reserved[::-1]  # not the order
    assert all(is_reserved(n) == is_reserved(Path(n).stem) for n in names[:200])  # not the suffix


def _stays(n: int, seed: int) -> list[Stay]:
    rng = np.random.default_rng(seed)
    stays = []
    for i in range(n):
        hours = int(rng.integers(10, 30))
        labels = np.zeros(hours, dtype=np.int64)
        if i % 4 == 0:
            labels[hours // 2 :] = 1
        stays.append(Stay(f"s{i}", np.zeros((hours, 1), dtype=np.float32), labels))
    return stays


def test_a_repeat_threshold_never_sees_its_own_labels() -> None:
    """For every repeat: flipping the labels of its held-out stays changes its figures, never its threshold (nor
    the risk smoother chosen with it); each threshold is the one its own pool (the other repeats' held-out stays
    outside its own) chooses."""
    stays = _stays(120, 0)
    rng = np.random.default_rng(1)
    masks = split_masks(stays, 4)
    idx = [np.flatnonzero(m) for m in masks]
    held = [_Held(i, [0.7 * rng.random(len(stays[j].labels)) + 0.3 * stays[j].labels for j in i]) for i in idx]
    smoothers = ("none", "ema2", "max3")
    before, before_s = score_repeats(SEPSIS_TASK, stays, held), score_repeats(SEPSIS_TASK, stays, held, smoothers)
    for r, h in enumerate(held):
        flipped = [Stay(s.name, s.values, s.labels.copy()) for s in stays]
        for i in h.idx:
            flipped[i].labels = (1 - flipped[i].labels) if i % 2 else flipped[i].labels
        after, after_s = score_repeats(SEPSIS_TASK, flipped, held), score_repeats(SEPSIS_TASK, flipped, held, smoothers)
        assert after[r][0] == before[r][0] and after[r][1] != before[r][1], r
        assert (after_s[r][0], after_s[r][2]) == (before_s[r][0], before_s[r][2]), r
        own = set(h.idx.tolist())
        pool = [
            (i, p) for q, o in enumerate(held) if q != r for i, p in zip(o.idx, o.probs, strict=True) if i not in own
        ]
        assert before[r][0] == SEPSIS_TASK.choose_threshold([stays[i].labels for i, _ in pool], [p for _, p in pool])[0]
    assert len({t for t, _, _ in before}) > 1  # the pools differ, and so do their thresholds
    # a threshold chosen elsewhere is used as it is, for every repeat
    fixed = score_repeats(SEPSIS_TASK, stays, held, threshold=0.5)
    assert [t for t, _, _ in fixed] == [0.5] * 4
    assert fixed[0][1] == SEPSIS_TASK.figures([stays[i].labels for i in held[0].idx], held[0].probs, 0.5)


def test_the_rule_on_paired_gains() -> None:
    from models.protocol import Comparison

    def gains(primary: list[float], auroc: list[float]) -> Comparison:
        g = {"utility": primary, "auroc": auroc}
        return Comparison(
            old="a", new="b", gains=g,
            gain_mean={k: float(np.mean(v)) for k, v in g.items()},
            gain_std={k: float(np.std(v, ddof=1)) for k, v in g.items()}, test_share=0.25,
        )  # fmt: skip

    assert gains([0.02, 0.03, 0.025], [0.0, 0.001, -0.001]).adopted("utility")
    assert not gains([0.02, -0.01, 0.03], [0.0, 0.001, -0.001]).adopted("utility")  # smaller than its spread
    assert not gains([0.02, 0.03, 0.025], [-0.01, -0.012, -0.011]).adopted("utility")  # AUROC falls
    assert gains([0.02, 0.03, 0.025], [0.0, 0.0, 0.0]).adopted("utility")  # a threshold cannot move AUROC


def test_splits_are_stratified_and_differ() -> None:
    stays = _stays(200, 2)
    masks = split_masks(stays, 3)
    septic = np.array([s.labels.any() for s in stays])
    for m in masks:
        assert m.sum() == 40 and septic[m].sum() == 10
    assert not np.array_equal(masks[0], masks[1])


@pytest.fixture(scope="module")
def tiny_runs(psv_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two protocol runs (LSTM, 2 repeats of 1 epoch) on the generated stays, with different seeds."""
    root = tmp_path_factory.mktemp("protocol")
    for seed in (0, 1):
        run_protocol(
            SEPSIS_TASK, "lstm", psv_folder, root / f"run{seed}",
            repeats=2, epochs=1, batch_size=8, lr=2e-3, seed=seed, teacher_weight=0.5,
        )  # fmt: skip
    return root / "run0", root / "run1"


def test_a_run_reports_every_repeat(tiny_runs: tuple[Path, Path]) -> None:
    report = ProtocolReport.model_validate_json((tiny_runs[0] / "report.json").read_text())
    assert len(report.repeats) == 2 and report.n_reserve > 0  # the generated names put some in the reserve
    assert set(report.mean) == {"auroc", "utility"}
    for r in report.repeats:
        assert r.n_test + r.n_train == report.n_development and 0 <= r.figures["auroc"] <= 1
    values = [r.figures["utility"] for r in report.repeats]
    assert report.mean["utility"] == pytest.approx(np.mean(values))
    assert report.std["utility"] == pytest.approx(np.std(values, ddof=1))


def test_compare_is_paired_and_applies_the_rule(tiny_runs: tuple[Path, Path]) -> None:
    same = compare(tiny_runs[0], tiny_runs[0])
    assert all(g == 0 for gains in same.gains.values() for g in gains)
    assert not same.adopted("utility")  # no gain is not a gain larger than its spread
    other = compare(tiny_runs[0], tiny_runs[1])
    a, b = (ProtocolReport.model_validate_json((p / "report.json").read_text()) for p in tiny_runs)
    assert other.gains["auroc"][1] == pytest.approx(b.repeats[1].figures["auroc"] - a.repeats[1].figures["auroc"])
    assert same.corrected_t("auroc") == 0.0 and same.corrected_p("auroc") == pytest.approx(0.5)
    assert other.test_share == pytest.approx(np.mean([r.n_test / r.n_train for r in a.repeats]))


def test_the_corrected_t_widens_the_spread_for_overlapping_splits() -> None:
    """Nadeau and Bengio's correction: with 8 repeats of 80/20 splits (held-out / training 0.25) the gains'
    variance counts 1/8 + 1/4 = 3/8 instead of 1/8, so the t is the plain one / sqrt(3); the rule's threshold, a
    mean gain equal to its spread, is a one-sided p of about 0.07 there, not 0.013."""
    gains = [0.01, 0.02, -0.005, 0.015, 0.0, 0.03, 0.012, 0.008]
    mean, std = float(np.mean(gains)), float(np.std(gains, ddof=1))
    comparison = Comparison(
        old="a", new="b", gain_mean={"utility": mean}, gain_std={"utility": std}, gains={"utility": gains},
        test_share=0.25,
    )  # fmt: skip
    plain = mean / (std / np.sqrt(8))
    assert comparison.corrected_t("utility") == pytest.approx(plain / np.sqrt(3))
    at_the_rule = Comparison(
        old="a", new="b", gain_mean={"utility": 0.01}, gain_std={"utility": 0.01}, gains={"utility": gains},
        test_share=0.25,
    )  # fmt: skip
    assert at_the_rule.corrected_p("utility") == pytest.approx(0.0732, abs=5e-4)
    # rule 1 adopts at a mean gain just above its spread; from rule 37 on the corrected p must also be below 0.05
    above = Comparison(
        old="a", new="b", gain_mean={"utility": 0.0101, "auroc": 0.0}, gain_std={"utility": 0.01, "auroc": 0.001},
        gains={"utility": gains, "auroc": [0.0] * 8}, test_share=0.25,
    )  # fmt: skip
    assert above.adopted("utility") and not above.adopted("utility", corrected=True)
    clear = above.model_copy(update={"gain_mean": {"utility": 0.0125, "auroc": 0.0}})
    assert clear.corrected_p("utility") < 0.05 and clear.adopted("utility", corrected=True)
    none = Comparison(
        old="a", new="b", gain_mean={"utility": 0.0}, gain_std={"utility": 0.0}, gains={"utility": [0.0] * 8},
        test_share=0.25,
    )  # fmt: skip
    assert none.corrected_t("utility") == 0.0


def test_ensemble_of_a_run_with_itself_is_the_run(
    tiny_runs: tuple[Path, Path], psv_folder: Path, tmp_path: Path
) -> None:
    report = ensemble_runs(SEPSIS_TASK, [tiny_runs[0], tiny_runs[0]], psv_folder, tmp_path / "ens", "test")
    single = ProtocolReport.model_validate_json((tiny_runs[0] / "report.json").read_text())
    assert report.mean["auroc"] == pytest.approx(single.mean["auroc"], abs=1e-6)
    assert main(["compare", str(tiny_runs[0]), str(tmp_path / "ens")]) == 0


def test_attach_then_confirm_the_reserve_once(
    tiny_runs: tuple[Path, Path], tiny_lstm: Path, psv_folder: Path, tmp_path: Path
) -> None:
    import shutil

    from models.cards import read_card

    weights = tmp_path / "lstm"
    shutil.copytree(tiny_lstm, weights)
    with pytest.raises(SystemExit):  # nothing attached yet: no protocol to confirm
        main(["confirm", "lstm", "--weights", str(weights), "--data", str(psv_folder)])
    assert main(["attach", str(tiny_runs[0]), "--weights", str(weights)]) == 0
    card = read_card(weights)
    assert card.protocol is not None and card.protocol.reserve is None and card.protocol.repeats == 2
    assert main(["confirm", "lstm", "--weights", str(weights), "--data", str(psv_folder)]) == 0
    card = read_card(weights)
    assert card.protocol is not None and card.protocol.reserve is not None
    assert card.protocol.n_reserve == sum(is_reserved(p.name) for p in psv_folder.glob("*.psv"))
    assert set(card.protocol.reserve) == {"auroc", "utility"}
    md = (weights / "card.md").read_text()
    assert "Evaluation protocol" in md and "**Reserve**" in md
    with pytest.raises(SystemExit):  # the reserve is scored once per checkpoint
        main(["confirm", "lstm", "--weights", str(weights), "--data", str(psv_folder)])
    assert main(["attach", str(tiny_runs[1]), "--weights", str(weights)]) == 0  # re-attaching keeps the reserve
    assert read_card(weights).protocol.reserve == card.protocol.reserve  # type: ignore[union-attr]


def test_an_interrupted_run_resumes_after_its_last_saved_repeat(
    tiny_runs: tuple[Path, Path], psv_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    from models.protocol import _save_predictions, development_stays, load_held

    out = tmp_path / "run"
    shutil.copytree(tiny_runs[0], out)
    before = ProtocolReport.model_validate_json((out / "report.json").read_text())
    stays, _ = development_stays(SEPSIS_TASK, psv_folder)
    _save_predictions(out, stays, load_held(out, stays)[:1])  # as if stopped after the first repeat
    partial = json.loads((out / "partial.json").read_text())
    (out / "partial.json").write_text(json.dumps({**partial, "seconds": partial["seconds"][:1]}))
    (out / "report.json").unlink()
    after = run_protocol(
        SEPSIS_TASK, "lstm", psv_folder, out,
        repeats=2, epochs=1, batch_size=8, lr=2e-3, seed=0, teacher_weight=0.5,
    )  # fmt: skip
    assert "resuming after 1 saved repeat" in capsys.readouterr().err
    assert after.repeats[0].figures == before.repeats[0].figures
    assert after.repeats[0].seconds == before.repeats[0].seconds
    # a setting at its default is not recorded: the runs saved before it existed lack it, and resume by these keys
    assert set(after.settings) == {
        "repeats", "epochs", "batch_size", "lr", "seed", "teacher_weight", "schema", "weighting", "target",
        "teacher_hours",
    }  # fmt: skip


def test_rescore_with_smoothers_or_a_threshold(tiny_runs: tuple[Path, Path], psv_folder: Path, tmp_path: Path) -> None:
    """``rescore``: the run's own predictions, no training; with ``none`` alone it is the run itself."""
    from models.protocol import rescore_run

    run = ProtocolReport.model_validate_json((tiny_runs[0] / "report.json").read_text())
    same = rescore_run(SEPSIS_TASK, tiny_runs[0], psv_folder, tmp_path / "same", "test")
    assert [r.figures for r in same.repeats] == [r.figures for r in run.repeats]
    assert main(["rescore", str(tiny_runs[0]), "--out", str(tmp_path / "again"), "--data", str(psv_folder)]) == 0
    again = ProtocolReport.model_validate_json((tmp_path / "again" / "report.json").read_text())
    assert [(r.threshold, r.figures, r.n_train) for r in again.repeats] == [
        (r.threshold, r.figures, r.n_train) for r in run.repeats
    ]
    assert set(again.settings) == {"source", "smoothers"} and again.settings["smoothers"] == "none"
    assert (tmp_path / "again" / str(again.settings["source"])).resolve() == tiny_runs[0].resolve()
    assert (
        main(["rescore", str(tiny_runs[0]), "--smooth", "--out", str(tmp_path / "smooth"), "--data", str(psv_folder)])
        == 0
    )
    smooth = ProtocolReport.model_validate_json((tmp_path / "smooth" / "report.json").read_text())
    assert smooth.settings["smoothers"] == "none ema1 ema2 ema4 max3 max6"
    assert all(r.smoother in smooth.settings["smoothers"].split() for r in smooth.repeats)  # type: ignore[union-attr]
    assert (
        main(["rescore", str(tiny_runs[0]), "--by-hour", "--out", str(tmp_path / "hour"), "--data", str(psv_folder)])
        == 0
    )
    hour = ProtocolReport.model_validate_json((tmp_path / "hour" / "report.json").read_text())
    assert hour.settings["smoothers"] == "none hour-0.6 hour-0.4 hour-0.2 hour+0.2 hour+0.4 hour+0.6"
    assert all(r.smoother in hour.settings["smoothers"].split() for r in hour.repeats)  # type: ignore[union-attr]
    assert (
        main(
            [
                "rescore",
                str(tiny_runs[0]),
                "--threshold",
                "0.3",
                "--out",
                str(tmp_path / "t"),
                "--data",
                str(psv_folder),
            ]
        )
        == 0
    )
    at = ProtocolReport.model_validate_json((tmp_path / "t" / "report.json").read_text())
    assert [r.threshold for r in at.repeats] == [0.3, 0.3]
    assert [r.figures["auroc"] for r in at.repeats] == [r.figures["auroc"] for r in run.repeats]
    with pytest.raises(SystemExit):  # one way of rescoring at a time
        main(["rescore", str(tiny_runs[0]), "--smooth", "--threshold", "0.3", "--out", str(tmp_path / "x")])


def test_set_threshold_moves_the_checkpoint_and_keeps_the_earlier_reserve(
    tiny_runs: tuple[Path, Path], tiny_lstm: Path, psv_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rule 14: a run's threshold becomes the checkpoint's, in model.pt and the card, whose out-of-fold evaluation
    is recomputed at it; the reserve figure at the old threshold is kept, and the reserve may be scored once more."""
    import shutil

    from models.calibrate_sepsis import out_of_fold
    from models.cards import read_card
    from models.checkpoint import load_checkpoint
    from models.metrics import normalized_utility

    weights = tmp_path / "lstm"
    shutil.copytree(tiny_lstm, weights)
    assert main(["attach", str(tiny_runs[0]), "--weights", str(weights)]) == 0
    assert main(["confirm", "lstm", "--weights", str(weights), "--data", str(psv_folder)]) == 0
    first = read_card(weights).protocol.reserve  # type: ignore[union-attr]
    old = load_checkpoint(weights)[0].threshold
    run = ProtocolReport.model_validate_json((tiny_runs[0] / "report.json").read_text())
    assert run.threshold != old
    assert main(["set-threshold", str(tiny_runs[0]), "lstm", "--weights", str(weights), "--data", str(psv_folder)]) == 0
    meta = load_checkpoint(weights)[0]
    card = read_card(weights)
    assert meta.threshold == card.threshold == run.threshold
    assert "rule 14" in card.threshold_rule and run.command in card.threshold_rule
    assert "chosen by the protocol" in card.evaluation_dataset and "also chosen on them" not in card.evaluation_dataset
    oof = out_of_fold("lstm", weights, psv_folder)
    labels, probs = [s.labels for s in oof.records], oof.probabilities()
    assert card.evaluation.threshold == run.threshold
    assert card.evaluation.utility == pytest.approx(normalized_utility(labels, [p >= run.threshold for p in probs]))
    assert card.protocol is not None and card.protocol.reserve is None
    assert [(e.threshold, e.figures) for e in card.protocol.earlier_reserves] == [(old, first)]
    assert main(["attach", str(tiny_runs[0]), "--weights", str(weights)]) == 0  # re-attaching keeps them
    assert [(e.threshold, e.figures) for e in read_card(weights).protocol.earlier_reserves] == [(old, first)]  # type: ignore[union-attr]
    assert main(["confirm", "lstm", "--weights", str(weights), "--data", str(psv_folder)]) == 0
    card = read_card(weights)
    assert card.protocol is not None and card.protocol.reserve is not None
    assert card.protocol.reserve["auroc"] == pytest.approx(first["auroc"])  # the same weights, another threshold
    assert f"earlier threshold {old:.4f}" in (weights / "card.md").read_text()
    smoothed = tmp_path / "smoothed"  # thresholds chosen for a smoothed risk do not fit the served raw risk
    assert main(["rescore", str(tiny_runs[0]), "--smooth", "--out", str(smoothed), "--data", str(psv_folder)]) == 0
    report = ProtocolReport.model_validate_json((smoothed / "report.json").read_text())
    report.repeats[0].smoother = "max3"  # whatever this tiny run chose, one repeat smoothed
    (smoothed / "report.json").write_text(report.model_dump_json())
    with pytest.raises(SystemExit):
        main(["set-threshold", str(smoothed), "lstm", "--weights", str(weights), "--data", str(psv_folder)])
    assert "thresholds for a smoothed risk" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a mortality run does not fit a sepsis checkpoint
        report = run.model_copy(update={"task": "mortality", "schema_name": "mortality-v1"})
        wrong = tmp_path / "wrong"
        shutil.copytree(tiny_runs[0], wrong)
        (wrong / "report.json").write_text(report.model_dump_json())
        main(["set-threshold", str(wrong), "lstm", "--weights", str(weights), "--data", str(psv_folder)])


def test_a_run_of_the_shipped_ensemble_per_split(
    tiny_runs: tuple[Path, Path], psv_folder: Path, tmp_path: Path
) -> None:
    """``--folds 2``: each split trains the shipped procedure (2 fold networks, their mean logit) instead of one
    network; the same held-out stays are scored, the settings say so, and the predictions are not one network's."""
    from models.protocol import development_stays, load_held

    report = run_protocol(
        SEPSIS_TASK, "lstm", psv_folder, tmp_path / "ens",
        repeats=2, epochs=1, batch_size=8, lr=2e-3, seed=0, teacher_weight=0.5, folds=2,
    )  # fmt: skip
    single = ProtocolReport.model_validate_json((tiny_runs[0] / "report.json").read_text())
    assert report.settings == {**single.settings, "folds": 2}
    stays, _ = development_stays(SEPSIS_TASK, psv_folder)
    ens, one = load_held(tmp_path / "ens", stays), load_held(tiny_runs[0], stays)
    for a, b in zip(ens, one, strict=True):
        assert np.array_equal(a.idx, b.idx)
        assert [len(p) for p in a.probs] == [len(p) for p in b.probs]
        assert all(np.all((p > 0) & (p < 1)) for p in a.probs)
    assert not np.allclose(np.concatenate(ens[0].probs), np.concatenate(one[0].probs))


def test_attach_says_which_procedure_the_card_figures_measure(
    tiny_runs: tuple[Path, Path],
    tiny_lstm: Path,
    psv_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A card's protocol section says whether one network or the checkpoint's K-fold procedure was trained per
    split, and whether every split was scored at the checkpoint's own threshold; attach refuses a run of another
    network, a smoothed risk or another fixed threshold, and set-threshold refuses to leave such figures stale."""
    import shutil

    from models.cards import read_card
    from models.protocol import procedure_of

    weights = tmp_path / "lstm"
    shutil.copytree(tiny_lstm, weights)
    threshold = read_card(weights).threshold
    run_protocol(
        SEPSIS_TASK, "lstm", psv_folder, tmp_path / "procedure",
        repeats=2, epochs=1, batch_size=8, lr=2e-3, seed=0, teacher_weight=0.5, folds=2,
    )  # fmt: skip
    assert procedure_of(tiny_runs[0]) == (1, None)
    assert main(["attach", str(tiny_runs[0]), "--weights", str(weights)]) == 0
    assert "one network was trained as each member" in (weights / "card.md").read_text()
    assert main(["attach", str(tmp_path / "procedure"), "--weights", str(weights)]) == 0
    card = read_card(weights)
    assert card.protocol is not None and (card.protocol.folds, card.protocol.fixed_threshold) == (2, None)
    md = (weights / "card.md").read_text()
    assert "own procedure was trained: 2 fold networks" in md and "chosen on the other splits' held-out stays" in md
    rescored = tmp_path / "at-its-threshold"
    monkeypatch.chdir(tmp_path)  # rescored by relative paths, then read from elsewhere
    argv = ["rescore", "procedure", "--threshold", repr(threshold), "--out", "at-its-threshold"]
    assert main([*argv, "--data", str(psv_folder)]) == 0
    monkeypatch.chdir(weights)
    assert procedure_of(rescored) == (2, threshold)  # the networks are the source run's
    assert main(["attach", str(rescored), "--weights", str(weights)]) == 0
    assert read_card(weights).protocol.fixed_threshold == threshold  # type: ignore[union-attr]
    assert f"this checkpoint's threshold {threshold:.4f}, which" in (weights / "card.md").read_text()
    with pytest.raises(SystemExit):  # the card's figures are at the checkpoint's threshold: moving it would stale them
        main(["set-threshold", str(tiny_runs[0]), "lstm", "--weights", str(weights), "--data", str(psv_folder)])
    assert "attach" in capsys.readouterr().err
    other = tmp_path / "elsewhere"
    assert (
        main(["rescore", str(tiny_runs[0]), "--threshold", "0.3", "--out", str(other), "--data", str(psv_folder)]) == 0
    )
    assert (
        main(["rescore", str(tiny_runs[0]), "--smooth", "--out", str(tmp_path / "s"), "--data", str(psv_folder)]) == 0
    )
    smoothed = ProtocolReport.model_validate_json((tmp_path / "s" / "report.json").read_text())
    smoothed.repeats[0].smoother = "max3"  # whatever this tiny run chose, one repeat smoothed
    (tmp_path / "s" / "report.json").write_text(smoothed.model_dump_json())
    argv = ["ensemble", str(tiny_runs[0]), str(tiny_runs[1]), "--out", str(tmp_path / "e"), "--data", str(psv_folder)]
    assert main(argv) == 0
    for run, says in (
        (other, "not at this checkpoint's threshold"),
        (tmp_path / "s", "smoothed"),
        (tmp_path / "e", "lstm+lstm"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["attach", str(run), "--weights", str(weights)])
        assert exit_.value.code == 2 and says in capsys.readouterr().err
    assert read_card(weights).protocol.fixed_threshold == threshold  # type: ignore[union-attr]  # unchanged


def test_a_run_of_wider_networks_with_an_auxiliary_head(
    tiny_runs: tuple[Path, Path], tiny_lstm: Path, psv_folder: Path, tmp_path: Path
) -> None:
    """``--d-model`` and ``--auxiliary``: the settings say so (a run without them keeps the earlier runs'
    settings) and the networks differ; the same splits are scored. Its figures may not describe a checkpoint of
    another recipe."""
    import shutil

    from models.protocol import attach, development_stays, load_held
    from models.sequence_tasks import sequence_task

    report = run_protocol(
        sequence_task("sepsis", auxiliary="horizons"), "lstm", psv_folder, tmp_path / "wide",
        repeats=2, epochs=1, batch_size=8, lr=2e-3, seed=0, teacher_weight=0.5, d_model=16,
    )  # fmt: skip
    single = ProtocolReport.model_validate_json((tiny_runs[0] / "report.json").read_text())
    assert "d_model" not in single.settings and "auxiliary" not in single.settings
    assert report.settings == {**single.settings, "d_model": 16, "auxiliary": "horizons"}
    stays, _ = development_stays(SEPSIS_TASK, psv_folder)
    wide, one = load_held(tmp_path / "wide", stays), load_held(tiny_runs[0], stays)
    assert np.array_equal(wide[0].idx, one[0].idx)
    assert not np.allclose(np.concatenate(wide[0].probs), np.concatenate(one[0].probs))
    weights = tmp_path / "lstm"
    shutil.copytree(tiny_lstm, weights)
    with pytest.raises(
        ValueError, match=r"another recipe.*auxiliary 'horizons' \(the checkpoint's: 'none'\).*d_model 16"
    ):
        attach(tmp_path / "wide", weights)
    attach(tiny_runs[0], weights)  # the checkpoint's own recipe


def test_training_shares_are_stratified_nested_and_outside_the_held_out_stays() -> None:
    """``--train-fraction``: a repeat trains on a share of its training stays, septic ones in the same share; a
    smaller share lies inside a larger one, and the sample is the repeat's, never a held-out stay."""
    from models.protocol import training_mask

    stays = _stays(400, 3)
    septic = np.array([s.labels.any() for s in stays])
    held = split_masks(stays, 2)[1]
    assert np.array_equal(training_mask(stays, held, 1.0, 1), ~held)
    quarter, half = (training_mask(stays, held, f, 1) for f in (0.25, 0.5))
    assert not (half & held).any() and np.all(half <= ~held) and np.all(quarter <= half)
    assert (half.sum(), septic[half].sum(), quarter.sum(), septic[quarter].sum()) == (160, 40, 80, 20)
    assert not np.array_equal(half, training_mask(stays, split_masks(stays, 2)[0], 0.5, 0))
    with pytest.raises(ValueError, match="no stay to train on"):
        training_mask(stays, held, 0.0, 1)


def test_a_run_on_half_the_training_stays(
    tiny_runs: tuple[Path, Path], tiny_lstm: Path, psv_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A learning curve's point: the same held-out stays, scored by networks that saw half the training stays; the
    report says how many each repeat trained on, a rescored run keeps that, and attach refuses it for a card."""
    import shutil

    from models.protocol import development_stays, load_held

    out = tmp_path / "half"
    argv = ["run", "lstm", "--out", str(out), "--data", str(psv_folder), "--repeats", "2", "--epochs", "1"]
    assert main([*argv, "--train-fraction", "0.5", "--batch-size", "8", "--teacher-weight", "0.5"]) == 0
    half, full = (ProtocolReport.model_validate_json((p / "report.json").read_text()) for p in (out, tiny_runs[0]))
    assert half.settings == {**full.settings, "train_fraction": 0.5}
    for a, b in zip(half.repeats, full.repeats, strict=True):
        assert a.n_test == b.n_test and abs(a.n_train - b.n_train / 2) <= 1
    stays, _ = development_stays(SEPSIS_TASK, psv_folder)
    (h, *_), (f, *_) = load_held(out, stays), load_held(tiny_runs[0], stays)
    assert np.array_equal(h.idx, f.idx) and not np.allclose(np.concatenate(h.probs), np.concatenate(f.probs))
    rescored = tmp_path / "rescored"
    assert main(["rescore", str(out), "--threshold", "0.2", "--out", str(rescored), "--data", str(psv_folder)]) == 0
    assert [r.n_train for r in ProtocolReport.model_validate_json((rescored / "report.json").read_text()).repeats] == [
        r.n_train for r in half.repeats
    ]
    with pytest.raises(ValueError, match="different numbers of stays"):
        ensemble_runs(SEPSIS_TASK, [out, tiny_runs[0]], psv_folder, tmp_path / "mixed", "test")
    weights = tmp_path / "lstm"
    shutil.copytree(tiny_lstm, weights)
    for run in (out, rescored):
        with pytest.raises(SystemExit):
            main(["attach", str(run), "--weights", str(weights)])
        assert "a part of each split's training stays" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # nor may its thresholds become the checkpoint's
        main(["set-threshold", str(out), "lstm", "--weights", str(weights), "--data", str(psv_folder)])
    assert "a part of each split's training stays" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--train-fraction", "1.5"])
    assert "argument --train-fraction: must lie in (0, 1], not 1.5" in capsys.readouterr().err


def test_a_directory_without_a_run_is_a_usage_error(
    tiny_runs: tuple[Path, Path], tiny_lstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command that reads a saved run says which directory holds none (exit 2), never a traceback."""
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "report.json").write_text("{}")
    for argv in (
        ["compare", str(tiny_runs[0]), str(empty)],
        ["rescore", str(empty), "--smooth", "--out", str(tmp_path / "out")],
        ["ensemble", str(tiny_runs[0]), str(empty), "--out", str(tmp_path / "out")],
        ["attach", str(empty), "--weights", str(tiny_lstm)],
        ["set-threshold", str(empty), "lstm", "--weights", str(tiny_lstm)],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert f"{empty} holds no finished protocol run" in capsys.readouterr().err, argv
    with pytest.raises(SystemExit):
        main(["compare", str(broken), str(tiny_runs[0])])
    assert "is not a protocol report this code can read" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_pretrained_on_the_other_cohort(
    tiny_runs: tuple[Path, Path],
    tiny_lstm: Path,
    psv_folder: Path,
    mortality_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--pretrain-epochs``: the settings say so, the same splits are scored by networks that started from the
    pretrained one (each member's own seed otherwise gives the run without pretraining), and neither the run nor
    its rescoring may describe a checkpoint, whose networks were not pretrained."""
    import shutil

    from models.protocol import development_stays, load_held

    out = tmp_path / "pretrained"
    argv = ["run", "lstm", "--out", str(out), "--data", str(psv_folder), "--repeats", "2", "--epochs", "1"]
    argv += ["--batch-size", "8", "--teacher-weight", "0.5", "--foreign-data", str(mortality_folder)]
    assert main([*argv, "--pretrain-epochs", "1"]) == 0
    pre, plain = (ProtocolReport.model_validate_json((p / "report.json").read_text()) for p in (out, tiny_runs[0]))
    assert set(pre.settings) - set(plain.settings) == {"pretrain_epochs", "pretrain_stays"}
    assert pre.settings["pretrain_epochs"] == 1 and 0 < int(pre.settings["pretrain_stays"]) < 48
    stays, _ = development_stays(SEPSIS_TASK, psv_folder)
    (p, *_), (f, *_) = load_held(out, stays), load_held(tiny_runs[0], stays)
    assert np.array_equal(p.idx, f.idx) and not np.allclose(np.concatenate(p.probs), np.concatenate(f.probs))
    rescored = tmp_path / "rescored"
    assert main(["rescore", str(out), "--out", str(rescored), "--data", str(psv_folder)]) == 0
    weights = tmp_path / "lstm"
    shutil.copytree(tiny_lstm, weights)
    for run in (out, rescored):
        with pytest.raises(SystemExit):
            main(["attach", str(run), "--weights", str(weights)])
        assert "pretrained on another cohort" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--pretrain-epochs", "-1"])
    assert "argument --pretrain-epochs: must be 0 or more, not -1" in capsys.readouterr().err


def test_a_run_whose_teacher_sees_every_training_stay(
    tiny_runs: tuple[Path, Path], psv_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--teacher-on-all``: the network of each split sees half its training stays, the report counts those, and
    the predictions differ from the run where the teacher saw only that half too; it needs a share below 1."""
    out, half = tmp_path / "teacher-all", tmp_path / "half"
    argv = ["run", "lstm", "--data", str(psv_folder), "--repeats", "2", "--epochs", "1", "--batch-size", "8"]
    argv += ["--teacher-weight", "0.5", "--train-fraction", "0.5"]
    assert main([*argv, "--out", str(half)]) == 0
    assert main([*argv, "--out", str(out), "--teacher-on-all"]) == 0
    a, b = (ProtocolReport.model_validate_json((p / "report.json").read_text()) for p in (out, half))
    assert a.settings == {**b.settings, "teacher_stays": "all"}
    assert [r.n_train for r in a.repeats] == [r.n_train for r in b.repeats]
    from models.protocol import development_stays, load_held

    stays, _ = development_stays(SEPSIS_TASK, psv_folder)
    (x, *_), (y, *_) = load_held(out, stays), load_held(half, stays)
    assert np.array_equal(x.idx, y.idx) and not np.allclose(np.concatenate(x.probs), np.concatenate(y.probs))
    with pytest.raises(SystemExit):
        main(["run", "lstm", "--out", str(tmp_path / "x"), "--data", str(psv_folder), "--teacher-on-all"])
    assert "--teacher-on-all needs --train-fraction below 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--teacher-weight", "5", "must lie in [0, 1], not 5"),  # trained towards targets outside [0, 1]
        ("--limit", "0", "must be 1 or more, not 0"),  # "No .psv files" in a folder of thousands
        ("--limit", "-1", "must be 1 or more, not -1"),  # dropped the last stay
        ("--epochs", "0", "must be 1 or more, not 0"),
        ("--batch-size", "-4", "must be 1 or more, not -4"),
        ("--lr", "0", "must be a number above 0, not 0"),
        ("--lr", "nan", "must be a number above 0, not nan"),
        ("--threads", "0", "must be 1 or more, not 0"),
        ("--seed", "-1", "must be 0 or more, not -1"),
        ("--repeats", "1", "must be 2 or more, not 1"),
        ("--folds", "0", "must be 1 or more, not 0"),
    ],
)
def test_run_checks_its_numbers_as_training_does(
    option: str, value: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` shares models.train's argument types: a value out of range is a usage error before any stay is
    read (the data here do not exist, so a value let through ends in another error)."""
    with pytest.raises(SystemExit) as info:
        main(["run", "lstm", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "no-data"), option, value])
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"argument {option}: {said}" in err, err
    assert not (tmp_path / "out").exists()


def test_run_refuses_missing_data_and_an_output_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "lstm", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "no-data")])
    assert info.value.code == 2 and f"--data {tmp_path / 'no-data'} is not a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    for out in ("/proc/medlens-no-such-folder/run", str(tmp_path / "file")):
        with pytest.raises(SystemExit) as info:
            main(["run", "lstm", "--out", out, "--data", str(tmp_path)])
        assert info.value.code == 2 and "argument --out: " in capsys.readouterr().err


def test_set_threshold_refuses_data_that_are_not_the_training_stays(
    tiny_runs: tuple[Path, Path], tiny_lstm: Path, psv_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """set-threshold recomputes the card's out-of-fold evaluation on --data: on other stays than training's, the
    members would score stays they trained on. Refused, and nothing is written."""
    import shutil

    weights = tmp_path / "lstm"
    shutil.copytree(tiny_lstm, weights)
    data = tmp_path / "more"
    shutil.copytree(psv_folder, data)
    for i in range(6):
        shutil.copy(psv_folder / f"p{i:04d}.psv", data / f"extra{i}.psv")
    before = {p.name: p.read_bytes() for p in weights.iterdir()}
    with pytest.raises(SystemExit) as info:
        main(["set-threshold", str(tiny_runs[0]), "lstm", "--weights", str(weights), "--data", str(data)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"--data {data} is not the training data of {weights}" in err, err
    assert {p.name: p.read_bytes() for p in weights.iterdir()} == before


def test_confirm_with_another_models_weights_says_so(
    tiny_mortality_lstm: Path, psv_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``confirm lstm`` with a mortality checkpoint's weights told to attach a protocol run first."""
    import shutil

    weights = tmp_path / "mortality-lstm"
    shutil.copytree(tiny_mortality_lstm, weights)
    before = {p.name: p.read_bytes() for p in weights.iterdir()}
    with pytest.raises(SystemExit) as info:
        main(["confirm", "lstm", "--weights", str(weights), "--data", str(psv_folder)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "holds a mortality-lstm model, not a lstm model" in err, err
    assert {p.name: p.read_bytes() for p in weights.iterdir()} == before
