"""Fit and measure when not to trust a model, then store it in its checkpoint and model card.

python -m models.calibrate cnn [--weights DIR] [--data DIR] [--alpha 0.1] [--pass-rate 0.97] [--folds 5]
python -m models.calibrate SEQUENCE_MODEL [--weights DIR] [--data DIR] [--threads N]

The model choices come from the catalogue (:data:`CALIBRATED_MODELS`). Sequence models (lstm, transformer,
mortality-lstm, mortality-transformer): the calibrator fitted on the recomputed out-of-fold predictions,
models/calibrate_sepsis.py.

CNN: one command, fixed seeds: re-creates the training run's patient split (``models.train_cnn.patient_split``
with the card's seed), scores every training-folder radiograph with the torch fp32 model (logit, pooled
features, pixel statistics), fits the three OOD scores of models/ood.py on the training part and sets each
threshold on the validation patients, measures them on the non-chest-radiograph set of
models/ood_probes.py, chooses calibration and measures conformal sets by cross-fitting over validation
folds, applies the adoption rules of docs/trust.md, and rewrites ``model.pt`` (``meta.trust`` and the
``ood_head.`` tensors), ``card.json`` and ``card.md``. Prints every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shlex
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.backends import this_machine
from models.calibration import (
    CalibrationMethod,
    brier,
    coverage_by_class,
    cross_fitted,
    fit_calibrator,
    mondrian_quantiles,
    nonconformity,
    prediction_sets,
)
from models.cards import read_card, write_card
from models.catalogue import CATALOGUE, entry
from models.checkpoint import CARD_JSON, CheckpointMeta, load_checkpoint, save_checkpoint
from models.cli_args import (
    at_least_two,
    data_folder,
    non_negative_int,
    open_fraction,
    output_problem,
    positive_fraction,
    positive_int,
)
from models.cnn import CnnConfig, CnnModel, build_cnn, to_tensor
from models.config import data_paths
from models.errors import WeightsError
from models.metrics import expected_calibration_error, reliability_curve
from models.ood import (
    DEFAULT_PASS_RATE,
    MahalanobisFit,
    OodHead,
    OodMethod,
    energy_score,
    fit_mahalanobis,
    header_reason,
    mahalanobis_score,
    pass_threshold,
    pixel_statistics,
)
from models.ood_probes import generated_images, pydicom_images
from models.train_cnn import VAL_FRACTION, patient_split
from models.trust import TrustSettings
from models.trust_report import CalibrationRow, ConformalRow, OodRow, TrustReport
from models.xray_io import iter_image_files, labelled_images, load_xray_file, patient_id

#: The catalogue models this command calibrates: a CNN takes the image path below, an LSTM or Transformer the
#: sequence path of models/calibrate_sepsis.py.
CALIBRATED_MODELS: tuple[str, ...] = tuple(
    e.name for e in CATALOGUE.values() if e.architecture in ("cnn", "lstm", "transformer")
)

OOD_RULE = (
    "Adopted: the score with the highest flag rate on the non-chest-radiograph set (pixels alone) at the "
    "threshold that lets the pass rate of validation radiographs pass; within 2 points of the best, the "
    "simpler wins (energy, then Mahalanobis on features, then pixel statistics); AUROC breaks ties."
)
CALIBRATION_RULE = (
    "Rule: temperature scaling, unless isotonic regression has both a lower cross-fitted Brier score and "
    "a lower cross-fitted ECE."
)
#: Simplicity order of the rule (first = simplest).
SIMPLICITY: tuple[OodMethod, ...] = ("energy", "mahalanobis", "pixel_stats")


@dataclass
class Scored:
    """The fp32 model's view of a set of images."""

    logits: np.ndarray  # (N,) the members' mean logit
    pooled: np.ndarray  # (N, K*C) every member's pooled features side by side
    pixels: np.ndarray  # (N, N_PIXEL_STATS)


@torch.inference_mode()
def score_images(model: CnnModel, images: list[np.ndarray], batch_size: int = 64) -> Scored:
    """(H, W) [0, 1] images -> logits, pooled features and pixel statistics from torch fp32."""
    logits, pooled, stats = [], [], []
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], model.config)  # (b, 1, S, S)
        p = model.pooled(x)  # (b, K*C)
        logits.append(model.member_logits(p).mean(dim=1).numpy())
        pooled.append(p.numpy())
        stats.append(pixel_statistics(x).numpy())
    if not images:
        c = model.config.widths[-1] * len(model.members)
        return Scored(np.empty(0), np.empty((0, c)), np.empty((0, 10)))
    return Scored(np.concatenate(logits), np.concatenate(pooled), np.concatenate(stats))


def patient_folds(patients: list[str], folds: int, seed: int) -> np.ndarray:
    """(N,) fold index per item; all items of a patient share a fold (patients shuffled with ``seed``)."""
    unique = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[i]: rank % folds for rank, i in enumerate(order)}
    return np.array([fold_of[p] for p in patients])


def cross_fit_probabilities(logits: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict[str, np.ndarray]:
    """Method -> out-of-fold calibrated probabilities ("uncalibrated": the raw sigmoid)."""
    return {
        "uncalibrated": 1.0 / (1.0 + np.exp(-logits)),
        **cross_fitted(("temperature", "isotonic"), logits, labels, folds),
    }


def calibration_figures(labels: np.ndarray, probs: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Method -> (ECE, Brier) of its out-of-fold probabilities (from :func:`cross_fit_probabilities`)."""
    return {method: (expected_calibration_error(labels, prob), brier(labels, prob)) for method, prob in probs.items()}


def cross_fit_conformal(logits: np.ndarray, labels: np.ndarray, folds: np.ndarray, alpha: float) -> np.ndarray:
    """(N, 2) prediction sets, each fold's from quantiles calibrated on the other folds."""
    member = np.zeros((len(logits), 2), dtype=bool)
    for k in np.unique(folds):
        held = folds == k
        member[held] = prediction_sets(logits[held], mondrian_quantiles(logits[~held], labels[~held], alpha))
    return member


def training_split(
    data: Path, limit: int | None, split_seed: int, val_fraction: float
) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(paths, labels, validation mask) of a CNN training run on ``data``: every labelled image, or with ``limit``
    the sample ``models.train_cnn.train_cnn`` draws, split by patient as it splits them."""
    items = labelled_images(data)
    if limit:  # drawn as models.train_cnn draws them
        items = random.Random(split_seed).sample(items, min(limit, len(items)))
    paths = [p for p, _ in items]
    labels = np.array([label for _, label in items], dtype=np.int64)
    return paths, labels, patient_split(paths, labels, val_fraction, split_seed)


def split_digest(paths: list[Path], val: np.ndarray) -> str:
    """Which images a split holds out, in 16 hex digits: the SHA-256 of their sorted ``CLASS/name``s (the same
    wherever the data folder lies)."""
    names = sorted(f"{p.parent.name}/{p.name}" for p, held in zip(paths, val, strict=True) if held)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def adopt_ood(rows: dict[OodMethod, OodRow]) -> OodMethod:
    """docs/trust.md's rule: highest non-CXR flag rate; within 2 points of it, the simplest."""
    best = max(r.non_cxr_flag for r in rows.values())
    close = [m for m in SIMPLICITY if m in rows and rows[m].non_cxr_flag >= best - 0.02]
    return close[0]  # the simplest of those within 2 points (one per rank: AUROC never has to break a tie)


#: the CNN-only options and their defaults (given for a sequence model, they would be ignored: a usage error)
CNN_DEFAULTS: dict[str, object] = {
    "alpha": 0.1,
    "pass_rate": DEFAULT_PASS_RATE,
    "folds": 5,
    "seed": 0,
    "split_seed": None,  # the card's
    "val_fraction": None,  # the card's
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=CALIBRATED_MODELS)
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint directory (default: committed)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the training data the card names (default: from MEDLENS_DATA_DIR); other data is refused",
    )
    parser.add_argument("--alpha", type=open_fraction, help="cnn: conformal miscoverage (sets cover 1 - alpha); 0.1")
    parser.add_argument("--pass-rate", type=positive_fraction, help="cnn: validation share that passes; 0.97")
    parser.add_argument("--folds", type=at_least_two, help="cnn: cross-fitting folds over validation patients; 5")
    parser.add_argument("--seed", type=non_negative_int, help="cnn: folds and generated images; 0")
    parser.add_argument("--split-seed", type=non_negative_int, help="cnn: training split seed (default: the card's)")
    parser.add_argument(
        "--val-fraction", type=open_fraction, help="cnn: training's validation share (default: the card's)"
    )
    parser.add_argument("--threads", type=positive_int, default=max(1, torch.get_num_threads()))
    args = parser.parse_args(argv)
    given = [f"--{name.replace('_', '-')}" for name in CNN_DEFAULTS if getattr(args, name) is not None]
    if entry(args.model).architecture != "cnn" and given:
        parser.error(f"{' '.join(given)}: cnn options; {args.model} is calibrated on its out-of-fold predictions")
    for name, default in CNN_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)  # split_seed and val_fraction stay None: the card's, below
    weights = args.weights or entry(args.model).default_weights
    problem = output_problem(weights, folder=True) if weights.is_dir() else None
    try:
        meta, state = load_checkpoint(weights, expected=args.model)
    except WeightsError as exc:
        parser.error(str(exc))
    if problem is not None:  # model.pt and the card are rewritten at the end
        parser.error(f"--weights: {problem}")
    if args.data is not None and not args.data.exists():
        parser.error(f"--data {args.data} does not exist")
    torch.set_num_threads(args.threads)
    if entry(args.model).architecture != "cnn":
        from models.calibrate_sepsis import TrainingDataMismatchError, calibrate_sequence

        try:
            return calibrate_sequence(args.model, weights, args.data, list(argv if argv is not None else sys.argv[1:]))
        except (TrainingDataMismatchError, FileNotFoundError) as exc:
            parser.error(str(exc))
    warnings.filterwarnings("ignore", module="pydicom")  # odd test files of pydicom-data
    card = read_card(weights) if (weights / CARD_JSON).is_file() else None
    recorded = card.hyperparameters if card is not None else {}  # what the training run's card says it used
    seed = card.seed if card is not None else 0
    split_seed = int(recorded.get("split_seed", seed)) if args.split_seed is None else args.split_seed
    val_fraction = float(recorded.get("val_fraction", VAL_FRACTION)) if args.val_fraction is None else args.val_fraction
    data = data_folder(parser, args.data, data_paths().xray_train)
    started = time.time()

    cnn_state = {k: v for k, v in state.items() if not k.startswith("ood_head.")}
    model = build_cnn(CnnConfig.model_validate(meta.config))
    model.load_state_dict(cnn_state)
    model.eval()
    limit = recorded.get("limit")
    paths, labels, val = training_split(data, int(limit) if limit else None, split_seed, val_fraction)
    if card is not None:  # the card's validation images (their digest, where training recorded it) or their counts
        ours = (int(val.sum()), int(labels[val].sum()), split_digest(paths, val))
        theirs = (card.evaluation.n, card.evaluation.n_positive, str(recorded.get("validation_digest", ours[2])))
        if ours != theirs:
            parser.error(
                f"the card's validation holds {theirs[0]} images ({theirs[1]} PNEUMONIA, digest {theirs[2]}), this "
                f"split of --data {data} {ours[0]} ({ours[1]}, digest {ours[2]}): the calibration would be fitted on "
                f"images the network trained on. Pass the training data the card names ({card.data_path}) and the "
                "training run's --split-seed / --val-fraction"
            )
    every = score_images(model, [load_xray_file(p).pixels for p in paths])
    chest, dicoms = pydicom_images()
    generated = generated_images(args.seed)
    fullres_dir = data_paths().xray_fullres
    fullres = sorted(iter_image_files(fullres_dir)) if fullres_dir.is_dir() else []
    probes = {
        "chest": score_images(model, [p.image.pixels for p in chest]),
        "dicom": score_images(model, [p.image.pixels for p in dicoms]),
        "generated": score_images(model, [p.image.pixels for p in generated]),
        "fullres": score_images(model, [load_xray_file(p).pixels for p in fullres]),
    }

    # -- out of distribution ----------------------------------------------------------------------------
    tr = ~val
    fits: dict[OodMethod, MahalanobisFit | None] = {
        "mahalanobis": fit_mahalanobis(every.pooled[tr], labels[tr]),
        "energy": None,
        "pixel_stats": fit_mahalanobis(every.pixels[tr]),
    }

    def ood(method: OodMethod, s: Scored) -> np.ndarray:
        fit = fits[method]
        if method == "energy":
            return energy_score(s.logits)
        assert fit is not None
        return mahalanobis_score(s.pooled if method == "mahalanobis" else s.pixels, fit)

    from sklearn.metrics import roc_auc_score

    rows: dict[OodMethod, OodRow] = {}
    score_method: OodMethod
    for score_method in ("mahalanobis", "energy", "pixel_stats"):
        s_val, s_tr = ood(score_method, every)[val], ood(score_method, every)[tr]
        thr = pass_threshold(s_val, args.pass_rate)
        out = np.concatenate([ood(score_method, probes["dicom"]), ood(score_method, probes["generated"])])
        y_out = np.r_[np.zeros(len(s_val)), np.ones(len(out))]
        rows[score_method] = OodRow(
            method=score_method,
            threshold=thr,
            auroc_in_vs_out=float(roc_auc_score(y_out, np.r_[s_val, out])),
            validation_pass=float(np.mean(s_val <= thr)),
            training_pass=float(np.mean(s_tr <= thr)),
            fullres_pass=float(np.mean(ood(score_method, probes["fullres"]) <= thr)) if fullres else None,
            chest_dicom_pass=float(np.mean(ood(score_method, probes["chest"]) <= thr)),
            non_cxr_flag=float(np.mean(out > thr)),
            dicom_flag=float(np.mean(ood(score_method, probes["dicom"]) > thr)),
            generated_flag=float(np.mean(ood(score_method, probes["generated"]) > thr)),
            adopted=False,
        )
    adopted = adopt_ood(rows)
    rows[adopted].adopted = True
    dicom_scores = ood(adopted, probes["dicom"])
    with_header = [
        s > rows[adopted].threshold or header_reason(p.image.dicom_fields) is not None
        for p, s in zip(dicoms, dicom_scores, strict=True)
    ]

    # -- calibration and conformal sets (validation patients) ---------------------------------------------
    z_val, y_val = every.logits[val], labels[val]
    folds = patient_folds([patient_id(paths[i]) for i in np.flatnonzero(val)], args.folds, args.seed)
    oof = cross_fit_probabilities(z_val, y_val, folds)  # fitted once: figures and reliability diagrams
    figures = calibration_figures(y_val, oof)
    method: CalibrationMethod = (
        "isotonic"
        if figures["isotonic"][0] < figures["temperature"][0] and figures["isotonic"][1] < figures["temperature"][1]
        else "temperature"
    )
    calibrator = fit_calibrator(method, z_val, y_val)
    temperature = fit_calibrator("temperature", z_val, y_val).temperature
    member = cross_fit_conformal(z_val, y_val, folds, args.alpha)
    q_folds = [mondrian_quantiles(z_val[folds != k], y_val[folds != k], args.alpha) for k in range(args.folds)]
    raw_empty = np.zeros(len(z_val), dtype=bool)
    for k, q in enumerate(q_folds):
        held = folds == k
        raw_empty[held] = (nonconformity(z_val[held], 0) > q[0]) & (nonconformity(z_val[held], 1) > q[1])
    per_class = coverage_by_class(member, y_val)

    # -- store -----------------------------------------------------------------------------------------------
    command = "python -m models.calibrate " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    trust = TrustSettings(
        ood_method=adopted,
        ood_threshold=rows[adopted].threshold,
        ood_pass_rate=args.pass_rate,
        calibration=calibrator,
        alpha=args.alpha,
        conformal_scores=(
            sorted(float(v) for v in nonconformity(z_val[y_val == 0], 0)),
            sorted(float(v) for v in nonconformity(z_val[y_val == 1], 1)),
        ),
        fitted=f"{measured}: {command}",
    )
    head_fit = fits[adopted]
    head_state = {}
    if head_fit is not None:
        head_state = {f"ood_head.{k}": v for k, v in OodHead.from_fit(head_fit).state_dict().items()}
    new_meta = CheckpointMeta.model_validate({**meta.model_dump(), "trust": trust.model_dump(mode="json")})
    save_checkpoint(weights, new_meta, {**cnn_state, **head_state})

    n_gen, n_dicom = len(generated), len(dicoms)
    report = TrustReport(
        measured=measured,
        command=command,
        machine=this_machine().describe(),
        folds=args.folds,
        non_cxr_set=(
            "every DICOM of pydicom.data.get_testdata_files() that the loader decodes except the chest CR "
            "RG1_* (CT, MR, US, NM, secondary captures, an extremity CR), plus generated scenes, textures, "
            "noise, gradients, patterns, text pages, blank and RGBA images (models/ood_probes.py)"
        ),
        n_validation=int(val.sum()),
        n_dicom=n_dicom,
        n_generated=n_gen,
        ood_rule=OOD_RULE.replace("the pass rate", f"{args.pass_rate:.0%}"),
        ood=list(rows.values()),
        ood_pass_rate=args.pass_rate,
        dicom_flag_with_header=float(np.mean(with_header)) if with_header else 0.0,
        calibration_rule=CALIBRATION_RULE + f" Adopted: {method}.",
        calibration=[CalibrationRow(method=m, ece=e, brier=b, adopted=m == method) for m, (e, b) in figures.items()],
        reliability={m: reliability_curve(y_val, prob) for m, prob in oof.items()},
        temperature=temperature,
        alpha=args.alpha,
        conformal=[
            ConformalRow(label=meta.labels[k], n=n, coverage=cov, mean_set_size=size)
            for k, (cov, size, n) in per_class.items()
        ],
        uncertain_rate=float(np.mean(member.sum(axis=1) == 2)),
        empty_rate=float(np.mean(raw_empty)),
    )
    if card is not None:
        card.trust = report
        write_card(weights, card)
    _print_report(report, time.time() - started)
    return 0


def _print_report(r: TrustReport, seconds: float) -> None:
    print(f"validation {r.n_validation} radiographs; non-CXR set {r.n_dicom} DICOMs + {r.n_generated} generated")
    print("OOD score      threshold  AUROC   val-pass train-pass fullres chestDCM nonCXR-flag dicom gen")
    for o in r.ood:
        fullres = "   -  " if o.fullres_pass is None else f"{o.fullres_pass:6.3f}"
        print(
            f"{o.method:13s}{'*' if o.adopted else ' '} {o.threshold:9.4g} {o.auroc_in_vs_out:.4f} "
            f"{o.validation_pass:8.3f} {o.training_pass:9.3f} {fullres} {o.chest_dicom_pass:7.2f} "
            f"{o.non_cxr_flag:11.3f} {o.dicom_flag:.3f} {o.generated_flag:.3f}"
        )
    print(f"DICOMs flagged with the header evidence too: {r.dicom_flag_with_header:.3f}")
    for c in r.calibration:
        print(f"calibration {c.method:12s}{'*' if c.adopted else ' '} ECE {c.ece:.4f}  Brier {c.brier:.4f}")
    print(f"temperature {r.temperature:.4f}")
    for k in r.conformal:
        print(f"conformal alpha {r.alpha}: {k.label:9s} n {k.n:4d} coverage {k.coverage:.3f} set {k.mean_set_size:.3f}")
    print(f"uncertain (both labels) {r.uncertain_rate:.3f}; empty before filling {r.empty_rate:.3f}")
    print(f"({seconds:.0f} s) wrote model.pt and the card", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
